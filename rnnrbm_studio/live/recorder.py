"""What was played: the whole session's frames (for export to MIDI) and the newest ones for a display.

The scheduler adds each frame as it goes out; the window drains the recent ones on its display
timer, and the CLI's --record or the window's Export writes the session as a MIDI file. When the
model plays along, the musician's frames are kept beside the model's (each complete one frame later,
when its period has ended) and exported on a track of their own. Each frame keeps the period it was
played at, so an exported session keeps its tempo changes (a set_tempo where the tempo changed).
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import mido
import numpy as np

from ..music.dynamics import velocities
from ..music.midi_files import roll_track, save_midi_atomically
from .settings import PlaybackSettings


@dataclass(frozen=True)
class PlayedFrame:
    index: int  # position in the session's recording
    keys: np.ndarray  # (n_visible,) uint8, 1 = key sounding during this frame
    onsets: np.ndarray  # (n_visible,) bool, keys struck at this frame (re-strikes included)
    deadline: float  # clock time its messages were due on the port
    sent_at: float  # clock time they started going out
    musician: np.ndarray | None = None  # play-along: (n_visible,) bool, the musician's keys at the deadline


class Recorder:
    def __init__(self, n_keys: int, buffer_size: int = 1024):
        self._n_keys = int(n_keys)
        self._lock = threading.Lock()
        # --- under _lock
        self._recorded: list[np.ndarray] = []
        self._periods: list[float | None] = []  # seconds per frame as played (None: not known)
        self._musician: dict[int, np.ndarray] = {}  # session index -> the musician's whole frame
        self._first_index: int | None = None  # session index of _recorded[0]
        self._played: collections.deque[PlayedFrame] = collections.deque(maxlen=max(1, int(buffer_size)))
        self._dropped = 0

    def add(self, frame: PlayedFrame, period: float | None = None) -> None:
        with self._lock:
            if self._first_index is None:
                self._first_index = frame.index
            self._recorded.append(frame.keys)
            self._periods.append(period)
            if frame.musician is not None and frame.index not in self._musician:
                self._musician[frame.index] = np.asarray(frame.musician, dtype=bool)  # until the whole frame comes
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

    def add_musician(self, index: int, keys: np.ndarray) -> None:
        """The musician's whole frame `index` (session count), known once its period has ended."""
        with self._lock:
            self._musician[int(index)] = np.asarray(keys, dtype=bool)

    def musician_roll(self) -> np.ndarray:
        """The musician's frames beside roll()'s, (T, n_keys) uint8 (zeros where none was heard)."""
        with self._lock:
            return self._musician_roll_locked()

    def _musician_roll_locked(self) -> np.ndarray:
        roll = np.zeros((len(self._recorded), self._n_keys), dtype=np.uint8)
        first = self._first_index or 0
        for index, keys in self._musician.items():
            if 0 <= index - first < len(roll):
                roll[index - first] = keys
        return roll

    def clear(self) -> None:
        with self._lock:
            self._recorded.clear()
            self._periods.clear()
            self._musician.clear()
            self._first_index = None

    def export_midi(self, path, settings: PlaybackSettings, lowest_pitch: int,
                    one_tempo: bool = False) -> mido.MidiFile:
        """Write the recording as a .mid file with the settings' grid, velocity, channel and program.
        Each frame lasts as long as it was played (a set_tempo where the tempo changed; the settings'
        tempo for frames of unknown period, or for all with one_tempo). The model's notes are in the
        first track (with the tempo map); if the musician played, theirs are in a second (type 1).
        Pauses and re-strikes are not in it."""
        steps_per_beat = settings.steps_per_beat
        ticks_per_beat = 480 if 480 % steps_per_beat == 0 else 96 * steps_per_beat
        ticks_per_step = ticks_per_beat // steps_per_beat
        with self._lock:
            model = np.stack(self._recorded) if self._recorded else np.zeros((0, self._n_keys), np.uint8)
            musician = self._musician_roll_locked()
            periods = [None if one_tempo else p for p in self._periods]
            first_step = self._first_index or 0
        tempos = [mido.bpm2tempo(settings.bpm if p is None else 60.0 / (p * steps_per_beat)) for p in periods]
        meta = [mido.MetaMessage("track_name", name="model", time=0)] if musician.any() else []
        first = mido.bpm2tempo(settings.bpm) if not tempos else tempos[0]
        tempo_changes = [(i * ticks_per_step, 0, mido.MetaMessage("set_tempo", tempo=t))
                         for i, t in enumerate(tempos) if i > 0 and t != tempos[i - 1]]
        # the model's notes as loud as they were played (the dynamics rule, by each frame's step); the
        # musician's velocities are not kept: theirs are at the base velocity
        strength = velocities(model, steps_per_beat, settings.velocity, first_step, settings.dynamics)
        flat = velocities(musician, steps_per_beat, settings.velocity, dynamics=False)
        tracks = [_track(model, strength, ticks_per_step, settings, lowest_pitch,
                         [mido.MetaMessage("set_tempo", tempo=first, time=0), *meta], tempo_changes)]
        if musician.any():
            tracks.append(_track(musician, flat, ticks_per_step, settings, lowest_pitch,
                                 [mido.MetaMessage("track_name", name="musician", time=0)], []))
        midi = mido.MidiFile(type=0 if len(tracks) == 1 else 1, ticks_per_beat=ticks_per_beat)
        midi.tracks.extend(tracks)
        if path is not None:
            save_midi_atomically(midi, path)
        return midi


def _track(roll: np.ndarray, strength: np.ndarray, ticks_per_step: int, settings: PlaybackSettings,
           lowest_pitch: int, head: list, extra: list) -> mido.MidiTrack:
    """A roll as one track on the player's channel and program; `extra` are (tick, 0, message) to merge in
    (tempo changes, which go before the notes at their tick)."""
    head = [*head, mido.Message("program_change", program=settings.program, channel=settings.channel, time=0)]
    return roll_track(roll, strength, ticks_per_step, lowest_pitch, settings.channel, head, tuple(extra))


__all__ = ["PlayedFrame", "Recorder"]
