"""The main window: the music, training and live panels over the scrolling piano-roll.

The window owns the current model and holds no model or MIDI logic of its own. Its background jobs
run in workers of one WorkerRegistry (ui/workers.py), cancelled and awaited on close: loading music
(ui/corpus_controller.py), training (ui/training_controller.py) and Export new bars
(ui/export_controller.py). Display work happens on one timer at display rate.
"""
from __future__ import annotations

import datetime
import functools
import logging
import shutil
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..assets import default_model_path, resource_path
from ..training.checkpoint import (CheckpointError, load_checkpoint, model_checkpoint, model_from_checkpoint,
                                   roll_settings_of)
from ..training.checkpoint_types import Checkpoint
from ..training.checkpoint import save_checkpoint
from ..music.corpus import Corpus
from ..errors import StudioError
from ..model import RnnRbm
from ..music.midi_files import MidiReadError
from ..music.pianoroll import playback_grid
from ..music.primer import read_primer
from ..training.trainer import Trainer, TrainResult, build_model
from .live_controller import LiveController, PortProvider
from .panels import CorpusPanel, LivePanel, TrainingPanel, TrainingPlot
from .piano_roll import PianoRollView
from .settings import restore_widgets, save_widgets
from .stall_monitor import StallMonitor
from .corpus_controller import CorpusController
from .export_controller import BarsExport
from .training_controller import TrainingController
from .workers import WorkerHandle, WorkerRegistry

log = logging.getLogger(__name__)

DISPLAY_INTERVAL_MS = 33  # ~30 redraws per second, whatever the playing or training rate


