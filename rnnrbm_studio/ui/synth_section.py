"""The window's side of the built-in synth: the Sound box (ui/panels/synth.py) wired to the port
provider's SynthSettings, the playing synth's volume, its notices, and Export session as audio."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from ..errors import StudioError
from ..live.audio_output import AUTO, audio_outputs
from ..live.builtin_synth import BuiltinSynthPort
from ..live.synth_engine import SynthUnavailable, check_soundfont
from .export_controller import AudioExport
from .live_controller import LiveController
from .panels.synth import SynthPanel
from .workers import WorkerHandle, WorkerRegistry

log = logging.getLogger(__name__)

INSTALL_COMMAND = "sudo apt install libfluidsynth3 && .venv/bin/pip install pyfluidsynth"


class SynthSection(QtCore.QObject):
    failed = QtCore.Signal(str)

    def __init__(self, panel: SynthPanel, live: LiveController, settings: QtCore.QSettings,
                 window: QtWidgets.QMainWindow, registry: WorkerRegistry):
        super().__init__(window)
        self.panel, self.live, self.settings, self.window = panel, live, settings, window
        self.audio_export = AudioExport(registry, window.statusBar(), self)  # rendering in a worker
        self.audio_export.failed.connect(lambda message: self.failed.emit(f"Cannot export audio: {message}"))
        self.audio_export.running_changed.connect(lambda running: panel.export_audio_button.setEnabled(not running))
        self.provider = live.port_provider if hasattr(live.port_provider, "synth") else None
        panel.set_audio_outputs(audio_outputs(), str(settings.value("synth/audio", AUTO)))
        panel.volume.setValue(int(settings.value("synth/volume", panel.volume.value())))
        panel.program.setCurrentIndex(int(settings.value("synth/program", 0)))
        soundfont = str(settings.value("synth/soundfont", "") or "")
        self._soundfont = soundfont or None
        panel.synth_changed.connect(self._synth_changed)
        panel.program_changed.connect(lambda program: settings.setValue("synth/program", program))
        panel.soundfont_requested.connect(self.choose_soundfont)
        panel.export_audio_requested.connect(self.export_audio_dialog)
        live.playing_changed.connect(self._playing_changed)
        live.error.connect(self._live_error)
        self._synth_changed()

    def synth_settings(self):
        current = self.provider.synth if self.provider is not None else None
        fields = dict(soundfont=self._soundfont, gain=self.panel.gain(), audio_output=self.panel.audio_output_key())
        return dataclasses.replace(current, **fields) if current is not None else None

    def _synth_changed(self) -> None:
        self.settings.setValue("synth/volume", self.panel.volume.value())
        self.settings.setValue("synth/audio", self.panel.audio_output_key())
        if self.provider is not None:
            self.provider.synth = self.synth_settings()
        port = self.live.port
        if isinstance(port, BuiltinSynthPort) and port.settings.audio_output == self.panel.audio_output_key() \
                and port.settings.soundfont == self._soundfont:
            port.set_gain(self.panel.gain())  # the volume changes at once; the rest at the next Play
        elif isinstance(port, BuiltinSynthPort) and self.live.is_playing():
            self.live.change_port(port.name)

    def _playing_changed(self, playing: bool) -> None:
        port = self.live.port
        if playing and isinstance(port, BuiltinSynthPort):
            self.panel.show_notice(port.notice or "")
            if port.notice:
                self.window.statusBar().showMessage(port.notice, 10000)

    def _live_error(self, message: str) -> None:
        if "FluidSynth" in message:
            self.panel.show_notice("The built-in synth needs FluidSynth's library:", INSTALL_COMMAND)

    # ------------------------------------------------------------------------- SoundFont
    def choose_soundfont(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "The built-in synth's SoundFont", "",
                                                        "SoundFonts (*.sf2 *.sf3 *.SF2);;All files (*)")
        if path:
            self.set_soundfont(path)

    def set_soundfont(self, path: str | None) -> bool:
        if path:
            try:
                check_soundfont(path)
            except SynthUnavailable as error:
                self.failed.emit(str(error))
                return False
        self._soundfont = path or None
        self.settings.setValue("synth/soundfont", path or "")
        self._synth_changed()
        return True

    # --------------------------------------------------------------------------- export
    def export_audio_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Export the session as audio", "session.wav",
                                                        "WAV files (*.wav)")
        if path:
            self.export_audio(path)

    def export_audio(self, path: str | Path) -> WorkerHandle | None:
        """The session as played (its MIDI), rendered by the built-in synth to a WAV file in a worker
        (audio_export's signals, the status bar, say when it is saved). None if it cannot start: one
        line says why (nothing played yet, a file that cannot be written), or an export already runs."""
        try:
            return self.audio_export.start(self.live.export_session, path, gain=self.panel.gain(),
                                           soundfont=self._soundfont)
        except (StudioError, OSError, ValueError) as error:
            self.failed.emit(f"Cannot export audio: {error}")
            return None
