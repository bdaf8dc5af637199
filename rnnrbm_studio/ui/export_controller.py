"""Exports in the background: a worker generates new bars, or renders the session to audio; the status
bar shows progress and Cancel, then says when the file is saved.

The window stays responsive however long they take (512 bars at 1,000 Gibbs steps is most of a
minute; an hour's session renders in about a minute); the file is written, atomically, only once
all of it is there, and never if cancelled.
"""
from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from PySide6 import QtCore, QtWidgets

from ..model import RnnRbm
from ..music.atomic_files import check_writable
from .jobs import GenerationProgress, export_audio_job, export_bars_job
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
        """Show `text` and a progress bar to `maximum` (0: busy, no measure of how far)."""
        self.label.setText(text)
        self.progress.setRange(0, max(0, maximum))
        self.progress.setValue(0)
        self.cancel_button.setEnabled(True)
        self.setVisible(True)

    def show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def end(self) -> None:
        self.setVisible(False)


class StatusBarExport(QtCore.QObject):
    """One export at a time in a worker of the window's registry, its progress and Cancel in the status bar."""

    exported = QtCore.Signal(object)  # what the job returned
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
        self.status.cancel_requested.connect(self.cancel)
        self.cancelled.connect(lambda: status_bar.showMessage("Export cancelled", 5000))

    def is_running(self) -> bool:
        return bool(self.handle and self.handle.is_running())

    def _start(self, job: Callable, *args, name: str, text: str, maximum: int, **kwargs) -> WorkerHandle:
        self.handle = self.registry.start(
            job, *args, name=name, progress=True, **kwargs,
            connect={"progress": self._on_progress, "succeeded": self.exported, "failed": self.failed,
                     "cancelled": self.cancelled, "finished": self._on_finished})
        self.status.begin(text, maximum)
        self.running_changed.emit(True)
        return self.handle

    def cancel(self) -> None:
        if self.is_running():
            self.handle.cancel()
            self.status.label.setText("Cancelling…")
            self.status.cancel_button.setEnabled(False)

    def _on_progress(self, value) -> None:
        pass

    def _on_finished(self) -> None:
        self.status.end()
        self.running_changed.emit(False)


class BarsExport(StatusBarExport):
    """Generates a piece in a worker and saves it as .mid; the status bar says when the file is saved."""

    progress = QtCore.Signal(int, int)  # frames done, frames in all

    def __init__(self, registry: WorkerRegistry, status_bar: QtWidgets.QStatusBar,
                 parent: QtCore.QObject | None = None):
        super().__init__(registry, status_bar, parent)
        self.bars = 0  # of the export running or last run
        self.exported.connect(lambda path: status_bar.showMessage(f"Saved {self.bars} new bars to {path}", 5000))

    def start(self, model: RnnRbm, path: str | Path, bars: int, frames: int, *, bpm: float, steps_per_beat: int,
              gibbs_steps: int, inverse_temperature: float, seed: int | None = None, velocity: int = 80,
              dynamics: bool = True, start: str | None = None) -> WorkerHandle | None:
        """Start generating `frames` frames (`bars` bars) into `path`; None if an export already runs.
        `start`: where each frame's Gibbs chain starts, as PlaybackSettings.chain() says."""
        if self.is_running():
            return None
        self.bars = bars
        # the worker's own copy: playback that follows training swaps weights into the window's model
        return self._start(export_bars_job, copy.deepcopy(model).eval(), Path(path), frames, name="export-bars",
                           text=f"Generating {bars} bars…", maximum=frames, bpm=bpm, steps_per_beat=steps_per_beat,
                           gibbs_steps=gibbs_steps, inverse_temperature=inverse_temperature, seed=seed,
                           velocity=velocity, dynamics=dynamics, start=start)

    def _on_progress(self, value: GenerationProgress) -> None:
        self.status.show_progress(value.frames_done, value.frames)
        self.progress.emit(value.frames_done, value.frames)


class AudioExport(StatusBarExport):
    """Renders the session (its MIDI, written on the GUI thread in a moment) to a WAV in a worker;
    the status bar says how many seconds were saved where."""

    def __init__(self, registry: WorkerRegistry, status_bar: QtWidgets.QStatusBar,
                 parent: QtCore.QObject | None = None):
        super().__init__(registry, status_bar, parent)
        self.path: Path | None = None  # of the export running or last run
        self.exported.connect(lambda result: status_bar.showMessage(
            f"Saved {result.seconds:.1f} s of audio to {self.path}", 5000))

    def start(self, write_midi: Callable[[Path], object], path: str | Path, *, gain: float,
              soundfont: str | None = None) -> WorkerHandle | None:
        """`write_midi(file)` writes the session (StudioError if there is none), then a worker renders
        it to `path`; None if an export already runs. StudioError before any work if `path` cannot be written."""
        if self.is_running():
            return None
        check_writable(path)
        folder = Path(tempfile.mkdtemp(prefix="rnnrbm-session-"))
        midi = folder / "session.mid"
        try:
            write_midi(midi)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.path = Path(path)
        return self._start(export_audio_job, midi, self.path, name="export-audio", text="Rendering audio…",
                           maximum=0, gain=gain, soundfont=soundfont, remove_folder=folder)
