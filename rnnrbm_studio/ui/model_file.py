"""The window's open model and its file: open, new, save as, and their dialogs.

It holds the model, the file it came from and the checkpoint as read (or as it would be saved); the
window hears `changed()` after each of them is replaced, and `failed(message)` when a file cannot be
opened or saved.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from ..model import RnnRbm, RnnRbmConfig
from ..music.pianoroll import RollSettings
from ..training.checkpoint import (CheckpointError, load_checkpoint, model_checkpoint, model_from_checkpoint,
                                   roll_settings_of, save_checkpoint)
from ..training.checkpoint_types import Checkpoint


class ModelFile(QtCore.QObject):
    changed = QtCore.Signal()
    failed = QtCore.Signal(str)

    def __init__(self, models_dir: Path, window: QtWidgets.QMainWindow):
        super().__init__(window)
        self.models_dir = models_dir  # where the dialogs start
        self.window = window  # the dialogs' parent, and its status bar
        self.model: RnnRbm | None = None
        self.path: Path | None = None  # None: not saved yet
        self.checkpoint: Checkpoint | None = None

    def open(self, path: str | Path, quiet: bool = False) -> bool:
        """Open a model file; `quiet`: a file that cannot be read is only mentioned in the status bar."""
        try:
            checkpoint = load_checkpoint(path)
            model = model_from_checkpoint(checkpoint)
        except CheckpointError as error:
            if not quiet:
                self.failed.emit(str(error))
            else:
                self.window.statusBar().showMessage(f"No model loaded: {error}")
            return False
        self._set(model, Path(path), checkpoint)
        self.window.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    def new(self, config: RnnRbmConfig, roll_settings: RollSettings) -> None:
        model = RnnRbm(config)
        self._set(model, None, model_checkpoint(model, roll_settings))
        self.window.statusBar().showMessage("New untrained model: load music and click Train", 5000)

    def save(self, path: str | Path) -> None:
        """Save as `path` (a copy of the open file, or the new model written), then open it from there."""
        path = Path(path)
        try:
            if self.path and self.path.exists() and self.path.resolve() != path.resolve():
                shutil.copyfile(self.path, path)
            elif not self.path:
                save_checkpoint(path, model_checkpoint(self.model, roll_settings_of(self.checkpoint)))
        except OSError as error:
            self.failed.emit(f"Cannot save {path}: {error.strerror or error}")
            return
        self.open(path)

    def open_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Open model", str(self.models_dir),
                                                        "RNN-RBM models (*.pt);;All files (*)")
        if path:
            self.open(path)

    def save_dialog(self) -> None:
        if self.model is None:
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Save model as",
                                                        str(self.models_dir / "model.pt"), "RNN-RBM models (*.pt)")
        if path:
            self.save(path)

    def _set(self, model: RnnRbm, path: Path | None, checkpoint: Checkpoint) -> None:
        self.model, self.path, self.checkpoint = model, path, checkpoint
        self.changed.emit()
