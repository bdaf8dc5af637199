"""The window's corpus side: a folder of music loaded in a worker, its pieces listed and previewed.

It drives the *Music to learn from* panel and owns the widgets of the pieces view (the list, in
natural order, a Play piece button and the preview, fitted to the piece) and the Skipped files list,
the loading job and the Corpus; the window hears `loaded(corpus)`, `failed(message)` or `cancelled()`
on the GUI thread, and `play_requested(Piece)` when a piece is to be heard.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6 import QtCore, QtWidgets

from ..music.corpus import Corpus
from ..music.natural_order import natural_order_key
from ..music.pianoroll import RollSettings, playback_grid
from .jobs import load_corpus_job
from .panels.corpus import CorpusPanel
from .piece_playback import Piece
from .piano_roll import PianoRollView
from .workers import WorkerHandle, WorkerRegistry

MAX_RECENT_FOLDERS = 8


class CorpusController(QtCore.QObject):
    loaded = QtCore.Signal(object)  # the Corpus
    failed = QtCore.Signal(str)
    cancelled = QtCore.Signal()
    play_requested = QtCore.Signal(object)  # the Piece to hear (ui/piece_playback.py)
    stop_requested = QtCore.Signal()

    def __init__(self, panel: CorpusPanel, registry: WorkerRegistry, settings: QtCore.QSettings,
                 roll_settings: Callable[[], RollSettings], parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.panel = panel
        self.registry = registry
        self.settings = settings
        self.roll_settings = roll_settings  # the grid to read the music on, asked at each load
        self.corpus: Corpus | None = None
        self._listed: list = []  # the pieces in the order the Pieces list shows them (natural order)
        self.loader: WorkerHandle | None = None

        self.pieces = QtWidgets.QListWidget()
        self.pieces.setToolTip("Click a piece to see its piano-roll; double-click to hear it")
        self.play_button = QtWidgets.QPushButton("Play piece")
        self.play_button.setCheckable(True)
        self.play_button.setEnabled(False)
        self.play_button.setToolTip("Hear the chosen piece on the output chosen under Play live (as the "
                                    "model learns it: on its time grid); again to stop")
        self.preview = PianoRollView(capacity=512, title="Preview")
        pieces_side = QtWidgets.QWidget()
        pieces_layout = QtWidgets.QVBoxLayout(pieces_side)
        pieces_layout.setContentsMargins(0, 0, 0, 0)
        pieces_layout.addWidget(self.pieces, 1)
        pieces_layout.addWidget(self.play_button)
        self.pieces_view = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.pieces_view.addWidget(pieces_side)
        self.pieces_view.addWidget(self.preview)
        self.pieces_view.setStretchFactor(1, 1)
        self.pieces_view.setSizes([220, 600])
        self.skipped = QtWidgets.QTreeWidget()
        self.skipped.setHeaderLabels(["File", "Why it was skipped"])
        self.skipped.setRootIsDecorated(False)

        panel.load_requested.connect(self.load)
        panel.cancel_requested.connect(self.cancel)
        self.pieces.currentRowChanged.connect(self._preview_piece)
        self.pieces.itemActivated.connect(lambda _item: self._play_current(start=True))
        self.play_button.clicked.connect(lambda checked: self._play_current(start=checked))
        panel.set_recent(self.recent_folders())

    def is_loading(self) -> bool:
        return bool(self.loader and self.loader.is_running())

    def load(self, folder: str) -> None:
        if self.is_loading():
            return
        if not Path(folder).exists():
            self.failed.emit(f"No such folder: {folder}")
            return
        self._remember_folder(folder)
        self.panel.set_loading(True)
        self.panel.summary.setText(f"Loading {folder}…")
        self.loader = self.registry.start(
            load_corpus_job, folder, self.roll_settings(), name="corpus-loader", progress=True,
            connect={"progress": lambda files: self.panel.show_progress(*files),
                     "succeeded": self._loaded, "failed": self._failed,
                     "cancelled": self._cancelled, "finished": self._loading_done})

    def cancel(self) -> None:
        if self.loader:
            self.loader.cancel()

    def _loading_done(self) -> None:
        self.panel.set_loading(False)

    def _cancelled(self) -> None:
        self.panel.summary.setText("Loading cancelled.")
        self.cancelled.emit()

    def _failed(self, message: str) -> None:
        self.panel.summary.setText(message)
        self.failed.emit(message)

    def _loaded(self, corpus: Corpus) -> None:
        self.corpus = corpus
        summary = corpus.summary()
        self.panel.summary.setText(
            f"{summary.files} pieces · {summary.hours:.2f} h of music · {summary.notes_per_frame:.1f} notes per "
            f"step · {len(corpus.train)} to train on, {len(corpus.valid)} to validate"
            + (f" · {summary.skipped} skipped (see Skipped files)" if summary.skipped else ""))
        self.stop_requested.emit()  # a piece of the old list may be playing
        self.pieces.clear()
        self._listed = sorted(corpus.pieces(), key=lambda piece: natural_order_key(piece.name))
        self.play_button.setEnabled(bool(self._listed))
        for piece in self._listed:
            self.pieces.addItem(piece.name)
        self.skipped.clear()
        for skipped in sorted(corpus.skipped, key=lambda skipped: natural_order_key(skipped.path)):
            QtWidgets.QTreeWidgetItem(self.skipped, [skipped.path, skipped.reason])
        self.skipped.resizeColumnToContents(0)
        self.loaded.emit(corpus)

    def _preview_piece(self, row: int) -> None:
        if self.corpus is None or not 0 <= row < len(self._listed):
            return
        if self.play_button.isChecked():
            self.stop_requested.emit()  # the preview shows another piece now
        piece = self._listed[row]
        self.preview.show_roll(piece.roll, self.piece_grid(piece)[0])
        self.preview.setTitle(f"{piece.name} · {piece.roll.shape[0]} steps")

    def piece_grid(self, piece) -> tuple[float, float, int]:
        """(seconds per step, bpm, steps per beat) the piece plays at: its file's tempo on a beat grid,
        the grid's own pace on a seconds grid (music/pianoroll.py playback_grid)."""
        settings = self.corpus.settings
        bpm, steps_per_beat = playback_grid(settings, None if settings.seconds_per_step else piece.bpm)
        return 60.0 / (bpm * steps_per_beat), bpm, steps_per_beat

    def current_piece(self):
        row = self.pieces.currentRow()
        return self._listed[row] if self.corpus is not None and 0 <= row < len(self._listed) else None

    def _play_current(self, start: bool) -> None:
        piece = self.current_piece()
        if not start or piece is None:
            self.stop_requested.emit()
            return
        _, bpm, steps_per_beat = self.piece_grid(piece)
        self.play_requested.emit(Piece(piece.roll, bpm, steps_per_beat, self.corpus.settings.lowest_pitch))

    def set_playing(self, playing: bool) -> None:
        """The piece player's news: the button shows Stop while a piece plays."""
        self.play_button.setChecked(playing)
        self.play_button.setText("Stop piece" if playing else "Play piece")
        if not playing:
            self.preview.set_playhead(None)

    def _remember_folder(self, folder: str) -> None:
        recent = [folder] + [f for f in self.recent_folders() if f != folder]
        self.settings.setValue("recent_folders", recent[:MAX_RECENT_FOLDERS])
        self.panel.set_recent(recent[:MAX_RECENT_FOLDERS])
        self.panel.folder.setCurrentText(folder)

    def recent_folders(self) -> list[str]:
        value = self.settings.value("recent_folders", [])
        return [value] if isinstance(value, str) else list(value or [])
