"""Hearing a training piece: one RollPlayer (live/roll_player.py) on the output chosen for Play.

A piece and the model never play at once on the window's output: playing a piece stops the model
(the Play button's music), and Play stops the piece (playback_section.py). The port is opened here
for the piece and closed when it ends; the player itself sends every note-off on stop or at the
end. `position(frame)` moves the preview's playhead while it plays.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PySide6 import QtCore

from ..errors import StudioError
from ..live.roll_player import RollPlayer
from ..live.settings import PlaybackSettings
from .live_controller import LiveController, close_port

POSITION_INTERVAL_MS = 50


@dataclass(frozen=True)
class Piece:
    """A piece to hear: its roll and the grid it plays on."""

    roll: np.ndarray
    bpm: float
    steps_per_beat: int
    lowest_pitch: int


class PiecePlayback(QtCore.QObject):
    playing_changed = QtCore.Signal(bool)
    position = QtCore.Signal(int)  # frames of the piece played so far
    failed = QtCore.Signal(str)
    _ended = QtCore.Signal(object, str)  # (player, reason), from the player's thread

    def __init__(self, live: LiveController, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.live = live  # its port provider opens the output; its player is stopped for a piece
        self.player: RollPlayer | None = None
        self.port = None
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(POSITION_INTERVAL_MS)
        self._timer.timeout.connect(lambda: self.player and self.position.emit(self.player.frames_played))
        self._ended.connect(self._on_ended)

    def is_playing(self) -> bool:
        return self.player is not None and self.player.state != "stopped"

    def play(self, piece: Piece, settings: PlaybackSettings, port_name: str) -> None:
        """Play `piece` once on `port_name` with `settings`' velocity, dynamics, channel and program
        (its tempo and grid are the piece's)."""
        self.stop()
        self.live.stop()  # one music at a time on the output
        try:
            settings = replace(settings, bpm=piece.bpm, steps_per_beat=piece.steps_per_beat)
            port = self.live.port_provider.open(port_name)
        except (StudioError, ValueError) as error:
            self.failed.emit(f"Cannot play the piece: {error}")
            self.playing_changed.emit(False)
            return
        self.port = port
        player = RollPlayer(piece.roll, port, settings, piece.lowest_pitch, on_error=self.failed.emit,
                            on_stopped=lambda reason: self._ended.emit(player, reason))
        self.player = player
        try:
            player.start()
        except (StudioError, RuntimeError) as error:
            self.failed.emit(f"Cannot play the piece: {error}")
            self._close_port()
            self.playing_changed.emit(False)
            return
        self._timer.start()
        self.playing_changed.emit(True)

    def stop(self) -> None:
        """Stop the piece now (every note released) and close its port. Harmless when none plays."""
        if self.player is not None:
            self.player.stop()
        self._finish()

    def _on_ended(self, player: RollPlayer, reason: str) -> None:
        if player is self.player:  # not a player stopped before the one playing now
            self._finish()

    def _finish(self) -> None:
        self._timer.stop()
        was_open = self.port is not None
        self._close_port()
        self.player = None
        if was_open:
            self.playing_changed.emit(False)

    def _close_port(self) -> None:
        port, self.port = self.port, None
        close_port(port)
