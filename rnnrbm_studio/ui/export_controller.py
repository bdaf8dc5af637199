"""Export new bars in the background: a worker generates, the status bar shows progress and Cancel.

The window stays responsive however long generation takes (512 bars at 1,000 Gibbs steps is most
of a minute); the file is written, atomically, only once every frame is there, and never if cancelled.
"""
from __future__ import annotations

import copy
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from ..model import RnnRbm
from .jobs import GenerationProgress, export_bars_job
from .workers import WorkerHandle, WorkerRegistry


class JobStatus(QtWidgets.QWidget):
    """A label, a progress bar and Cancel, for the status bar; hidden while nothing runs."""

    cancel_requested = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.label = QtWidgets.QLabel("")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.setFormat("%p%")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the export; no file is written")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel_button)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.setVisible(False)

    def begin(self, text: str, maximum: int) -> None:
        self.label.setText(text)
        self.progress.setRange(0, max(1, maximum))
        self.progress.setValue(0)
        self.cancel_button.setEnabled(True)
        self.setVisible(True)

    def show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def end(self) -> None:
        self.setVisible(False)


class BarsExport(QtCore.QObject):
    """Generates a piece in a worker of the window's registry and saves it; one export at a time.

    Its progress and Cancel are in the status bar, which also says when the file is saved.
    """

    progress = QtCore.Signal(int, int)  # frames done, frames in all
    exported = QtCore.Signal(object)  # the Path written
    failed = QtCore.Signal(str)
    cancelled = QtCore.Signal()
    running_changed = QtCore.Signal(bool)

    def __init__(self, registry: WorkerRegistry, status_bar: QtWidgets.QStatusBar,
                 parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.registry = registry
        self.status = JobStatus()
        status_bar.addPermanentWidget(self.status)
        self.handle: WorkerHandle | None = None
        self.bars = 0  # of the export running or last run
        self.status.cancel_requested.connect(self.cancel)
        self.exported.connect(lambda path: status_bar.showMessage(f"Saved {self.bars} new bars to {path}", 5000))
        self.cancelled.connect(lambda: status_bar.showMessage("Export cancelled", 5000))

    def is_running(self) -> bool:
        return bool(self.handle and self.handle.is_running())

    def start(self, model: RnnRbm, path: str | Path, bars: int, frames: int, *, bpm: float, steps_per_beat: int,
              gibbs_steps: int, inverse_temperature: float, seed: int | None = None, velocity: int = 80,
              dynamics: bool = True) -> WorkerHandle | None:
        """Start generating `frames` frames (`bars` bars) into `path`; None if an export already runs."""
        if self.is_running():
            return None
        self.bars = bars
        # the worker's own copy: playback that follows training swaps weights into the window's model
        self.handle = self.registry.start(
            export_bars_job, copy.deepcopy(model).eval(), Path(path), frames, name="export-bars", progress=True,
            bpm=bpm, steps_per_beat=steps_per_beat, gibbs_steps=gibbs_steps,
            inverse_temperature=inverse_temperature, seed=seed, velocity=velocity, dynamics=dynamics,
            connect={"progress": self._on_progress, "succeeded": self.exported, "failed": self.failed,
                     "cancelled": self.cancelled, "finished": self._on_finished})
        self.status.begin(f"Generating {bars} bars…", frames)
        self.running_changed.emit(True)
        return self.handle

    def cancel(self) -> None:
        if self.is_running():
            self.handle.cancel()
            self.status.label.setText("Cancelling…")
            self.status.cancel_button.setEnabled(False)

    def _on_progress(self, value: GenerationProgress) -> None:
        self.status.show_progress(value.frames_done, value.frames)
        self.progress.emit(value.frames_done, value.frames)

    def _on_finished(self) -> None:
        self.status.end()
        self.running_changed.emit(False)
