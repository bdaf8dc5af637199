"""The *Play along* box under Play live: the MIDI input, the mode and its few settings, following a
MIDI clock, and the knobs (MIDI learn). Compact: three rows, and a line for the knobs when there are any."""
from __future__ import annotations

import re

from PySide6 import QtCore, QtGui, QtWidgets

from ...live.playalong import ACCOMPANY, ANSWER, MODES, SOLO, PlayAlongSettings
from ...music.pianoroll import note_name
from .boxes import double_spin_box, spin_box

NO_INPUT = "No input"
PARAMETER_LABELS = {"temperature": "Temperature", "bpm": "Tempo", "gibbs_steps": "Gibbs steps",
                    "play": "Play / Stop", "mode": "Mode"}
MODE_LABELS = {SOLO: "Solo", ACCOMPANY: "Accompany", ANSWER: "Answer"}
_NOTE = re.compile(r"^\s*([A-Ga-g])([#b]?)\s*(-?\d+)\s*$")
_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_from_text(text: str) -> int | None:
    """'C4' -> 60, 'F#3' -> 54, 'Bb2' -> 46, '60' -> 60; None when it is neither."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _NOTE.match(text)
    if not match:
        return None
    letter, accidental, octave = match.groups()
    return (int(octave) + 1) * 12 + _STEPS[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]


class NoteSpinBox(QtWidgets.QSpinBox):
    """A MIDI note shown by name (C4 = 60); typed as a name or a number. 0 shows the special text."""

    def textFromValue(self, value: int) -> str:  # Qt override
        return note_name(value)

    def valueFromText(self, text: str) -> int:  # Qt override
        note = note_from_text(self._bare(text))
        return self.value() if note is None else note

    def validate(self, text: str, position: int):  # Qt override
        State = QtGui.QValidator.State
        if text == self.specialValueText():
            return State.Acceptable, text, position
        note = note_from_text(self._bare(text))
        if note is not None and self.minimum() <= note <= self.maximum():
            return State.Acceptable, text, position
        return State.Intermediate, text, position

    def _bare(self, text: str) -> str:
        """The text without the box's prefix (typing over all of it may have removed it)."""
        prefix = self.prefix()
        return text[len(prefix):] if prefix and text.startswith(prefix) else text


