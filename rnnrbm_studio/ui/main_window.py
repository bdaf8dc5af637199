"""The main window: playing on the left; the live piano-roll over the music and training tabs on the right.

The window lays them out and decides what follows what; it holds no model or MIDI logic of its own.
Each side has its controller: the open model and its file (ui/model_file.py), loading music
(ui/corpus_controller.py), training (ui/training_controller.py) and live playback with its exports
(ui/playback_section.py). Background jobs run in workers of one WorkerRegistry (ui/workers.py),
cancelled and awaited on close.
"""
from __future__ import annotations

import datetime
import functools
import logging
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..assets import default_model_path, resource_path
from ..music.corpus import Corpus
from ..training.trainer import Trainer, TrainResult, build_model
from .corpus_controller import CorpusController
from .live_controller import PortProvider
from .midi_inputs import InputProvider
from .model_file import ModelFile
from .panels.corpus import CorpusPanel
from .panels.live import LivePanel
from .panels.playalong import PlayAlongPanel
from .panels.training import TrainingPanel
from .panels.training_plot import TrainingPlot
from .piano_roll import PianoRollView
from .playalong_section import PlayAlongSection
from .playback_section import PlaybackSection
from .settings import restore_window, save_window
from .stall_monitor import StallMonitor
from .status_bar import StatusBar
from .training_controller import TrainingController
from .workers import WorkerHandle, WorkerRegistry

log = logging.getLogger(__name__)


