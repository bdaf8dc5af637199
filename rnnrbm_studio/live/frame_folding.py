"""The musician's notes, stamped in time, folded onto the frame grid.

Pure logic on clock times (no MIDI port, no thread of its own), so that tests drive it with made-up
times. The input thread (midi_input.py) feeds it note-ons, note-offs and the sustain pedal; the
play-along engine (playalong.py) asks two questions:

- `held_at(t)`: the keys sounding at moment t (the decision for a frame is made at its deadline from
  the keys held then);
- `fold(start, end)`: the keys of the frame covering [start, end): a key sounding at any moment of
  it. So a key held across frames is on in each of them until its note-off, a key struck and
  released inside one frame still counts for that frame, a key released exactly at `start` is not
  in the frame, and one struck exactly at `end` belongs to the next.

Decisions (docs/live.md):
- a note-on with velocity 0 is a note-off (running status keyboards send those);
- every channel is heard (a split keyboard sends its halves on two channels: both are the musician);
- the sustain pedal (controller 64, down at 64 and above) keeps released keys sounding until it goes
  up, as on a piano: they are heard, clamped (the model never doubles them) and keep the musician
  "playing" for call and response. Striking a sustained key again starts a new note.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

SUSTAIN_PEDAL = 64
# Notes that ended this long before the newest event are forgotten: the engine only folds the last
# frame or two, and a frame is at most a few seconds long.
DEFAULT_MEMORY_SECONDS = 30.0


@dataclass
class _Note:
    key: int  # index into the model's keys
    on: float
    off: float | None = None  # None while sounding
    released: bool = False  # the key is up, but the pedal holds it (off is None until the pedal rises)


class FrameFolder:
    """Thread-safe: the input thread writes, the player's thread reads."""

    def __init__(self, n_keys: int = 88, lowest_pitch: int = 21, memory_seconds: float = DEFAULT_MEMORY_SECONDS):
        self.n_keys = int(n_keys)
        self.lowest_pitch = int(lowest_pitch)
        self._memory = float(memory_seconds)
        self._lock = threading.Lock()
        # --- under _lock
        self._notes: list[_Note] = []  # in order of note-on
        self._sounding: dict[int, _Note] = {}  # key -> its note that has no `off` yet
        self._pedal_down = False
        self._onsets = 0  # note-ons counted since the start (call and response watches it)
        self._last_onset: float | None = None
        self._quiet_since: float | None = None  # when the last sounding key ended; None while any sounds
        self._outside = 0  # note-ons outside the model's keys (ignored, counted for a log line)

    # ------------------------------------------------------------------------- feeding
    def message(self, time: float, data) -> bool:
        """One raw MIDI message (bytes or a list of ints) at clock time `time`. True if it was a note
        or the sustain pedal (something this folder used)."""
        if not data:
            return False
        status = data[0] & 0xF0
        if status == 0x90 and len(data) >= 3:
            if data[2] == 0:
                self.note_off(time, data[1])
            else:
                self.note_on(time, data[1])
            return True
        if status == 0x80 and len(data) >= 3:
            self.note_off(time, data[1])
            return True
        if status == 0xB0 and len(data) >= 3 and data[1] == SUSTAIN_PEDAL:
            self.pedal(time, data[2] >= 64)
            return True
        return False

    def note_on(self, time: float, note: int) -> None:
        key = int(note) - self.lowest_pitch
        with self._lock:
            self._onsets += 1
            self._last_onset = time
            if not 0 <= key < self.n_keys:
                self._outside += 1
                return
            previous = self._sounding.pop(key, None)
            if previous is not None:  # struck again while sounding (pedal, or a second source)
                previous.off = time
            note_record = _Note(key, time)
            self._notes.append(note_record)
            self._sounding[key] = note_record
            self._quiet_since = None
            self._forget_locked(time)

    def note_off(self, time: float, note: int) -> None:
        key = int(note) - self.lowest_pitch
        with self._lock:
            current = self._sounding.get(key)
            if current is None:
                return
            if self._pedal_down:
                current.released = True
                return
            current.off = time
            del self._sounding[key]
            self._note_quiet_locked(time)

    def pedal(self, time: float, down: bool) -> None:
        with self._lock:
            self._pedal_down = bool(down)
            if down:
                return
            for key, current in list(self._sounding.items()):
                if current.released:
                    current.off = time
                    del self._sounding[key]
            self._note_quiet_locked(time)

    def release_all(self, time: float) -> None:
        """Every key up and the pedal too (the input was closed or lost: nothing may stay held)."""
        with self._lock:
            self._pedal_down = False
            for current in self._sounding.values():
                current.off = time
            self._sounding.clear()
            self._note_quiet_locked(time)

    def _note_quiet_locked(self, time: float) -> None:
        if not self._sounding and self._quiet_since is None:
            self._quiet_since = time

    def _forget_locked(self, now: float) -> None:
        horizon = now - self._memory
        if self._notes and self._notes[0].off is not None and self._notes[0].off < horizon:
            self._notes = [n for n in self._notes if n.off is None or n.off >= horizon]

    # ------------------------------------------------------------------------- asking
    def held_at(self, time: float) -> np.ndarray:
        """(n_keys,) bool: the keys sounding at `time` (struck at or before it, not yet ended)."""
        keys = np.zeros(self.n_keys, dtype=bool)
        with self._lock:
            for note in self._notes:
                if note.on <= time and (note.off is None or note.off > time):
                    keys[note.key] = True
        return keys

    def fold(self, start: float, end: float) -> np.ndarray:
        """(n_keys,) bool: the frame covering [start, end): every key sounding at some moment of it."""
        keys = np.zeros(self.n_keys, dtype=bool)
        with self._lock:
            for note in self._notes:
                began_inside = start <= note.on < end  # even if released at once (same stamp)
                spans_start = note.on < start and (note.off is None or note.off > start)
                if began_inside or spans_start:
                    keys[note.key] = True
        return keys

    @property
    def onsets(self) -> int:
        """Note-ons counted so far (also those outside the model's keys)."""
        with self._lock:
            return self._onsets

    @property
    def last_onset(self) -> float | None:
        with self._lock:
            return self._last_onset

    def first_onset_since(self, time: float | None) -> float | None:
        """The clock time of the first note-on at or after `time` (None: none remembered)."""
        with self._lock:
            return min((note.on for note in self._notes if time is None or note.on >= time), default=None)

    def quiet_since(self) -> float | None:
        """When the musician last fell silent (no key sounding, pedal-held keys included); None while
        a key sounds or before the first note."""
        with self._lock:
            return self._quiet_since

    def sounding(self) -> bool:
        with self._lock:
            return bool(self._sounding)


__all__ = ["FrameFolder", "SUSTAIN_PEDAL"]