class MainWindow(QtWidgets.QMainWindow):
    model_changed = QtCore.Signal()
    corpus_loaded = QtCore.Signal(object)
    training_finished = QtCore.Signal(object)
    epoch_finished = QtCore.Signal(object)  # TrainProgress, on the GUI thread

    def __init__(self, settings: QtCore.QSettings, model_path: str | Path | None = None,
                 port_provider: PortProvider | None = None, models_dir: str | Path | None = None):
        super().__init__()
        self.settings = settings
        self.models_dir = Path(models_dir) if models_dir else default_models_dir()
        self.model: RnnRbm | None = None
        self.model_path: Path | None = None
        self.checkpoint: Checkpoint | None = None  # the open model's file, as read (or as it would be saved)
        self.workers = WorkerRegistry(self)  # every background job: cancelled and awaited on close
        self._train_after_load = False

        self.setWindowTitle("RNN-RBM Studio")
        icon = resource_path("icon.svg")
        if icon.exists():
            self.setWindowIcon(QtGui.QIcon(str(icon)))
        self.setAcceptDrops(True)
        self._build_widgets()
        self._build_menus()
        self.live = LiveController(port_provider, parent=self)
        self.bars_export = BarsExport(self.workers, self.statusBar(), self)  # Export new bars, in a worker
        self.training_side = TrainingController(self.training_panel, self.training_plot, self.workers, self)
        self._connect()
        self.display_timer = QtCore.QTimer(self)
        self.display_timer.setInterval(DISPLAY_INTERVAL_MS)
        self.display_timer.timeout.connect(self._on_display_tick)
        self.display_timer.start()
        self.stall_monitor = StallMonitor(self)
        self._restore_settings()
        self.refresh_ports()
        self.open_model(model_path or default_model_path(), quiet=model_path is None)

    # ------------------------------------------------------------------------------ layout
    def _build_widgets(self) -> None:
        self.corpus_panel = CorpusPanel()
        self.training_panel = TrainingPanel()
        self.live_panel = LivePanel()
        side = QtWidgets.QWidget()
        side_layout = QtWidgets.QVBoxLayout(side)
        for panel in (self.corpus_panel, self.training_panel, self.live_panel):
            side_layout.addWidget(panel)
        side_layout.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(380)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.piano_roll = PianoRollView(capacity=160, title="Live")
        self.training_plot = TrainingPlot()
        # the music to learn from: loading, the Pieces and Skipped files tabs (ui/corpus_controller.py)
        self.corpus_side = CorpusController(self.corpus_panel, self.workers, self.settings,
                                            self.training_panel.roll_settings, self)
        self.pieces, self.preview = self.corpus_side.pieces, self.corpus_side.preview
        self.skipped = self.corpus_side.skipped
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(self.training_plot, "Training")
        self.tabs.addTab(self.corpus_side.pieces_view, "Pieces")
        self.tabs.addTab(self.skipped, "Skipped files")

        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.piano_roll)
        right.addWidget(self.tabs)
        right.setSizes([420, 300])
        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        main.addWidget(scroll)
        main.addWidget(right)
        main.setStretchFactor(1, 1)
        self.setCentralWidget(main)
        self.model_label = QtWidgets.QLabel("")
        self.statusBar().addPermanentWidget(self.model_label)
        self.resize(1280, 800)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.new_action = file_menu.addAction("&New model", self.new_model, QtGui.QKeySequence.StandardKey.New)
        self.open_action = file_menu.addAction("&Open model…", self._open_model_dialog,
                                               QtGui.QKeySequence.StandardKey.Open)
        self.save_action = file_menu.addAction("&Save model as…", self._save_model_dialog,
                                               QtGui.QKeySequence.StandardKey.SaveAs)
        file_menu.addSeparator()
        file_menu.addAction("Open MIDI &folder…", self.corpus_panel._browse)
        file_menu.addAction("&Export session…", self._export_session_dialog)
        file_menu.addSeparator()
        file_menu.addAction("&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        self.space_shortcut = self.live_panel.install_shortcut(self)

    def _connect(self) -> None:
        self.corpus_side.loaded.connect(self._corpus_loaded)
        self.corpus_side.failed.connect(self._corpus_not_loaded)
        self.corpus_side.cancelled.connect(self._corpus_not_loaded)
        self.bars_export.failed.connect(self._error)
        self.training_side.epoch_finished.connect(self.epoch_finished)
        self.training_side.weights.connect(self._follow_training)
        self.training_side.trained.connect(self._training_done)
        self.training_side.failed.connect(self._error)
        self.training_side.ended.connect(self._update_training_buttons)
        self.bars_export.running_changed.connect(
            lambda running: self.live_panel.export_bars_button.setEnabled(not running))
        self.training_panel.train_requested.connect(self.start_training)
        self.training_panel.stop_requested.connect(self.stop_training)
        self.training_panel.resume_requested.connect(self.resume_training)
        self.training_panel.steps_per_beat.valueChanged.connect(self._grid_changed)
        live, panel = self.live, self.live_panel
        panel.play_toggled.connect(self.toggle_play)
        panel.refresh_ports_requested.connect(self.refresh_ports)
        panel.port_chosen.connect(self._port_chosen)
        panel.reset_requested.connect(live.reset_state)
        panel.prime_requested.connect(self._prime_dialog)
        panel.panic_requested.connect(live.panic)
        panel.export_session_requested.connect(self._export_session_dialog)
        panel.export_bars_requested.connect(self._export_bars_dialog)
        panel.settings_changed.connect(self._playback_settings_changed)
        live.playing_changed.connect(panel.set_playing)
        live.error.connect(self._live_error)

    # ------------------------------------------------------------------------------ model
    def open_model(self, path: str | Path, quiet: bool = False) -> bool:
        try:
            checkpoint = load_checkpoint(path)
            model = model_from_checkpoint(checkpoint)
        except CheckpointError as error:
            if not quiet:
                self._error(str(error))
            else:
                self.statusBar().showMessage(f"No model loaded: {error}")
            return False
        self._set_model(model, Path(path), checkpoint)
        self.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    def new_model(self) -> None:
        model = RnnRbm(self.training_panel.configs()[0])
        self._set_model(model, None, model_checkpoint(model, self.training_panel.roll_settings()))
        self.statusBar().showMessage("New untrained model: load music and click Train", 5000)

    def _set_model(self, model: RnnRbm, path: Path | None, checkpoint: Checkpoint) -> None:
        self.model, self.model_path, self.checkpoint = model, path, checkpoint
        self.live_panel.set_model_grid(checkpoint.data.roll_settings)  # a seconds grid brings its own tempo
        self.live.set_model(model, checkpoint.data.roll_settings)
        self.live_panel.gibbs_steps.setValue(model.config.gibbs_steps)  # each model says how it mixes
        self.training_plot.set_history(checkpoint.history)
        config = model.config
        name = path.name if path else "untrained"
        epochs = checkpoint.training.progress.epochs_completed if checkpoint.training else None
        self.model_label.setText(f"Model: {name} ({config.n_hidden}/{config.n_hidden_recurrent}"
                                 + (f", {epochs} epochs" if epochs else "") + ")")
        self.training_panel.checkpoint_label.setText(f"Model file: {path}" if path else "Model not saved yet")
        self._update_training_buttons()
        self.model_changed.emit()

    def _open_model_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open model", str(self.models_dir),
                                                        "RNN-RBM models (*.pt);;All files (*)")
        if path:
            self.open_model(path)

    def _save_model_dialog(self) -> None:
        if self.model is None:
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save model as", str(self.models_dir / "model.pt"),
                                                        "RNN-RBM models (*.pt)")
        if path:
            self.save_model(path)

    def save_model(self, path: str | Path) -> None:
        path = Path(path)
        try:
            if self.model_path and self.model_path.exists() and self.model_path.resolve() != path.resolve():
                shutil.copyfile(self.model_path, path)
            elif not self.model_path:
                save_checkpoint(path, model_checkpoint(self.model, roll_settings_of(self.checkpoint)))
        except OSError as error:
            self._error(f"Cannot save {path}: {error.strerror or error}")
            return
        self.open_model(path)

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
        epochs = max(self.training_panel.epochs.value(), self.checkpoint.training.progress.epochs_completed + 1)
        self._start_training_job(functools.partial(
            Trainer.resume, self.model_path, [p.roll for p in self.corpus.train], [p.roll for p in self.corpus.valid],
            epochs=epochs, data_description=self.corpus.source), self.model_path)

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

    def _follow_training(self, model: RnnRbm) -> None:
        if self.live_panel.follow_training.isChecked():
            self.live.follow_weights(model)

    def _training_done(self, result: TrainResult) -> None:
        if self.training_side.path.exists():
            self.open_model(self.training_side.path)
        self.training_finished.emit(result)

    def _can_resume(self) -> bool:
        training = self.checkpoint.training if self.checkpoint else None
        if not (self.model_path and training and training.optimizer_state is not None):
            return False
        return bool(training.progress.epochs_completed or training.epoch_in_progress)

    def _update_training_buttons(self) -> None:
        self.training_panel.set_state(running=self.training_running(), can_train=self.corpus is not None,
                                      can_resume=self._can_resume())

    # ------------------------------------------------------------------------------- live
    def refresh_ports(self) -> None:
        names = self.live.port_names()
        current = self.settings.value("port", "") or (names[0] if names else None)
        self.live_panel.set_ports(names, current, self.live.no_port_help())

    def _port_chosen(self, name: str) -> None:
        self.settings.setValue("port", name)
        if self.live.is_playing():
            self.live.change_port(name)

    def toggle_play(self) -> None:
        if self.live.is_playing():
            self.live.stop()
            return
        name = self.live_panel.port.currentText()
        if not name:
            self._error(self.live.no_port_help())
            self.live_panel.set_playing(False)
            return
        self.settings.setValue("port", name)
        self._playback_settings_changed()
        self.live.start(name)

    def _playback_settings_changed(self) -> None:
        self.live.update(self.live_panel.playback_settings())
        self.piano_roll.set_seconds_per_frame(self.live.seconds_per_step())

    def _live_error(self, message: str) -> None:
        # the player has stopped itself; most often its port or the whole MIDI system went away, so
        # the list shows what is there now (nothing, and how to get an output, if JACK stopped)
        self.refresh_ports()
        self._error(message)  # the status bar, and a message box

    def _on_display_tick(self) -> None:
        for keys, onsets in self.live.drain_frames():
            self.piano_roll.push(keys, onsets)
        self.piano_roll.refresh()

    def _prime_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Prime from a MIDI file", "",
                                                        "MIDI files (*.mid *.midi *.MID);;All files (*)")
        if path:
            self.prime_from_file(path)

    def prime_from_file(self, path: str | Path) -> None:
        try:
            roll = read_primer(path, roll_settings_of(self.checkpoint))
        except MidiReadError as error:
            self._error(f"Cannot prime: {error}")  # names the file
            return
        self.live.prime(roll)
        self.statusBar().showMessage(f"Primed with {Path(path).name} ({len(roll)} steps)", 5000)

    def _export_session_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export the session", "session.mid",
                                                        "MIDI files (*.mid)")
        if path:
            self.export_session(path)

    def export_session(self, path: str | Path) -> bool:
        try:
            frames = self.live.export_session(path)
        except (StudioError, OSError, ValueError) as error:
            self._error(f"Cannot export: {error}")
            return False
        self.statusBar().showMessage(f"Saved {frames} steps to {path}", 5000)
        return True

    def _export_bars_dialog(self, bars: int) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export new bars", f"generated-{bars}-bars.mid",
                                                        "MIDI files (*.mid)")
        if path:
            self.export_bars(path, bars)

    def export_bars(self, path: str | Path, bars: int) -> WorkerHandle | None:
        """Start generating `bars` new bars into `path` in a worker (progress and Cancel in the status
        bar); the file is written when all are there. None if there is no model or an export runs."""
        if self.model is None or self.bars_export.is_running():
            return None
        _, steps_per_beat = playback_grid(roll_settings_of(self.checkpoint))
        frames = bars * 4 * steps_per_beat
        return self.bars_export.start(self.model, path, bars, frames, bpm=self.live_panel.bpm.value(),
                                      steps_per_beat=steps_per_beat, gibbs_steps=self.live_panel.gibbs_steps.value(),
                                      inverse_temperature=1.0 / self.live_panel.temperature.value())

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

    # -------------------------------------------------------------------- settings, close
    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        restore_widgets(self.settings, self._persisted_widgets())

    def _save_settings(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        save_widgets(self.settings, self._persisted_widgets())
        self.settings.sync()

    def _persisted_widgets(self) -> dict[str, QtWidgets.QWidget]:
        live, training = self.live_panel, self.training_panel
        return {"bpm": live.bpm, "temperature": live.temperature,
                "follow_training": live.follow_training, "training/hidden": training.hidden,
                "training/recurrent": training.recurrent, "training/cd_k": training.cd_k,
                "training/epochs": training.epochs, "training/batch_seqs": training.batch_seqs,
                "training/steps_per_beat": training.steps_per_beat,
                "training/learning_rate": training.learning_rate, "training/optimizer": training.optimizer,
                "training/recipe": training.recipe, "training/key_shift": training.key_shift}

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Stop everything cleanly: training keeps its checkpoint, playback leaves no note sounding."""
        self.display_timer.stop()
        self.stall_monitor.stop()
        self.live.shutdown()
        self.workers.shutdown()  # cancels every job (training keeps its checkpoint) and waits, bounded
        self._save_settings()
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


