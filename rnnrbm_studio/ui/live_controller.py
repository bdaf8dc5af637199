"""The window's side of live playback: one LivePlayer, its port, and Qt signals for its news.

The player runs its own threads; its callbacks only emit signals (queued to the GUI thread), and the
window drains played frames on its display timer.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6 import QtCore

from ..live import ports
from ..errors import StudioError
from ..model import RnnRbm
from ..music.pianoroll import RollSettings
from ..live.player import STOPPED, LivePlayer

log = logging.getLogger(__name__)


class PortProvider(Protocol):
    def names(self) -> list[str]: ...

    def open(self, name: str): ...

    def help_text(self) -> str: ...


class SystemPortProvider:
    """The machine's MIDI outputs, then our own virtual port where the platform has them."""

    VIRTUAL_LABEL = f"{ports.VIRTUAL_PORT_NAME} (virtual port)"

    def names(self) -> list[str]:
        try:
            names = ports.list_output_ports()
        except StudioError as error:  # no MIDI system at all: no virtual port either
            log.info("no MIDI outputs: %s", error)
            return []
        return names + ([self.VIRTUAL_LABEL] if ports.virtual_ports_supported() else [])

    def open(self, name: str):
        if name == self.VIRTUAL_LABEL:
            return ports.open_output_port(virtual=True)
        return ports.open_output_port(name)

    def help_text(self) -> str:
        return ports.NO_PORT_HELP


class SilentPort:
    """A port that plays nothing: for screenshots and demos without a synth."""

    name = "Silent (no synth)"

    def __init__(self):
        self.closed = False

    def send(self, message) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class SilentPortProvider:
    def names(self) -> list[str]:
        return [SilentPort.name]

    def open(self, name: str):
        return SilentPort()

    def help_text(self) -> str:
        return ""


class LiveController(QtCore.QObject):
    playing_changed = QtCore.Signal(bool)
    error = QtCore.Signal(str)
    _player_stopped = QtCore.Signal(str)  # from player threads: reason

    def __init__(self, port_provider: PortProvider | None = None, parent=None):
        super().__init__(parent)
        self.port_provider = port_provider or SystemPortProvider()
        self.model: RnnRbm | None = None
        self.roll_settings = RollSettings()
        self.player: LivePlayer | None = None
        self.port = None
        self._bpm = 120.0
        self._gibbs_steps: int | None = None
        self._temperature = 1.0
        self._lock = threading.Lock()
        self._player_stopped.connect(self._on_player_stopped)

    # ---------------------------------------------------------------------------- ports
    def port_names(self) -> list[str]:
        return self.port_provider.names()

    def no_port_help(self) -> str:
        return self.port_provider.help_text()

    # ---------------------------------------------------------------------------- model
    def set_model(self, model: RnnRbm, roll_settings: RollSettings) -> None:
        """Play this model from now on: the music carries on if its size matches the playing one."""
        self.model = model
        self.roll_settings = roll_settings
        if self.player is None:
            return
        try:
            self.player.swap_weights(model)
        except ValueError:  # another size: a new player, on the same port if one is playing
            port_name = getattr(self.port, "name", None) if self.is_playing() else None
            self.stop()
            self.player = None
            if port_name:
                self.start(port_name)

    def follow_weights(self, model: RnnRbm) -> None:
        """New weights from training: played from the next frame on, the music's state carried over."""
        self.set_model(model, self.roll_settings)

    # ------------------------------------------------------------------------- playback
    def is_playing(self) -> bool:
        return self.player is not None and self.player.state != STOPPED

    def start(self, port_name: str) -> None:
        if self.model is None or self.is_playing():
            return
        try:
            port = self.port_provider.open(port_name)
        except StudioError as error:
            self.error.emit(str(error))
            self.playing_changed.emit(False)
            return
        self.port = port
        if self.player is None:
            self.player = LivePlayer(self.model, port, bpm=self._bpm, steps_per_beat=self.steps_per_beat,
                                     gibbs_steps=self._gibbs_steps, temperature=self._temperature,
                                     on_error=self.error.emit, on_stopped=self._player_stopped.emit)
        else:
            self.player.set_port(port)
        try:
            self.player.start()
        except (StudioError, RuntimeError) as error:
            self.error.emit(str(error))
            self._close_port()
            self.playing_changed.emit(False)
            return
        self.playing_changed.emit(True)

    def stop(self) -> None:
        if self.player is not None:
            self.player.stop()  # harmless when already stopped; sends note-offs and All Notes Off
        self._close_port()
        self.playing_changed.emit(False)

    def change_port(self, port_name: str) -> None:
        if not self.is_playing():
            return
        self.stop()
        self.start(port_name)

    def _on_player_stopped(self, reason: str) -> None:
        self._close_port()
        self.playing_changed.emit(False)

    def _close_port(self) -> None:
        port, self.port = self.port, None
        if port is not None and not getattr(port, "closed", False):
            try:
                port.close()
            except Exception as error:  # a vanished port may fail to close; it is gone either way
                log.info("closing the port failed: %s", error)

    def shutdown(self) -> None:
        """On exit: stop, with note-offs for every sounding note."""
        self.stop()

    # ------------------------------------------------------------------------- controls
    @property
    def steps_per_beat(self) -> int:
        return self.roll_settings.steps_per_beat if not self.roll_settings.seconds_per_step else 1

    def seconds_per_step(self) -> float:
        return 60.0 / (self._bpm * self.steps_per_beat)

    def set_tempo(self, bpm: float) -> None:
        self._bpm = float(bpm)
        if self.player is not None:
            self.player.set_tempo(self._bpm, self.steps_per_beat)

    def set_gibbs_steps(self, steps: int) -> None:
        self._gibbs_steps = int(steps)
        if self.player is not None:
            self.player.set_gibbs_steps(self._gibbs_steps)

    def set_temperature(self, temperature: float) -> None:
        self._temperature = float(temperature)
        if self.player is not None:
            self.player.set_temperature(self._temperature)

    def reset_state(self) -> None:
        if self.player is not None:
            self.player.reset_state()

    def prime(self, roll: np.ndarray) -> None:
        if self.player is None and self.model is not None:
            self.player = LivePlayer(self.model, None, bpm=self._bpm, steps_per_beat=self.steps_per_beat,
                                     on_error=self.error.emit, on_stopped=self._player_stopped.emit)
        if self.player is not None:
            self.player.prime((np.asarray(roll) > 0).astype(np.uint8))

    def panic(self) -> None:
        if self.player is not None:
            self.player.panic()

    def drain_frames(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.player is None:
            return []
        return [(frame.keys, frame.onsets) for frame in self.player.drain_played_frames()]

    def export_session(self, path: str | Path) -> int:
        if self.player is None or self.player.frames_played == 0:
            raise StudioError("nothing has been played yet")
        self.player.export_midi(path)
        return self.player.frames_played
