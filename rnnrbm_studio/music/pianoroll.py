"""The binary piano-roll (T frames x 88 keys, MIDI 21..108), the settings that shape it, and what is
done to a roll once made: transposition, conversion to and from note lists, names and durations.
Reading and writing MIDI files is midi_files.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

LOWEST_PITCH = 21
N_KEYS = 88
DEFAULT_BPM = 120.0

# Krumhansl-Kessler key profiles (C major / C minor), for transposition to C.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True)
class RollSettings:
    """How MIDI becomes a piano-roll. Part of every cache key and every checkpoint."""

    steps_per_beat: int = 2
    seconds_per_step: float | None = None  # set: seconds grid (tutorial: 0.3); None: beat grid
    include_drums: bool = False
    transpose_to_c: bool = False
    lowest_pitch: int = LOWEST_PITCH
    n_keys: int = N_KEYS
    max_frames: int = 200_000  # bounds the work and memory one file can cause

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "RollSettings":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    def describe(self) -> str:
        grid = (f"{self.seconds_per_step:g} s per step" if self.seconds_per_step
                else f"{self.steps_per_beat} steps per beat")
        return grid + (", drums kept" if self.include_drums else "") + (
            ", transposed to C" if self.transpose_to_c else "")


@dataclass
class PianoRoll:
    """A roll and what reading it from a file learned about it."""

    roll: np.ndarray  # (T, n_keys) uint8, 1 = key down
    bpm: float = DEFAULT_BPM  # the file's first tempo
    dropped_notes: int = 0  # notes outside the key range (or on the drum channel)
    transposition: int = 0  # semitones applied by transpose_to_c
    source: str = ""
    notes: int = field(default=0)

    @property
    def n_frames(self) -> int:
        return int(self.roll.shape[0])


def estimate_transposition_to_c(spans) -> int:
    """Semitones (-6..5) moving the estimated key's tonic to C (major) or C (minor)."""
    histogram = np.zeros(12)
    for pitch, start, end in spans:
        histogram[pitch % 12] += end - start
    if not histogram.any():
        return 0
    best_score, best_tonic = -np.inf, 0
    for profile in (_MAJOR_PROFILE, _MINOR_PROFILE):
        for tonic in range(12):
            score = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]
            if score > best_score:
                best_score, best_tonic = score, tonic
    shift = -best_tonic % 12
    return shift - 12 if shift > 5 else shift


def transpose_roll(roll: np.ndarray, semitones: int) -> np.ndarray:
    """Shift a roll along the key axis; notes pushed out of range are dropped."""
    if semitones == 0:
        return roll
    shifted = np.zeros_like(roll)
    if semitones > 0:
        shifted[:, semitones:] = roll[:, :-semitones]
    else:
        shifted[:, :semitones] = roll[:, -semitones:]
    return shifted


def notes_to_roll(sequence, lowest_pitch: int = LOWEST_PITCH, n_keys: int = N_KEYS) -> np.ndarray:
    """The ICML-2012 pickle format (a list of tuples of MIDI notes per step) -> roll (T, n_keys)."""
    roll = np.zeros((len(sequence), n_keys), dtype=np.uint8)
    for t, chord in enumerate(sequence):
        for pitch in chord:
            key = int(pitch) - lowest_pitch
            if 0 <= key < n_keys:
                roll[t, key] = 1
    return roll


def roll_to_notes(roll: np.ndarray, lowest_pitch: int = LOWEST_PITCH) -> list[tuple[int, ...]]:
    return [tuple(int(k) + lowest_pitch for k in np.nonzero(frame)[0]) for frame in roll]


def note_name(pitch: int) -> str:
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


def roll_duration_seconds(n_frames: int, settings: RollSettings, bpm: float = DEFAULT_BPM) -> float:
    if settings.seconds_per_step:
        return n_frames * settings.seconds_per_step
    return n_frames * 60.0 / (bpm * settings.steps_per_beat)


# ------------------------------------------------------------------- playing a roll's grid
def own_tempo(settings: RollSettings) -> float | None:
    """The tempo a model on this grid plays at by itself: a seconds grid has no beats, so its steps
    go one per beat at 60 / seconds_per_step bpm and last what they lasted in the music it learned
    from; a beat grid has none of its own (None): it plays at whatever tempo is asked."""
    return 60.0 / float(settings.seconds_per_step) if settings.seconds_per_step else None


def playback_grid(settings: RollSettings, bpm: float | None = None) -> tuple[float, int]:
    """(bpm, steps per beat) to play or write a roll made on `settings`' grid: at `bpm` if given,
    else at the grid's own tempo (own_tempo), else at DEFAULT_BPM. Generate, play and the window
    all time their frames with this."""
    steps_per_beat = 1 if settings.seconds_per_step else int(settings.steps_per_beat)
    return float(bpm or own_tempo(settings) or DEFAULT_BPM), steps_per_beat


__all__ = [
    "LOWEST_PITCH", "N_KEYS", "DEFAULT_BPM", "RollSettings", "PianoRoll", "notes_to_roll", "roll_to_notes",
    "transpose_roll", "estimate_transposition_to_c", "note_name", "roll_duration_seconds", "own_tempo",
    "playback_grid",
]
