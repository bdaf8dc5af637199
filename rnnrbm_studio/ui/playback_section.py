"""The window's live side: the Live panel wired to the player, the piano-roll it draws, and the exports.

It owns the LiveController (the player and its port) and BarsExport (new bars, in a worker of the
window's registry), draws the played frames into the piano-roll on one display timer, and answers
the panel's Play, port, prime and export requests. It plays and exports set_model()'s model on that
model's time grid; what goes wrong is said by `failed(message)`, which the window shows.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from ..errors import StudioError
from ..model import RnnRbm
from ..music.midi_files import MidiReadError
from ..music.pianoroll import RollSettings
from ..music.primer import read_primer
from .export_controller import BarsExport
from .live_controller import LiveController, PortProvider
from .panels.live import LivePanel
from .piano_roll import PianoRollView
from .piece_playback import Piece, PiecePlayback
from .synth_section import SynthSection
from .workers import WorkerHandle, WorkerRegistry

DISPLAY_INTERVAL_MS = 33  # ~30 redraws per second, whatever the playing or training rate


class PlaybackSection(QtCore.QObject):
    failed = QtCore.Signal(str)

    def __init__(self, panel: LivePanel, piano_roll: PianoRollView, registry: WorkerRegistry,
                 settings: QtCore.QSettings, window: QtWidgets.QMainWindow, port_provider: PortProvider | None = None):
        super().__init__(window)
        self.panel = panel
        self.piano_roll = piano_roll
        self.settings = settings  # remembers the chosen port
        self.window = window  # the dialogs' parent, and its status bar
        self.model: RnnRbm | None = None  # the open model, which Export new bars generates with
        self.live = LiveController(port_provider, parent=self)
        self.piece = PiecePlayback(self.live, self)  # a training piece heard on the same output
        self.piece.failed.connect(self.failed)
        self.synth = SynthSection(panel.synth, self.live, settings, window, registry)  # the built-in synth's box
        self.synth.failed.connect(self.failed)
        panel.synth.program_changed.connect(self._settings_changed)
        self.bars_export = BarsExport(registry, window.statusBar(), self)
        self.bars_export.failed.connect(self.failed)
        self.bars_export.running_changed.connect(lambda running: panel.export_bars_button.setEnabled(not running))
        panel.play_toggled.connect(self.toggle_play)
        panel.refresh_ports_requested.connect(self.refresh_ports)
        panel.port_chosen.connect(self._port_chosen)
        panel.reset_requested.connect(self.live.reset_state)
        panel.prime_requested.connect(self.prime_dialog)
        panel.panic_requested.connect(self.live.panic)
        panel.export_session_requested.connect(self.export_session_dialog)
        panel.export_bars_requested.connect(self.export_bars_dialog)
        panel.settings_changed.connect(self._settings_changed)
        self.live.playing_changed.connect(panel.set_playing)
        self.live.error.connect(self._live_error)
        self.display_timer = QtCore.QTimer(self)
        self.display_timer.setInterval(DISPLAY_INTERVAL_MS)
        self.display_timer.timeout.connect(self._on_display_tick)
        self.display_timer.start()

    def set_model(self, model: RnnRbm, grid: RollSettings) -> None:
        self.model = model
        self.panel.set_model_grid(grid)  # a seconds grid brings its own tempo
        self.live.set_model(model, grid)
        self.panel.set_model_gibbs_steps(model.config.gibbs_steps)  # the exact sampler's: each model's own

    def follow_training(self, model: RnnRbm) -> None:
        """The weights of an epoch just trained: played from now on if the panel says so."""
        if self.panel.follow_training.isChecked():
            self.live.follow_weights(model)

    def shutdown(self) -> None:
        """On close: no more drawing, and no note left sounding."""
        self.display_timer.stop()
        self.piece.stop()
        self.live.shutdown()

    # ---------------------------------------------------------------------------- playing
    def refresh_ports(self) -> None:
        names = self.live.port_names()
        default = getattr(self.live.port_provider, "default_name", lambda found: found[0] if found else None)
        current = self.settings.value("port", "") or default(names)  # no MIDI output: the built-in synth
        self.panel.set_ports(names, current, self.live.no_port_help())

    def _port_chosen(self, name: str) -> None:
        self.settings.setValue("port", name)
        if self.live.is_playing():
            self.live.change_port(name)

    def toggle_play(self) -> None:
        if self.live.is_playing():
            self.live.stop()
            return
        name = self.panel.port.currentText()
        if not name:
            self.failed.emit(self.live.no_port_help())
            self.panel.set_playing(False)
            return
        self.settings.setValue("port", name)
        self._settings_changed()
        self.piece.stop()  # one music at a time on the output
        self.live.start(name)

    def play_piece(self, piece: Piece) -> None:
        """Hear a training piece on the chosen output, with the panel's velocity, dynamics and
        instrument (the model stops playing first)."""
        name = self.panel.port.currentText()
        if not name:
            self.failed.emit(self.live.no_port_help())
            self.piece.playing_changed.emit(False)
            return
        self._settings_changed()
        self.piece.play(piece, self.live.settings, name)

    def _settings_changed(self) -> None:
        instrument = self.panel.synth.program.currentIndex()  # the Sound box's, for any output
        self.live.update(dataclasses.replace(self.panel.playback_settings(), program=instrument))
        self.piano_roll.set_seconds_per_frame(self.live.seconds_per_step())

    def _live_error(self, message: str) -> None:
        # the player has stopped itself; most often its port or the whole MIDI system went away, so
        # the list shows what is there now (nothing, and how to get an output, if JACK stopped)
        self.refresh_ports()
        self.failed.emit(message)

    def _on_display_tick(self) -> None:
        for keys, onsets, musician in self.live.drain_frames():
            self.piano_roll.push(keys, onsets, musician)
        self.piano_roll.refresh()

    # ---------------------------------------------------------------------------- priming
    def prime_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Prime from a MIDI file", "",
                                                        "MIDI files (*.mid *.midi *.MID);;All files (*)")
        if path:
            self.prime_from_file(path)

    def prime_from_file(self, path: str | Path) -> None:
        try:
            roll = read_primer(path, self.live.roll_settings)
        except MidiReadError as error:
            self.failed.emit(f"Cannot prime: {error}")  # names the file
            return
        self.live.prime(roll)
        self.window.statusBar().showMessage(f"Primed with {Path(path).name} ({len(roll)} steps)", 5000)

    # ---------------------------------------------------------------------------- exports
    def export_session_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Export the session", "session.mid",
                                                        "MIDI files (*.mid)")
        if path:
            self.export_session(path)

    def export_session(self, path: str | Path) -> bool:
        try:
            frames = self.live.export_session(path)
        except (StudioError, OSError, ValueError) as error:
            self.failed.emit(f"Cannot export: {error}")
            return False
        self.window.statusBar().showMessage(f"Saved {frames} steps to {path}", 5000)
        return True

    def export_bars_dialog(self, bars: int) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Export new bars", f"generated-{bars}-bars.mid",
                                                        "MIDI files (*.mid)")
        if path:
            self.export_bars(path, bars)

    def export_bars(self, path: str | Path, bars: int) -> WorkerHandle | None:
        """Start generating `bars` new bars into `path` in a worker (progress and Cancel in the status
        bar); the file is written when all are there. None if there is no model or an export runs."""
        if self.model is None or self.bars_export.is_running():
            return None
        # the settings Play would use: the tempo box rounds a seconds grid's own tempo, they do not
        playing = self.panel.playback_settings()
        frames = bars * 4 * playing.steps_per_beat
        gibbs_steps, start = playing.chain(self.model.config.gibbs_steps)  # the sampler Play uses
        return self.bars_export.start(self.model, path, bars, frames, bpm=playing.bpm,
                                      steps_per_beat=playing.steps_per_beat, gibbs_steps=gibbs_steps,
                                      inverse_temperature=1.0 / playing.temperature, velocity=playing.velocity,
                                      dynamics=playing.dynamics, start=start)