class MainWindow(QtWidgets.QMainWindow):
    model_changed = QtCore.Signal()
    corpus_loaded = QtCore.Signal(object)
    training_finished = QtCore.Signal(object)
    epoch_finished = QtCore.Signal(object)  # TrainProgress, on the GUI thread

    def __init__(self, settings: QtCore.QSettings, model_path: str | Path | None = None,
                 port_provider: PortProvider | None = None, models_dir: str | Path | None = None,
                 input_provider: InputProvider | None = None):
        super().__init__()
        self.settings = settings
        self.models_dir = Path(models_dir) if models_dir else default_models_dir()
        self.workers = WorkerRegistry(self)  # every background job: cancelled and awaited on close
        self._train_after_load = False

        self.setWindowTitle("RNN-RBM Studio")
        icon = resource_path("icon.svg")
        if icon.exists():
            self.setWindowIcon(QtGui.QIcon(str(icon)))
        self.setAcceptDrops(True)
        self._build_widgets()
        self.model_file = ModelFile(self.models_dir, self)
        self.playback = PlaybackSection(self.live_panel, self.piano_roll, self.workers, settings, self, port_provider)
        self.playalong_panel = PlayAlongPanel()  # a MIDI input, the mode, knobs (ui/playalong_section.py)
        self.add_live_box(self.playalong_panel)
        self.playalong = PlayAlongSection(self.playalong_panel, self.playback, settings, self, input_provider)
        self.training_side = TrainingController(self.training_panel, self.training_plot, self.workers, self)
        self._build_menus()
        self._connect()
        self.stall_monitor = StallMonitor(self)
        restore_window(settings, self, self.live_panel, self.training_panel)
        self.playback.refresh_ports()
        self.model_file.open(model_path or default_model_path(), quiet=model_path is None)

    # ------------------------------------------------------------------------------ layout
    def _build_widgets(self) -> None:
        """Two columns that fit 1280x800 without scrolling: on the left, playing (the Play live panel,
        then the boxes add_live_box() adds: sound, playing along...); on the right, the live piano-roll
        over the tabs of the work behind it (the music to learn from, training, skipped files)."""
        self.corpus_panel = CorpusPanel()
        self.training_panel = TrainingPanel()
        self.live_panel = LivePanel()
        self.piano_roll = PianoRollView(capacity=160, title="Live")
        self.training_plot = TrainingPlot()
        # the music to learn from: loading, the pieces and the skipped files (ui/corpus_controller.py)
        self.corpus_side = CorpusController(self.corpus_panel, self.workers, self.settings,
                                            self.training_panel.roll_settings, self)
        self.pieces, self.preview = self.corpus_side.pieces, self.corpus_side.preview
        self.skipped = self.corpus_side.skipped

        live_column = QtWidgets.QWidget()
        self.live_boxes = QtWidgets.QVBoxLayout(live_column)
        self.live_boxes.addWidget(self.live_panel)
        self.live_boxes.addStretch(1)
        self.live_scroll = _column(live_column)  # scrolls only on a screen smaller than the window's own

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(_stacked(self.corpus_panel, self.corpus_side.pieces_view), "1 · Music")
        self.tabs.addTab(_side_by_side(_column(self.training_panel), self.training_plot), "2 · Train")
        self.tabs.addTab(self.skipped, "Skipped files")

        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.piano_roll)
        right.addWidget(self.tabs)
        right.setStretchFactor(0, 1)
        right.setSizes([260, 490])
        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        main.addWidget(self.live_scroll)
        main.addWidget(right)
        main.setStretchFactor(1, 1)
        main.setSizes([400, 880])
        self.setCentralWidget(main)
        self.setStatusBar(StatusBar())  # cuts a long message at a word, never mid-word
        self.model_label = QtWidgets.QLabel("")
        self.statusBar().addPermanentWidget(self.model_label)
        self.resize(1280, 800)

    def add_live_box(self, box: QtWidgets.QWidget) -> None:
        """A box of the live column, under the Play live panel (and the boxes added before it)."""
        self.live_boxes.insertWidget(self.live_boxes.count() - 1, box)  # above the closing stretch

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.new_action = file_menu.addAction("&New model", self.new_model, QtGui.QKeySequence.StandardKey.New)
        self.open_action = file_menu.addAction("&Open model…", self.model_file.open_dialog,
                                               QtGui.QKeySequence.StandardKey.Open)
        self.save_action = file_menu.addAction("&Save model as…", self.model_file.save_dialog,
                                               QtGui.QKeySequence.StandardKey.SaveAs)
        file_menu.addSeparator()
        file_menu.addAction("Open MIDI &folder…", self.corpus_panel._browse)
        file_menu.addAction("&Export session…", self.playback.export_session_dialog)
        file_menu.addAction("Export session as &audio…", self.playback.synth.export_audio_dialog)
        file_menu.addSeparator()
        file_menu.addAction("&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        self.space_shortcut = self.live_panel.install_shortcut(self)

    def _connect(self) -> None:
        self.model_file.changed.connect(self._model_changed)
        self.model_file.failed.connect(self._error)
        self.corpus_side.loaded.connect(self._corpus_loaded)
        self.corpus_side.failed.connect(self._corpus_not_loaded)
        self.corpus_side.cancelled.connect(self._corpus_not_loaded)
        self.corpus_side.play_requested.connect(self.playback.play_piece)
        self.corpus_side.stop_requested.connect(self.playback.piece.stop)
        self.playback.piece.playing_changed.connect(self.corpus_side.set_playing)
        self.playback.piece.position.connect(self.preview.set_playhead)
        self.playback.failed.connect(self._error)
        self.training_side.epoch_finished.connect(self.epoch_finished)
        self.training_side.weights.connect(self.playback.follow_training)
        self.training_side.trained.connect(self._training_done)
        self.training_side.failed.connect(self._error)
        self.training_side.ended.connect(self._update_training_buttons)
        self.training_panel.train_requested.connect(self.start_training)
        self.training_panel.stop_requested.connect(self.stop_training)
        self.training_panel.resume_requested.connect(self.resume_training)
        self.training_panel.steps_per_beat.valueChanged.connect(self._grid_changed)

    # ------------------------------------------------------------------------------ model
    def new_model(self) -> None:
        self.model_file.new(self.training_panel.configs()[0], self.training_panel.roll_settings())

    def _model_changed(self) -> None:
        model, path, checkpoint = self.model_file.model, self.model_file.path, self.model_file.checkpoint
        self.playback.set_model(model, checkpoint.data.roll_settings)
        self.training_plot.set_history(checkpoint.history, checkpoint.evaluation)
        config = model.config
        name = path.name if path else "untrained"
        epochs = checkpoint.training.progress.epochs_completed if checkpoint.training else None
        self.model_label.setText(f"Model: {name} ({config.n_hidden}/{config.n_hidden_recurrent}"
                                 + (f" {config.recurrence}" if config.recurrence != "tanh" else "")
                                 + (f", {epochs} epoch{'' if epochs == 1 else 's'}" if epochs else "") + ")")
        self.training_panel.checkpoint_label.setText(f"Model file: {path}" if path else "Model not saved yet")
        self._update_training_buttons()
        self.model_changed.emit()

    # ----------------------------------------------------------------------------- corpus
    @property
    def corpus(self) -> Corpus | None:
        return self.corpus_side.corpus

    @property
    def loader(self) -> WorkerHandle | None:
        return self.corpus_side.loader

    def load_folder(self, folder: str) -> None:
        self.corpus_side.load(folder)

    def cancel_loading(self) -> None:
        self.corpus_side.cancel()

    def _corpus_loaded(self, corpus: Corpus) -> None:
        self.tabs.setTabText(2, f"Skipped files ({len(corpus.skipped)})")
        self._update_training_buttons()
        self.corpus_loaded.emit(corpus)
        if self._train_after_load:
            self._train_after_load = False
            self.start_training()

    def _corpus_not_loaded(self, message: str = "") -> None:  # failed, or cancelled
        self._train_after_load = False
        if message:
            self._error(message)

    def _grid_changed(self) -> None:
        if self.corpus is not None and not (self.loader and self.loader.is_running()):
            self.load_folder(self.corpus.source)

    # --------------------------------------------------------------------------- training
    def start_training(self) -> None:
        if self.training_running() or self.corpus is None:
            return
        if self.corpus.settings != self.training_panel.roll_settings():
            self._train_after_load = True
            self.load_folder(self.corpus.source)
            return
        self.models_dir.mkdir(parents=True, exist_ok=True)
        path = self._new_model_path()
        model_config, config = self.training_panel.configs()
        # seeded before the weights exist, as the command line does: the same Seed trains the same model
        model = build_model(model_config, config.seed)
        self.training_plot.set_history([])
        self._start_training_job(functools.partial(
            Trainer, model, [p.roll for p in self.corpus.train], [p.roll for p in self.corpus.valid], config, path,
            self.corpus.settings, data_description=self.corpus.source), path)

    def _new_model_path(self) -> Path:
        """A file name in models_dir that no model has yet (two runs in one second get -2, -3...)."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        stem = f"{Path(self.corpus.source).name or 'model'}-{stamp}"
        path, copy = self.models_dir / f"{stem}.pt", 1
        while path.exists():
            copy += 1
            path = self.models_dir / f"{stem}-{copy}.pt"
        return path

    def resume_training(self) -> None:
        if self.training_running() or self.corpus is None or not self._can_resume():
            return
        epochs = max(self.training_panel.epochs.value(),
                     self.model_file.checkpoint.training.progress.epochs_completed + 1)
        self._start_training_job(functools.partial(
            Trainer.resume, self.model_file.path, [p.roll for p in self.corpus.train],
            [p.roll for p in self.corpus.valid], epochs=epochs, data_description=self.corpus.source), self.model_file.path)

    @property
    def training(self) -> WorkerHandle | None:
        return self.training_side.handle

    def _start_training_job(self, make_trainer: functools.partial, path: Path) -> None:
        self.training_side.start(make_trainer, path)  # in a worker (ui/training_controller.py)
        self._update_training_buttons()

    def stop_training(self) -> None:
        self.training_side.stop()

    def training_running(self) -> bool:
        return self.training_side.is_running()

    def _training_done(self, result: TrainResult) -> None:
        if self.training_side.path.exists():
            self.model_file.open(self.training_side.path)
        self.training_finished.emit(result)

    def _can_resume(self) -> bool:
        checkpoint = self.model_file.checkpoint
        training = checkpoint.training if checkpoint else None
        if not (self.model_file.path and training and training.optimizer_state is not None):
            return False
        return bool(training.progress.epochs_completed or training.epoch_in_progress)

    def _update_training_buttons(self) -> None:
        self.training_panel.set_state(running=self.training_running(), can_train=self.corpus is not None,
                                      can_resume=self._can_resume())

    # ---------------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if any(Path(url.toLocalFile()).is_dir() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        for url in event.mimeData().urls():
            if Path(url.toLocalFile()).is_dir():
                self.load_folder(url.toLocalFile())
                event.acceptProposedAction()
                return

    # ------------------------------------------------------------------------------ close
    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Stop everything cleanly: training keeps its checkpoint, playback leaves no note sounding."""
        self.stall_monitor.stop()
        self.playback.shutdown()
        self.playalong.shutdown()  # the input closed after the player has stopped
        self.workers.shutdown()  # cancels every job (training keeps its checkpoint) and waits, bounded
        save_window(self.settings, self, self.live_panel, self.training_panel)
        self.statusBar().clearMessage()  # also stops the status bar's message timer
        super().closeEvent(event)

    def _error(self, message: str) -> None:
        log.warning("%s", message)
        self.statusBar().showMessage(message, 10000)
        if not QtWidgets.QApplication.instance().property("no_dialogs"):
            QtWidgets.QMessageBox.warning(self, "RNN-RBM Studio", message)


def default_models_dir() -> Path:
    base = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.StandardLocation.GenericDataLocation)
    return Path(base or Path.home() / ".local" / "share") / "rnnrbm-studio" / "models"


def _column(widget: QtWidgets.QWidget) -> QtWidgets.QScrollArea:
    """`widget` at its full height when there is room; scrolling (never sideways) when there is not."""
    scroll = QtWidgets.QScrollArea()
    scroll.setWidget(widget)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setMinimumWidth(widget.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
    return scroll


def _stacked(top: QtWidgets.QWidget, rest: QtWidgets.QWidget) -> QtWidgets.QWidget:
    page = QtWidgets.QWidget()
    layout = QtWidgets.QVBoxLayout(page)
    layout.addWidget(top)
    layout.addWidget(rest, 1)
    return page


def _side_by_side(left: QtWidgets.QWidget, right: QtWidgets.QWidget) -> QtWidgets.QSplitter:
    splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
    splitter.addWidget(left)
    splitter.addWidget(right)
    splitter.setStretchFactor(1, 1)
    return splitter
