"""The window's training job: a Trainer run in a worker, shown on the Train panel and the training plot.

The window decides what to train (a new model or a resumed checkpoint) and passes a Trainer factory;
this runs it (ui/jobs.train_job), shows its progress, stops it on request (within one update, the
checkpoint kept) and says on the GUI thread `epoch_finished(progress)`, `weights(model copy)` after
each epoch, then `trained(result)` or `failed(message)`, and `ended()` once the job is over.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6 import QtCore

from ..training.trainer import Trainer, TrainResult
from .jobs import TrainingReport, train_job
from .panels.training import TrainingPanel
from .panels.training_plot import TrainingPlot
from .workers import WorkerHandle, WorkerRegistry


class TrainingController(QtCore.QObject):
    epoch_finished = QtCore.Signal(object)  # TrainProgress
    weights = QtCore.Signal(object)  # a copy of the model after each epoch, for playback that follows training
    trained = QtCore.Signal(object)  # TrainResult: finished, or stopped with its checkpoint kept
    failed = QtCore.Signal(str)
    ended = QtCore.Signal()

    def __init__(self, panel: TrainingPanel, plot: TrainingPlot, registry: WorkerRegistry,
                 parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.panel = panel
        self.plot = plot
        self.registry = registry
        self.handle: WorkerHandle | None = None
        self.path: Path | None = None  # the checkpoint the running (or last) job writes

    def is_running(self) -> bool:
        return bool(self.handle and self.handle.is_running())

    def start(self, make_trainer: Callable[..., Trainer], path: Path) -> None:
        """Train in a worker: make_trainer(progress=...) builds the Trainer there; stop() and closing cancel it."""
        self.path = path
        self.handle = self.registry.start(
            train_job, make_trainer, name="trainer", progress=True,
            connect={"progress": self._progress, "succeeded": self._trained, "failed": self._failed,
                     "finished": self.ended})
        self.panel.checkpoint_label.setText(f"Checkpoint: {path}")
        self.panel.status.setText("Starting…")

    def stop(self) -> None:
        if self.handle:
            self.handle.cancel()  # the trainer stops within one update and keeps its checkpoint
            self.panel.status.setText("Stopping after this update…")

    def _progress(self, report: TrainingReport) -> None:
        progress = report.progress
        self.panel.show_progress(progress)
        if progress.event == "epoch":
            self.plot.add_epoch(progress)
            self.epoch_finished.emit(progress)
        if report.weights is not None:
            self.weights.emit(report.weights)

    def _trained(self, result: TrainResult) -> None:
        self.panel.status.setText(result.message)
        self.trained.emit(result)

    def _failed(self, message: str) -> None:
        self.panel.status.setText(message)
        self.failed.emit(message)
