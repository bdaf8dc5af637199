"""The three control panels of the window: the music (corpus), training, and live playback.

Panels only lay out widgets and say what the user asked for through signals; the window decides
what happens. They hold no engine state.
"""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ..live.settings import PlaybackSettings
from ..model import RnnRbmConfig
from ..music.pianoroll import RollSettings, own_tempo
from ..training.config import EpochRecord, TrainConfig, TrainProgress
from ..training.recipes import QUALITY, TUTORIAL, configs


def _spin(minimum, maximum, value, tooltip, step=1) -> QtWidgets.QSpinBox:
    box = QtWidgets.QSpinBox()
    box.setRange(minimum, maximum)
    box.setValue(value)
    box.setSingleStep(step)
    box.setToolTip(tooltip)
    return box


def _double_spin(minimum, maximum, value, decimals, tooltip, step) -> QtWidgets.QDoubleSpinBox:
    box = QtWidgets.QDoubleSpinBox()
    box.setRange(minimum, maximum)
    box.setDecimals(decimals)
    box.setValue(value)
    box.setSingleStep(step)
    box.setToolTip(tooltip)
    return box


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class CorpusPanel(QtWidgets.QGroupBox):
    """Choose a MIDI folder; shows loading progress and the summary."""

    load_requested = QtCore.Signal(str)
    cancel_requested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__("1 · Music to learn from", parent)
        self.folder = QtWidgets.QComboBox()
        self.folder.setEditable(True)
        self.folder.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.folder.lineEdit().setPlaceholderText("a folder of MIDI files (or drop one here)")
        self.folder.setToolTip("The folder is searched recursively for .mid and .midi files. "
                               "Recent folders are in the list.")
        self.folder.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.browse_button = QtWidgets.QPushButton("Choose…")
        self.browse_button.setToolTip("Choose a folder of MIDI files")
        self.load_button = QtWidgets.QPushButton("Load")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setFormat("%v / %m files")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.summary = QtWidgets.QLabel("No music loaded yet.")
        self.summary.setWordWrap(True)

        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.load_button)
        progress_row = QtWidgets.QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(progress_row)
        layout.addWidget(self.summary)
        self.set_loading(False)

        self.browse_button.clicked.connect(self._browse)
        self.load_button.clicked.connect(lambda: self._request(self.folder.currentText()))
        self.folder.lineEdit().returnPressed.connect(lambda: self._request(self.folder.currentText()))
        self.folder.activated.connect(lambda index: self._request(self.folder.itemText(index)))
        self.cancel_button.clicked.connect(self.cancel_requested)

    def _browse(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Choose a folder of MIDI files",
                                                            self.folder.currentText())
        if folder:
            self._request(folder)

    def _request(self, folder: str) -> None:
        folder = folder.strip()
        if folder:
            self.load_requested.emit(folder)

    def set_recent(self, folders: list[str]) -> None:
        current = self.folder.currentText()
        self.folder.blockSignals(True)
        self.folder.clear()
        self.folder.addItems(folders)
        self.folder.setCurrentText(current or (folders[0] if folders else ""))
        self.folder.blockSignals(False)

    def set_loading(self, loading: bool) -> None:
        self.progress.setVisible(loading)
        self.cancel_button.setVisible(loading)
        self.load_button.setEnabled(not loading)
        self.browse_button.setEnabled(not loading)
        if loading:
            self.progress.setRange(0, 0)

    def show_progress(self, done: int, total: int, name: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setToolTip(name)


class TrainingPanel(QtWidgets.QGroupBox):
    """Hyperparameters, Train / Stop / Resume, and progress."""

    train_requested = QtCore.Signal()
    stop_requested = QtCore.Signal()
    resume_requested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__("2 · Train", parent)
        defaults, train_defaults = configs(QUALITY)  # the recipe box starts ticked
        self.hidden = _spin(8, 2000, defaults.n_hidden, "Hidden units of each frame's RBM: more can model "
                            "richer chords, but train more slowly. The paper used 150.", 10)
        self.recurrent = _spin(4, 2000, defaults.n_hidden_recurrent, "Units of the RNN that carries the music's "
                               "history from frame to frame. The paper used 100.", 10)
        self.learning_rate = _double_spin(1e-5, 1.0, train_defaults.learning_rate, 5, "Step size. The tutorial "
                                          "used 0.001 with plain SGD; with Adam, 0.001-0.003 learns fast.", 0.0005)
        self.cd_k = _spin(1, 100, defaults.cd_k, "Gibbs steps of contrastive divergence (CD-k) per update. "
                          "More is more accurate and slower. The paper used 15.")
        self.epochs = _spin(1, 10_000, train_defaults.epochs, "Passes over the music. The tutorial ran 200 "
                            "(plain SGD); the bundled model 60.")
        self.optimizer = QtWidgets.QComboBox()
        self.optimizer.addItems(["adam", "sgd"])
        self.optimizer.setCurrentText(train_defaults.optimizer)
        self.optimizer.setToolTip("adam: fast and robust. sgd: the tutorial's plain gradient descent.")
        self.batch_seqs = _spin(1, 256, train_defaults.batch_seqs, "Subsequences of 100 steps per update. "
                                "1 reproduces the tutorial's schedule; 4 learns best (docs/quality.md); "
                                "16-32 is faster per epoch.")
        self.key_shift = _spin(0, 12, train_defaults.key_shift, "Transpose each piece by up to this many "
                               "semitones, up or down, drawn anew every epoch: a small folder learns more "
                               "and overfits less.\n"
                               "Leave it at 0 for a large folder whose pieces share one key (e.g. Nottingham, "
                               "all in C). docs/quality.md, round three, has the measurements.")
        self.key_shift.setSuffix(" semitones")
        self.key_shift.setSpecialValueText("off")
        self.recipe = QtWidgets.QCheckBox("Quality recipe")
        self.recipe.setChecked(True)
        self.recipe.setToolTip("Pretrain the RBM and the RNN, decay the learning rate, use persistent CD "
                               "chains and weight decay (on W and on the RNN's weights), and keep the epoch "
                               "with the best validation log-likelihood: how the bundled model was trained "
                               "(docs/quality.md). "
                               "The model then composes with 1,000 Gibbs steps per step, which its sharper "
                               "RBMs need.\n"
                               "Off: plain CD-k training with the settings above, as in the tutorial (25 steps).")
        self.steps_per_beat = _spin(1, 16, 2, "Time grid: steps per quarter note (2 = eighth notes, "
                                    "as the Nottingham benchmark). Changing it reloads the music.")
        self.seed = _spin(0, 2**31 - 1, train_defaults.seed, "Random seed: the same seed and data give the "
                          "same model.")

        form = QtWidgets.QFormLayout()
        form.addRow("Hidden units", self.hidden)
        form.addRow("Recurrent units", self.recurrent)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Batch (subsequences)", self.batch_seqs)
        form.addRow("CD-k", self.cd_k)
        form.addRow("Epochs", self.epochs)
        form.addRow("Steps per beat", self.steps_per_beat)
        form.addRow("Seed", self.seed)
        form.addRow("Transpose (augment)", self.key_shift)
        form.addRow("", self.recipe)

        self.train_button = QtWidgets.QPushButton("Train")
        self.train_button.setToolTip("Train a new model on the loaded music (checkpoints are saved every epoch)")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current update; the checkpoint keeps the weights so far")
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.resume_button.setToolTip("Continue the current model's training from its checkpoint")
        buttons = QtWidgets.QHBoxLayout()
        for button in (self.train_button, self.stop_button, self.resume_button):
            buttons.addWidget(button)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        self.checkpoint_label = QtWidgets.QLabel("")
        self.checkpoint_label.setWordWrap(True)
        self.checkpoint_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.checkpoint_label)

        self.train_button.clicked.connect(self.train_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.resume_button.clicked.connect(self.resume_requested)
        self.set_state(running=False, can_train=False, can_resume=False)

    def configs(self) -> tuple[RnnRbmConfig, TrainConfig]:
        """The model's and the training's settings: the recipe's (training/recipes.py, as `train --recipe`
        gives them), with the fields of this panel."""
        recipe = QUALITY if self.recipe.isChecked() else TUTORIAL
        # the epochs field is the user's: no minimum number of updates stretches a small folder's run
        return configs(recipe, min_updates=0, n_hidden=self.hidden.value(), n_hidden_recurrent=self.recurrent.value(),
                       cd_k=self.cd_k.value(), epochs=self.epochs.value(), learning_rate=self.learning_rate.value(),
                       optimizer=self.optimizer.currentText(), batch_seqs=self.batch_seqs.value(),
                       seed=self.seed.value(), key_shift=self.key_shift.value())

    def roll_settings(self) -> RollSettings:
        return RollSettings(steps_per_beat=self.steps_per_beat.value())

    def set_state(self, running: bool, can_train: bool, can_resume: bool) -> None:
        self.progress.setVisible(running or self.progress.value() > 0)
        self.train_button.setEnabled(can_train and not running)
        self.resume_button.setEnabled(can_resume and can_train and not running)
        self.stop_button.setEnabled(running)
        for widget in (self.hidden, self.recurrent, self.learning_rate, self.cd_k, self.epochs, self.optimizer,
                       self.batch_seqs, self.steps_per_beat, self.seed, self.key_shift, self.recipe):
            widget.setEnabled(not running)

    def show_progress(self, p: TrainProgress) -> None:
        self.progress.setValue(int(p.fraction * 1000))
        self.progress.setFormat(f"epoch {p.epoch}/{p.epochs}  {p.fraction * 100:.0f}%")
        valid = f", valid {p.valid_monitor:.2f}" if p.valid_monitor is not None else ""
        if p.event in ("step", "epoch"):
            self.status.setText(f"{p.frames_per_second:,.0f} frames/s · monitor {p.monitor:.2f}{valid} · "
                                f"elapsed {format_seconds(p.elapsed_seconds)} · ETA {format_seconds(p.eta_seconds)}")
        else:
            self.status.setText(p.message)


class TrainingPlot(pg.PlotWidget):
    """The training and validation monitor per epoch (the tutorial's reconstruction log-likelihood)."""

    def __init__(self, parent=None):
        super().__init__(parent=parent)
        plot = self.getPlotItem()
        plot.setLabel("bottom", "epoch")
        plot.setLabel("left", "monitor (higher is better)")
        self.legend = plot.addLegend(offset=(-10, 10))
        plot.showGrid(x=True, y=True, alpha=0.2)
        self.train_curve = plot.plot([], [], pen=pg.mkPen((72, 132, 210), width=2), name="training")
        self.valid_curve = plot.plot([], [], pen=pg.mkPen((255, 196, 64), width=2), name="validation",
                                     symbol="o", symbolSize=4)
        self.epochs: list[int] = []
        self.train_values: list[float] = []
        self.valid_epochs: list[int] = []
        self.valid_values: list[float] = []
        self._redraw()

    def set_history(self, history: list[EpochRecord]) -> None:
        # a history may lack training readings (the bundled model's: resources/default_model.md)
        self.epochs = [h.epoch for h in history if h.monitor is not None]
        self.train_values = [h.monitor for h in history if h.monitor is not None]
        self.valid_epochs = [h.epoch for h in history if h.valid_monitor is not None]
        self.valid_values = [h.valid_monitor for h in history if h.valid_monitor is not None]
        self._redraw()

    def add_epoch(self, p: TrainProgress) -> None:
        self.epochs.append(p.epoch)
        self.train_values.append(p.monitor)
        if p.valid_monitor is not None:
            self.valid_epochs.append(p.epoch)
            self.valid_values.append(p.valid_monitor)
        self._redraw()

    def _redraw(self) -> None:
        self.train_curve.setData(self.epochs, self.train_values)
        self.valid_curve.setData(self.valid_epochs, self.valid_values)
        # a curve without points has no place in the legend (the bundled model has no training readings)
        self.legend.clear()
        for curve, name, values in ((self.train_curve, "training", self.train_values),
                                    (self.valid_curve, "validation", self.valid_values)):
            if values:
                self.legend.addItem(curve, name)

    def legend_names(self) -> list[str]:
        return [label.text for _, label in self.legend.items]


class LivePanel(QtWidgets.QGroupBox):
    """Output port, Play / Stop, tempo, sampling, and the session's export."""

    play_toggled = QtCore.Signal()
    settings_changed = QtCore.Signal()  # tempo, Gibbs steps or temperature: see playback_settings()
    refresh_ports_requested = QtCore.Signal()
    port_chosen = QtCore.Signal(str)
    reset_requested = QtCore.Signal()
    prime_requested = QtCore.Signal()
    panic_requested = QtCore.Signal()
    export_session_requested = QtCore.Signal()
    export_bars_requested = QtCore.Signal(int)

    def __init__(self, parent=None):
        super().__init__("3 · Play live", parent)
        self.port = QtWidgets.QComboBox()
        self.port.setToolTip("The MIDI output the music is sent to: your synth, or the virtual port "
                             "'RNN-RBM Studio' that other programs can connect to.")
        self.port.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.refresh_button = QtWidgets.QPushButton("Refresh")
        self.refresh_button.setToolTip("Look for MIDI outputs again (e.g. after starting a synth)")
        self.port_help = QtWidgets.QLabel("")
        self.port_help.setWordWrap(True)
        self.port_help.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.port_help.setVisible(False)
        self.play_button = QtWidgets.QPushButton("Play")
        self.play_button.setToolTip("Start or stop improvising on the chosen output (Space)")
        self.play_button.setCheckable(True)
        self.bpm = _double_spin(20, 400, 120, 0, "Tempo in beats per minute", 5)
        # up to 5,000: a sharp model needs ~1,000 (the bundled one: resources/default_model.md)
        self.gibbs_steps = _spin(1, 5000, RnnRbmConfig().gibbs_steps, "Gibbs steps per generated step: fewer "
                                 "is looser, more is closer to the model (the tutorial used 25; each model "
                                 "brings its own setting, the bundled one 1,000).")
        self.temperature = _double_spin(0.2, 3.0, 1.0, 2, "Sampling temperature: below 1 plays safer, "
                                        "sparser music; above 1 more adventurous.", 0.05)
        self.follow_training = QtWidgets.QCheckBox("Follow training")
        self.follow_training.setToolTip("While training runs, play with the newest weights after each epoch")
        self.follow_training.setChecked(True)
        self.reset_button = QtWidgets.QPushButton("Reset")
        self.reset_button.setToolTip("Forget the music so far: start the model's memory afresh")
        self.prime_button = QtWidgets.QPushButton("Prime…")
        self.prime_button.setToolTip("Let the model listen to a MIDI file first, then continue it")
        self.panic_button = QtWidgets.QPushButton("Panic")
        self.panic_button.setToolTip("Silence every note on every channel of the output")
        self.export_session_button = QtWidgets.QPushButton("Export session…")
        self.export_session_button.setToolTip("Save everything played so far as a .mid file, exactly as heard")
        self.bars = _spin(1, 512, 16, "Bars (of 4 beats) to generate into a new .mid file")
        self.export_bars_button = QtWidgets.QPushButton("Export new bars…")
        self.export_bars_button.setToolTip("Generate a fresh piece of this many bars and save it as .mid")
        self._grid = RollSettings()  # the playing model's time grid (set_model_grid)

        port_row = QtWidgets.QHBoxLayout()
        port_row.addWidget(self.port, 1)
        port_row.addWidget(self.refresh_button)
        form = QtWidgets.QFormLayout()
        form.addRow("Tempo (BPM)", self.bpm)
        form.addRow("Gibbs steps", self.gibbs_steps)
        form.addRow("Temperature", self.temperature)
        actions = QtWidgets.QHBoxLayout()
        for button in (self.reset_button, self.prime_button, self.panic_button):
            actions.addWidget(button)
        export_row = QtWidgets.QHBoxLayout()
        export_row.addWidget(self.export_session_button)
        export_row.addWidget(self.bars)
        export_row.addWidget(self.export_bars_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(port_row)
        layout.addWidget(self.port_help)
        layout.addWidget(self.play_button)
        layout.addLayout(form)
        layout.addWidget(self.follow_training)
        layout.addLayout(actions)
        layout.addLayout(export_row)

        self.play_button.clicked.connect(self.play_toggled)
        self.refresh_button.clicked.connect(self.refresh_ports_requested)
        self.port.activated.connect(lambda index: self.port_chosen.emit(self.port.itemText(index)))
        self.reset_button.clicked.connect(self.reset_requested)
        self.prime_button.clicked.connect(self.prime_requested)
        self.panic_button.clicked.connect(self.panic_requested)
        self.export_session_button.clicked.connect(self.export_session_requested)
        self.export_bars_button.clicked.connect(lambda: self.export_bars_requested.emit(self.bars.value()))
        for box in (self.bpm, self.gibbs_steps, self.temperature):
            box.valueChanged.connect(self.settings_changed)

    def set_model_grid(self, grid: RollSettings) -> None:
        """The time grid of the model to play; one with a tempo of its own (a seconds grid) shows it."""
        self._grid = grid
        tempo = own_tempo(grid)
        if tempo is not None:
            self.bpm.setValue(tempo)

    def playback_settings(self) -> PlaybackSettings:
        """What the boxes say, on the model's time grid."""
        bpm, tempo = self.bpm.value(), own_tempo(self._grid)
        if tempo is not None and round(tempo, self.bpm.decimals()) == bpm:
            bpm = tempo  # the box shows the model's own tempo rounded: play it exactly
        return PlaybackSettings.for_model(self._grid, bpm=bpm, gibbs_steps=self.gibbs_steps.value(),
                                          temperature=self.temperature.value())

    def set_ports(self, names: list[str], current: str | None, help_text: str) -> None:
        self.port.blockSignals(True)
        self.port.clear()
        self.port.addItems(names)
        if current in names:
            self.port.setCurrentText(current)
        self.port.blockSignals(False)
        self.port_help.setText(help_text)
        self.port_help.setVisible(not names)
        self.play_button.setEnabled(bool(names))

    def set_playing(self, playing: bool) -> None:
        self.play_button.setChecked(playing)
        self.play_button.setText("Stop" if playing else "Play")

    def install_shortcut(self, window: QtWidgets.QWidget) -> QtGui.QShortcut:
        shortcut = QtGui.QShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Space), window)
        shortcut.setContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        shortcut.activated.connect(lambda: self.play_button.isEnabled() and self.play_toggled.emit())
        return shortcut
