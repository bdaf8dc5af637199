"""The *Sound* box under Play: the instrument (any output), and the built-in synth's volume, audio output,
SoundFont and notices; Export session as audio. Compact: two rows and a line that shows only when needed."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

GM_PROGRAMS = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano", "Electric Piano 1",
    "Electric Piano 2", "Harpsichord", "Clavinet", "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba",
    "Xylophone", "Tubular Bells", "Dulcimer", "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion", "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)",
    "Electric Guitar (jazz)", "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics", "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)",
    "Fretless Bass", "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2", "Violin", "Viola", "Cello",
    "Contrabass", "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani", "String Ensemble 1",
    "String Ensemble 2", "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs", "Synth Voice",
    "Orchestra Hit", "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1",
    "Synth Brass 2", "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon",
    "Clarinet", "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)",
    "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)", "Pad 1 (new age)", "Pad 2 (warm)",
    "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)",
    "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)", "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe",
    "Fiddle", "Shanai", "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom",
    "Synth Drum", "Reverse Cymbal", "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)
assert len(GM_PROGRAMS) == 128


class SynthPanel(QtWidgets.QWidget):
    """Instrument, volume, audio output, SoundFont; a notice line with a Copy button; Export as audio."""

    program_changed = QtCore.Signal(int)  # 0..127
    synth_changed = QtCore.Signal()  # volume, audio output or SoundFont: see gain(), audio_output()
    soundfont_requested = QtCore.Signal()
    export_audio_requested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.program = QtWidgets.QComboBox()
        self.program.addItems([f"{number} {name}" for number, name in enumerate(GM_PROGRAMS, 1)])
        self.program.setToolTip("The General MIDI instrument the music is played on (any output)")
        self.volume = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.volume.setRange(0, 100)
        self.volume.setValue(50)
        self.volume.setToolTip("The built-in synth's volume")
        self.audio_output = QtWidgets.QComboBox()
        self.audio_output.setToolTip("Where the built-in synth's sound goes")
        self.soundfont_button = QtWidgets.QPushButton("SoundFont…")
        self.soundfont_button.setToolTip("The built-in synth's SoundFont (default: one installed on the system, "
                                         "else the small one shipped with the app)")
        self.export_audio_button = QtWidgets.QPushButton("Export audio…")
        self.export_audio_button.setToolTip("Save everything played so far as a .wav file, played by the "
                                            "built-in synth")
        self.notice = QtWidgets.QLabel("")
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QtWidgets.QPushButton("Copy command")
        self.copy_button.setToolTip("Copy the command to the clipboard, to paste in a terminal")
        self._command = ""
        self.notice.setVisible(False)
        self.copy_button.setVisible(False)

        first = QtWidgets.QHBoxLayout()
        first.addWidget(QtWidgets.QLabel("Instrument"))
        first.addWidget(self.program, 1)
        first.addWidget(QtWidgets.QLabel("Volume"))
        first.addWidget(self.volume)
        second = QtWidgets.QHBoxLayout()
        second.addWidget(QtWidgets.QLabel("Audio"))
        second.addWidget(self.audio_output, 1)
        second.addWidget(self.soundfont_button)
        second.addWidget(self.export_audio_button)
        notice_row = QtWidgets.QHBoxLayout()
        notice_row.addWidget(self.notice, 1)
        notice_row.addWidget(self.copy_button, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(first)
        layout.addLayout(second)
        layout.addLayout(notice_row)

        self.program.currentIndexChanged.connect(self.program_changed)
        self.volume.valueChanged.connect(self.synth_changed)
        self.audio_output.activated.connect(lambda _index: self.synth_changed.emit())
        self.soundfont_button.clicked.connect(self.soundfont_requested)
        self.export_audio_button.clicked.connect(self.export_audio_requested)
        self.copy_button.clicked.connect(self.copy_command)

    def set_audio_outputs(self, choices: list[tuple[str, str]], current: str) -> None:
        self.audio_output.blockSignals(True)
        self.audio_output.clear()
        for key, label in choices:
            self.audio_output.addItem(label, key)
        index = self.audio_output.findData(current)
        self.audio_output.setCurrentIndex(max(0, index))
        self.audio_output.blockSignals(False)

    def audio_output_key(self) -> str:
        return self.audio_output.currentData() or "auto"

    def gain(self) -> float:
        return self.volume.value() / 100.0

    def show_notice(self, text: str, command: str = "") -> None:
        """One line (or none) under the controls; with a command, a button copies it."""
        self.notice.setText(text)
        self.notice.setVisible(bool(text))
        self._command = command
        self.copy_button.setVisible(bool(command))

    def copy_command(self) -> None:
        QtGui.QGuiApplication.clipboard().setText(self._command)
