"""Background work for the window: one worker object per job, moved to its own QThread.

A worker talks to the window only through signals (queued across threads), so no widget is ever
touched from a worker thread. Cancelling sets a flag the engine checks; the thread then ends by
itself and `WorkerHandle.wait()` joins it.
"""
from __future__ import annotations

import copy
import logging
import threading
import traceback
from pathlib import Path

from PySide6 import QtCore

from ..music.corpus import LoadCancelled, load_corpus
from ..errors import StudioError
from ..model import RnnRbm
from ..music.pianoroll import RollSettings
from ..training.trainer import TrainConfig, Trainer, TrainProgress

log = logging.getLogger(__name__)


class Worker(QtCore.QObject):
    """Runs `work()` in its thread; reports `succeeded(result)` or `failed(message)`, then `done`."""

    succeeded = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    done = QtCore.Signal()

    def __init__(self):
        super().__init__()
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @QtCore.Slot()
    def run(self) -> None:
        try:
            self.succeeded.emit(self.work())
        except StudioError as error:
            self.failed.emit(str(error))
        except Exception as error:  # a bug: keep the window alive and say what happened
            log.error("worker failed:\n%s", traceback.format_exc())
            self.failed.emit(f"unexpected error: {type(error).__name__}: {error}")
        finally:
            self.done.emit()

    def work(self):
        raise NotImplementedError


class WorkerHandle(QtCore.QObject):
    """A worker and its thread; lives on the GUI thread and says `finished` there when the work is done.

    Connect worker signals only to slots of objects living on the GUI thread (bound methods of
    widgets), never to lambdas: a lambda runs in the emitting worker thread.
    """

    finished = QtCore.Signal()

    def __init__(self, worker: Worker, name: str, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.worker = worker
        self.active = False
        self.thread = QtCore.QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        # Direct: QThread.quit is thread-safe, and a queued call would wait for the GUI thread,
        # which may itself be waiting for this thread to end (closing the window).
        worker.done.connect(self.thread.quit, QtCore.Qt.ConnectionType.DirectConnection)
        worker.done.connect(self._on_done)

    def start(self) -> "WorkerHandle":
        self.active = True
        self.thread.start()
        return self

    def _on_done(self) -> None:
        self.active = False
        self.finished.emit()

    def is_running(self) -> bool:
        """True until the work is done (as seen from the GUI thread)."""
        return self.active

    def cancel_and_wait(self, timeout_ms: int = 60_000) -> bool:
        self.worker.cancel()
        return self.wait(timeout_ms)

    def wait(self, timeout_ms: int = 60_000) -> bool:
        finished = self.thread.wait(QtCore.QDeadlineTimer(timeout_ms))
        if finished:
            self.active = False
        return finished


class CorpusLoadWorker(Worker):
    progress = QtCore.Signal(int, int, str)  # files done, files in all, current file

    def __init__(self, folder: str | Path, settings: RollSettings):
        super().__init__()
        self.folder = str(folder)
        self.settings = settings

    def work(self):
        try:
            return load_corpus(self.folder, self.settings, progress=self.progress.emit, cancel=lambda: self.cancelled)
        except LoadCancelled:
            return None


class TrainingWorker(Worker):
    """Trains in its thread; `progress` carries TrainProgress, `weights` a model copy each epoch."""

    progress = QtCore.Signal(object)
    weights = QtCore.Signal(object)  # a copy of the model after each epoch, for playback that follows training

    def __init__(self, train_rolls, valid_rolls, checkpoint_path: str | Path, roll_settings: RollSettings,
                 model: RnnRbm | None = None, config: TrainConfig | None = None, resume: bool = False,
                 epochs: int | None = None, data_description: str = ""):
        super().__init__()
        self.train_rolls = train_rolls
        self.valid_rolls = valid_rolls
        self.checkpoint_path = Path(checkpoint_path)
        self.roll_settings = roll_settings
        self.model = model
        self.config = config
        self.resume = resume
        self.epochs = epochs
        self.data_description = data_description
        self._trainer: Trainer | None = None
        self._trainer_ready = threading.Lock()

    def cancel(self) -> None:
        super().cancel()
        with self._trainer_ready:
            if self._trainer is not None:
                self._trainer.request_stop()

    def _on_progress(self, progress: TrainProgress) -> None:
        self.progress.emit(progress)
        if progress.event == "epoch" and self._trainer is not None:
            self.weights.emit(copy.deepcopy(self._trainer.model).eval())

    def work(self):
        if self.resume:
            trainer = Trainer.resume(self.checkpoint_path, self.train_rolls, self.valid_rolls, epochs=self.epochs,
                                     progress=self._on_progress, data_description=self.data_description)
        else:
            trainer = Trainer(self.model, self.train_rolls, self.valid_rolls, self.config, self.checkpoint_path,
                              self.roll_settings, progress=self._on_progress,
                              data_description=self.data_description)
        with self._trainer_ready:
            self._trainer = trainer
            if self.cancelled:
                trainer.request_stop()
        return trainer.run()
