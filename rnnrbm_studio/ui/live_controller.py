"""The window's side of live playback: one LivePlayer, its port, and Qt signals for its news.

The player runs its own threads; its callbacks only emit signals (queued to the GUI thread), and the
window drains played frames on its display timer. What to play with comes from the LivePanel as one
PlaybackSettings (update()), which the player gets as it is.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6 import QtCore

from ..errors import StudioError
from ..live import outputs, ports
from ..live.builtin_synth import BUILTIN_SYNTH_NAME, SynthSettings
from ..live.output_port import BaseOutputPort
from ..live.playalong import PlayAlongSettings
from ..live.player import STOPPED, LivePlayer
from ..live.settings import PlaybackSettings
from ..model import RnnRbm
from ..music.pianoroll import RollSettings

log = logging.getLogger(__name__)


def close_port(port) -> None:
    """Close a port this window opened (None, or one already closed: nothing to do)."""
    if port is not None and not getattr(port, "closed", False):
        try:
            port.close()
        except Exception as error:  # a vanished port may fail to close; it is gone either way
            log.info("closing the port failed: %s", error)


class PortProvider(Protocol):
    def names(self) -> list[str]: ...

    def open(self, name: str): ...

    def help_text(self) -> str: ...


class SystemPortProvider:
    """The machine's MIDI outputs, the built-in synth, then our own virtual port where the platform has
    them. `synth` is how the built-in synth opens (the Synth box sets it); `list_midi` lists the MIDI
    outputs ((names, problem) as outputs.list_outputs; tests give one that finds none)."""

    VIRTUAL_LABEL = f"{ports.VIRTUAL_PORT_NAME} (virtual port)"

    def __init__(self, synth: SynthSettings | None = None, list_midi=None):
        self.synth = synth or SynthSettings()
        self._list = list_midi or outputs.list_outputs

    def names(self) -> list[str]:
        names, problem = self._list()
        if problem:
            log.info("no MIDI outputs: %s", problem)
        if BUILTIN_SYNTH_NAME not in names:
            names = names + [BUILTIN_SYNTH_NAME]
        midi_works = not problem or problem == "no MIDI output ports"
        return names + ([self.VIRTUAL_LABEL] if midi_works and ports.virtual_ports_supported() else [])

    def default_name(self, names: list[str]) -> str | None:
        return outputs.default_output([n for n in names if n != self.VIRTUAL_LABEL]) if names else None

    def open(self, name: str):
        if name == self.VIRTUAL_LABEL:
            return outputs.open_output_port(virtual=True)
        return outputs.open_output_port(name, synth=self.synth)

    def help_text(self) -> str:
        return ports.NO_PORT_HELP


class SilentPort(BaseOutputPort):
    """A port that plays nothing: for screenshots and demos without a synth."""

    name = "Silent (no synth)"

    def send(self, message) -> None:
        pass


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
        self.settings = PlaybackSettings()  # the panel's, as last given to update()
        self.playalong = PlayAlongSettings()  # the Play along box's (set_playalong)
        self._inputs: list = []  # what every player listens to (listen_to): the play-along input relay
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
            self._forget_player()
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
            self._new_player(port)
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
        close_port(port)

    def shutdown(self) -> None:
        """On exit: stop, with note-offs for every sounding note."""
        self.stop()

    def _new_player(self, port) -> None:
        self.player = LivePlayer(self.model, port, self.settings, playalong=self.playalong, on_error=self.error.emit,
                                 on_stopped=self._player_stopped.emit)
        for source in self._inputs:
            self.player.listen_to(source)

    def _forget_player(self) -> None:
        for source in self._inputs:  # the musician's notes no longer go to a player that is gone
            source.remove_listener(self.player.folder.message)
        self.player = None

    # ------------------------------------------------------------------------ playing along
    def listen_to(self, source) -> None:
        """Every player from now on hears `source` (add_listener/remove_listener/problem(), events
        stamped with the players' MonotonicClock): the window's play-along input."""
        self._inputs.append(source)
        if self.player is not None:
            self.player.listen_to(source)

    def set_playalong(self, settings: PlayAlongSettings) -> None:
        """Solo, accompany or answer, from the next frame (the player keeps it for the next Play)."""
        self.playalong = settings
        if self.player is not None:
            self.player.set_playalong(settings)

    # ------------------------------------------------------------------------- controls
    def update(self, settings: PlaybackSettings) -> None:
        """Play with these settings (the LivePanel's playback_settings()), now if playing."""
        self.settings = settings
        if self.player is not None:
            self.player.update(settings)

    def seconds_per_step(self) -> float:
        return self.settings.frame_period

    def reset_state(self) -> None:
        if self.player is not None:
            self.player.reset_state()

    def prime(self, roll: np.ndarray) -> None:
        if self.player is None and self.model is not None:
            self._new_player(None)
        if self.player is not None:
            self.player.prime((np.asarray(roll) > 0).astype(np.uint8))

    def panic(self) -> None:
        if self.player is not None:
            self.player.panic()

    def drain_frames(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(model's keys, their onsets, the musician's keys or None) of each frame played since the last call."""
        if self.player is None:
            return []
        return [(frame.keys, frame.onsets, frame.musician) for frame in self.player.drain_played_frames()]

    def export_session(self, path: str | Path) -> int:
        if self.player is None or self.player.frames_played == 0:
            raise StudioError("nothing has been played yet")
        self.player.export_midi(path)
        return self.player.frames_played