class PlayAlongPanel(QtWidgets.QGroupBox):
    """Input, mode (with split and notes, or when and how long to answer), clock, knobs."""

    input_chosen = QtCore.Signal(str)  # a name, or "" for no input
    refresh_requested = QtCore.Signal()
    settings_changed = QtCore.Signal()  # the mode or one of its settings: see playalong_settings()
    follow_clock_toggled = QtCore.Signal(bool)
    learn_requested = QtCore.Signal(str)  # a parameter of cc_map.PARAMETERS
    forget_requested = QtCore.Signal(str)  # a parameter, or "" for all

    def __init__(self, parent=None):
        super().__init__("Play along", parent)
        self.input = QtWidgets.QComboBox()
        self.input.setToolTip("The MIDI keyboard (or program) the model listens to. Connect others to the "
                              "virtual input 'RNN-RBM Studio In'.")
        self.input.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        # a long port name must not widen the column: the list shows it whole when opened
        self.input.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.input.setMinimumContentsLength(12)
        self.refresh_button = QtWidgets.QPushButton("Refresh")
        self.refresh_button.setToolTip("Look for MIDI inputs again (e.g. after plugging in a keyboard)")
        self.mode = QtWidgets.QComboBox()
        for mode in MODES:
            self.mode.addItem(MODE_LABELS[mode], mode)
        self.mode.setToolTip("Solo: the model plays alone. Accompany: it plays around the keys you hold, never "
                             "doubling them. Answer: it listens while you play, then answers. Each reply costs the Gibbs "
                             "steps above: about 100 reply at once (docs/live.md).")
        self.split = NoteSpinBox()
        self.split.setRange(0, 127)
        self.split.setSpecialValueText("No split")
        self.split.setPrefix("below ")
        self.split.setToolTip("Split: the model plays only below this note (C4 = 60); type a name or a number")
        self.max_notes = spin_box(0, 88, 0, "The model's notes at one time, at most (any: no limit)")
        self.max_notes.setSpecialValueText("no limit")
        self.max_notes.setSuffix(" notes")
        self.answer_after = double_spin_box(0.25, 64, 2.0, 2, "Beats of silence after your call before the "
                                            "model answers", 0.5)
        self.answer_after.setPrefix("after ")
        self.answer_after.setSuffix(" beats")
        self.answer_bars = spin_box(0, 64, 0, "How many bars the answer lasts (as long as the call: at most 8)")
        self.answer_bars.setSpecialValueText("call's length")
        self.answer_bars.setPrefix("for ")
        self.answer_bars.setSuffix(" bars")
        self.follow_clock = QtWidgets.QCheckBox("Follow MIDI clock")
        self.follow_clock.setToolTip("Take the tempo and Start / Stop / Continue from the input's MIDI clock "
                                     "(a DAW as master)")
        self.learn_button = QtWidgets.QToolButton()
        self.learn_button.setText("MIDI learn")
        self.learn_button.setToolTip("Choose a parameter, then move a knob, fader or pad on the input: it moves "
                                     "that parameter from then on. Right-click a control for the same.")
        self.learn_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        self.learn_menu = QtWidgets.QMenu(self.learn_button)
        self.learn_button.setMenu(self.learn_menu)
        self.knobs = QtWidgets.QLabel("")
        self.knobs.setWordWrap(True)
        self.knobs.setVisible(False)
        self._bindings: dict[str, int] = {}

        self.mode_settings = QtWidgets.QStackedWidget()
        self.mode_settings.addWidget(QtWidgets.QWidget())  # solo: nothing to set
        self.mode_settings.addWidget(_row(self.split, self.max_notes))
        self.mode_settings.addWidget(_row(self.answer_after, self.answer_bars))
        self.mode_settings.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding,
                                         QtWidgets.QSizePolicy.Policy.Maximum)

        input_row = QtWidgets.QHBoxLayout()
        input_row.addWidget(QtWidgets.QLabel("Input"))
        input_row.addWidget(self.input, 1)
        input_row.addWidget(self.refresh_button)
        mode_row = QtWidgets.QHBoxLayout()
        mode_row.addWidget(self.mode)
        mode_row.addWidget(self.mode_settings, 1)
        knob_row = QtWidgets.QHBoxLayout()
        knob_row.addWidget(self.follow_clock)
        knob_row.addStretch(1)
        knob_row.addWidget(self.learn_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(input_row)
        layout.addLayout(mode_row)
        layout.addLayout(knob_row)
        layout.addWidget(self.knobs)

        self.input.activated.connect(lambda index: self.input_chosen.emit(self.chosen_input()))
        self.refresh_button.clicked.connect(self.refresh_requested)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        for box in (self.split, self.max_notes, self.answer_after, self.answer_bars):
            box.valueChanged.connect(self.settings_changed)
        self.follow_clock.toggled.connect(self.follow_clock_toggled)
        self.set_bindings({})

    # ---------------------------------------------------------------------------- input
    def set_inputs(self, names: list[str], current: str | None, problem: str = "") -> None:
        """The inputs to choose from (No input first); `problem` says why there are none."""
        self.input.blockSignals(True)
        self.input.clear()
        self.input.addItems([NO_INPUT, *names])
        self.input.setCurrentText(current if current in names else NO_INPUT)
        self.input.blockSignals(False)
        self.input.setItemData(0, problem or "Listen to nothing", QtCore.Qt.ItemDataRole.ToolTipRole)

    def chosen_input(self) -> str:
        text = self.input.currentText()
        return "" if text == NO_INPUT else text

    # ----------------------------------------------------------------------------- mode
    def _mode_changed(self) -> None:
        self.mode_settings.setCurrentIndex(self.mode.currentIndex())
        self.settings_changed.emit()

    def set_mode(self, mode: str) -> None:
        self.mode.setCurrentIndex(MODES.index(mode))

    def playalong_settings(self) -> PlayAlongSettings:
        return PlayAlongSettings(mode=self.mode.currentData(), split=self.split.value() or None,
                                 max_notes=self.max_notes.value() or None,
                                 answer_after_beats=self.answer_after.value(),
                                 answer_bars=self.answer_bars.value() or None)

    # ---------------------------------------------------------------------------- knobs
    def set_bindings(self, bindings: dict[str, int], learning: str | None = None) -> None:
        """parameter -> controller, shown on a line and in the Learn menu; `learning`: the parameter
        waiting for a controller to move."""
        self._bindings = dict(bindings)
        menu = self.learn_menu
        menu.clear()
        for parameter, label in PARAMETER_LABELS.items():
            controller = bindings.get(parameter)
            text = f"{label} (CC {controller})…" if controller is not None else f"{label}…"
            action = menu.addAction(text, lambda p=parameter: self.learn_requested.emit(p))
            action.setCheckable(True)
            action.setChecked(parameter == learning)
        menu.addSeparator()
        forget = menu.addMenu("Forget")
        forget.setEnabled(bool(bindings))
        for parameter, controller in bindings.items():
            forget.addAction(f"{PARAMETER_LABELS[parameter]} (CC {controller})",
                             lambda p=parameter: self.forget_requested.emit(p))
        forget.addAction("All", lambda: self.forget_requested.emit(""))
        parts = [f"{PARAMETER_LABELS[p]} CC {c}" for p, c in sorted(bindings.items(), key=lambda item: item[1])]
        if learning:
            parts.insert(0, f"move a controller for {PARAMETER_LABELS[learning]}…")
        self.knobs.setText("Knobs: " + " · ".join(parts) if parts else "")
        self.knobs.setVisible(bool(parts))
        self.learn_button.setText("Learning…" if learning else "MIDI learn")

    def bindings(self) -> dict[str, int]:
        return dict(self._bindings)


def _row(*widgets: QtWidgets.QWidget) -> QtWidgets.QWidget:
    row = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget, 1)
    return row
