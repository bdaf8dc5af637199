"""What was played: the whole session's frames (for export to MIDI) and the newest ones for a display.

The scheduler adds each frame as it goes out; the window drains the recent ones on its display
timer, and the CLI's --record or the window's Export writes the session as a MIDI file.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import mido
import numpy as np

from ..music.midi_files import roll_to_midi
from .settings import PlaybackSettings


@dataclass(frozen=True)
class PlayedFrame:
    index: int  # position in the session's recording
    keys: np.ndarray  # (n_visible,) uint8, 1 = key sounding during this frame
    onsets: np.ndarray  # (n_visible,) bool, keys struck at this frame (re-strikes included)
    deadline: float  # clock time its messages were due on the port
    sent_at: float  # clock time they started going out


class Recorder:
    def __init__(self, n_keys: int, buffer_size: int = 1024):
        self._n_keys = int(n_keys)
        self._lock = threading.Lock()
        # --- under _lock
        self._recorded: list[np.ndarray] = []
        self._played: collections.deque[PlayedFrame] = collections.deque(maxlen=max(1, int(buffer_size)))
        self._dropped = 0

    def add(self, frame: PlayedFrame) -> None:
        with self._lock:
            self._recorded.append(frame.keys)
            if len(self._played) == self._played.maxlen:
                self._dropped += 1
            self._played.append(frame)

    def drain(self) -> list[PlayedFrame]:
        """The frames played since the last call, oldest first (at most buffer_size: when the display
        falls behind, the oldest are dropped and counted in `dropped`)."""
        with self._lock:
            frames = list(self._played)
            self._played.clear()
        return frames

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    def roll(self) -> np.ndarray:
        """Every frame played in this session, (T, n_keys) uint8."""
        with self._lock:
            if not self._recorded:
                return np.zeros((0, self._n_keys), dtype=np.uint8)
            return np.stack(self._recorded)

    def clear(self) -> None:
        with self._lock:
            self._recorded.clear()

    def export_midi(self, path, settings: PlaybackSettings, lowest_pitch: int) -> mido.MidiFile:
        """Write the recording as a .mid file at one tempo, with the settings' tempo, grid, velocity,
        channel and program. Tempo changes, pauses and re-strikes during the session are not in it."""
        steps_per_beat = settings.steps_per_beat
        ticks_per_beat = 480 if 480 % steps_per_beat == 0 else 96 * steps_per_beat
        return roll_to_midi(self.roll(), path, bpm=settings.bpm, steps_per_beat=steps_per_beat,
                            ticks_per_beat=ticks_per_beat, velocity=settings.velocity, channel=settings.channel,
                            program=settings.program, lowest_pitch=lowest_pitch)


__all__ = ["PlayedFrame", "Recorder"]
