"""The *Play live* panel: the output port, Play / Stop, how it plays, priming and the exports."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from ...live.settings import PREDICTION_GIBBS_STEPS, PlaybackSettings
from ...music.dynamics import SUMMARY as DYNAMICS
from ...model import RnnRbmConfig
from ...music.pianoroll import RollSettings, own_tempo
from .boxes import double_spin_box, spin_box
from .synth import SynthPanel

SAMPLERS = {"prediction": "Fast", "silence": "Exact (tutorial)"}  # PlaybackSettings.chain_start: its name here


class LivePanel(QtWidgets.QGroupBox):
    """Output port, Play / Stop, tempo, sampling, and the session's export."""

    play_toggled = QtCore.Signal()
    settings_changed = QtCore.Signal()  # tempo, sampler, Gibbs steps, temperature or dynamics: playback_settings()
    refresh_ports_requested = QtCore.Signal()
    port_chosen = QtCore.Signal(str)
    reset_requested = QtCore.Signal()
    prime_requested = QtCore.Signal()
    panic_requested = QtCore.Signal()
    export_session_requested = QtCore.Signal()
    export_bars_requested = QtCore.Signal(int)

    def __init__(self, parent=None):
        super().__init__("Play live", parent)
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
        self.bpm = double_spin_box(20, 400, 120, 0, "Tempo in beats per minute", 5)
        self.sampler = QtWidgets.QComboBox()
        for chain_start, name in SAMPLERS.items():
            self.sampler.addItem(name, chain_start)
        self.sampler.setToolTip(
            f"How each frame is sampled. Fast: its Gibbs chain starts at the RNN's own guess at the frame and "
            f"runs {PREDICTION_GIBBS_STEPS} steps, close to the exact chain's music at a fraction of its work. "
            f"Exact (tutorial): the chain starts at silence and runs the model's own steps (the bundled "
            f"model's 1,000). Choosing one sets Gibbs steps to its default.")
        # up to 5,000: a sharp model needs ~1,000 from silence (the bundled one: resources/default_model.md)
        self.gibbs_steps = spin_box(
            1, 5000, PREDICTION_GIBBS_STEPS,
            f"Gibbs steps per generated frame, run as given: more is closer to the model, and slower. Fast "
            f"starts at the RNN's guess: {PREDICTION_GIBBS_STEPS} are enough. Exact (tutorial) starts at "
            f"silence: the model's own setting (the bundled model's 1,000; with 25 it plays almost nothing). "
            f"Playing along uses these steps as they are.")
        self._model_gibbs_steps = RnnRbmConfig().gibbs_steps  # the open model's own (set_model_gibbs_steps)
        self.temperature = double_spin_box(0.2, 3.0, 1.0, 2, "Sampling temperature: below 1 plays safer, "
                                           "sparser music; above 1 more adventurous.", 0.05)
        self.follow_training = QtWidgets.QCheckBox("Follow training")
        self.follow_training.setToolTip("While training runs, play with the newest weights after each epoch")
        self.follow_training.setChecked(True)
        self.dynamics = QtWidgets.QCheckBox("Dynamics")
        self.dynamics.setToolTip(f"Shape each note's velocity: {DYNAMICS} (docs/live.md). Off: every note "
                                 "at one velocity. Exports follow it too.")
        self.dynamics.setChecked(True)
        self.reset_button = QtWidgets.QPushButton("Reset")
        self.reset_button.setToolTip("Forget the music so far: start the model's memory afresh")
        self.prime_button = QtWidgets.QPushButton("Prime…")
        self.prime_button.setToolTip("Let the model listen to a MIDI file first, then continue it")
        self.panic_button = QtWidgets.QPushButton("Panic")
        self.panic_button.setToolTip("Silence every note on every channel of the output")
        self.export_session_button = QtWidgets.QPushButton("Export session…")
        self.export_session_button.setToolTip("Save everything played so far as a .mid file, exactly as heard")
        self.bars = spin_box(1, 512, 16, "Bars (of 4 beats) to generate into a new .mid file")
        self.export_bars_button = QtWidgets.QPushButton("Export new bars…")
        self.export_bars_button.setToolTip("Generate a fresh piece of this many bars and save it as .mid")
        self._grid = RollSettings()  # the playing model's time grid (set_model_grid)

        port_row = QtWidgets.QHBoxLayout()
        port_row.addWidget(self.port, 1)
        port_row.addWidget(self.refresh_button)
        form = QtWidgets.QFormLayout()
        form.addRow("Tempo (BPM)", self.bpm)
        sampling = QtWidgets.QHBoxLayout()  # beside each other: the column must fit 1280x800
        sampling.addWidget(self.sampler, 1)
        sampling.addWidget(self.gibbs_steps)
        form.addRow("Gibbs steps", sampling)
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
        self.synth = SynthPanel()  # instrument, and the built-in synth's sound (ui/synth_section.py)
        layout.addWidget(self.synth)
        layout.addLayout(form)
        checks = QtWidgets.QHBoxLayout()
        checks.addWidget(self.follow_training)
        checks.addWidget(self.dynamics)
        layout.addLayout(checks)
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
        self.dynamics.toggled.connect(self.settings_changed)
        self.sampler.currentIndexChanged.connect(self._sampler_chosen)

    def set_model_grid(self, grid: RollSettings) -> None:
        """The time grid of the model to play; one with a tempo of its own (a seconds grid) shows it."""
        self._grid = grid
        tempo = own_tempo(grid)
        if tempo is not None:
            self.bpm.setValue(tempo)

    def chain_start(self) -> str:
        """The chosen sampler as PlaybackSettings.chain_start: "prediction" (Fast) or "silence" (Exact)."""
        return self.sampler.currentData()

    def default_gibbs_steps(self) -> int:
        """The chosen sampler's steps for the open model: 25 (Fast), the model's own (Exact)."""
        return PlaybackSettings(chain_start=self.chain_start()).chain(self._model_gibbs_steps)[0]

    def set_model_gibbs_steps(self, steps: int) -> None:
        """The open model's own Gibbs steps: the box shows the chosen sampler's default for it."""
        self._model_gibbs_steps = int(steps)
        self.gibbs_steps.setValue(self.default_gibbs_steps())

    def _sampler_chosen(self) -> None:
        self.gibbs_steps.blockSignals(True)  # one settings_changed for the sampler and its steps
        self.gibbs_steps.setValue(self.default_gibbs_steps())
        self.gibbs_steps.blockSignals(False)
        self.settings_changed.emit()

    def playback_settings(self) -> PlaybackSettings:
        """What the boxes say, on the model's time grid."""
        bpm, tempo = self.bpm.value(), own_tempo(self._grid)
        if tempo is not None and round(tempo, self.bpm.decimals()) == bpm:
            bpm = tempo  # the box shows the model's own tempo rounded: play it exactly
        return PlaybackSettings.for_model(self._grid, bpm=bpm, gibbs_steps=self.gibbs_steps.value(),
                                          chain_start=self.chain_start(), temperature=self.temperature.value(),
                                          dynamics=self.dynamics.isChecked())

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
