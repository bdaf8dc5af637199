"""Listening statistics: what a piano-roll sounds like in numbers, for music the model writes against
a corpus (the `stats` command; docs/quality.md defines each one).

Every statistic is a distribution (over frames, notes, onsets or pieces) summarised by a value (its
mean, or the share of the most common bin for histograms), and compared between two sets of rolls
by the overlapping area of their normalised histograms on shared bins (Yang & Lerch 2020, "On the
evaluation of generative models in music", use the overlap of the two distributions): 1 is the same
distribution, 0 none in common. Pure numpy; rolls are (T, V) 0/1 arrays, key i is MIDI pitch
lowest_pitch + i.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

MIN_REPEAT_LAG = 4  # frames: a note held over a few frames is not a repeat
REPEAT_SPAN = 16  # frames: an exact repeat this long counts toward the repeated fraction
MAX_INTERVAL = 12  # semitones: wider leaps share the last bin

# Krumhansl & Kessler (1982) key profiles, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _bool(roll) -> np.ndarray:
    roll = np.asarray(roll).astype(bool)
    if roll.ndim != 2:
        raise ValueError(f"a roll is (frames, keys); got shape {roll.shape}")
    return roll


# ------------------------------------------------------------------------ one roll at a time
def notes_per_frame(roll) -> np.ndarray:
    """(T,) keys down in each frame: the polyphony."""
    return _bool(roll).sum(1)


def onsets(roll) -> np.ndarray:
    """(T, V) True where a note starts: a key down that was up the frame before (or in the first frame)."""
    roll = _bool(roll)
    started = roll.copy()
    started[1:] &= ~roll[:-1]
    return started


def onsets_per_frame(roll) -> np.ndarray:
    return onsets(roll).sum(1)


def _pitches(roll, lowest_pitch: int) -> np.ndarray:
    return np.flatnonzero(_bool(roll).any(0)) + lowest_pitch


def pitch_range(roll, lowest_pitch: int = 21) -> float:
    """Highest minus lowest pitch played in the piece, semitones (nan for a silent piece)."""
    pitches = _pitches(roll, lowest_pitch)
    return float(pitches.max() - pitches.min()) if len(pitches) else float("nan")


def pitch_classes_used(roll, lowest_pitch: int = 21) -> int:
    """How many of the 12 pitch classes the piece plays at all."""
    return len(np.unique(_pitches(roll, lowest_pitch) % 12))


def pitch_class_counts(roll, lowest_pitch: int = 21) -> np.ndarray:
    """(12,) notes (onsets) per pitch class, C first."""
    per_key = onsets(roll).sum(0)  # (V,)
    return np.bincount((np.arange(len(per_key)) + lowest_pitch) % 12, weights=per_key, minlength=12)


def note_lengths(roll) -> np.ndarray:
    """Length in frames of every note: each run of consecutive frames a key is down."""
    roll = _bool(roll)
    padded = np.zeros((roll.shape[0] + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll
    change = np.diff(padded, axis=0)  # +1 where a run starts, -1 one past its end
    starts = np.argwhere(change.T == 1)  # (notes, 2): key, frame, sorted by key then frame
    ends = np.argwhere(change.T == -1)
    return (ends[:, 1] - starts[:, 1]).astype(np.int64)


def melodic_intervals(roll, lowest_pitch: int = 21) -> np.ndarray:
    """Signed semitones between successive melody notes; the melody is the highest key down in each
    frame where some note starts (the top voice as heard: a new note there moves it)."""
    roll = _bool(roll)
    moving = onsets(roll).any(1)
    frames = roll[moving]
    top = roll.shape[1] - 1 - np.argmax(frames[:, ::-1], axis=1)  # highest key down per such frame
    return np.diff(top + lowest_pitch).astype(np.int64)


def estimate_key(counts: np.ndarray) -> tuple[int, str]:
    """(tonic pitch class, "major" or "minor"): the Krumhansl-Kessler profile, of the 24 rotations,
    that correlates best with the pitch-class counts."""
    counts = np.asarray(counts, dtype=float)
    if counts.sum() == 0 or counts.std() == 0:
        return 0, "major"
    best, key = -np.inf, (0, "major")
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = np.corrcoef(counts, np.roll(profile, tonic))[0, 1]
            if r > best:
                best, key = r, (tonic, mode)
    return key


def in_key_fraction(roll, lowest_pitch: int = 21) -> float:
    """The share of the piece's notes (onsets) whose pitch class lies in the 7-note scale of its
    estimated key (major, or natural minor); nan for a silent piece."""
    counts = pitch_class_counts(roll, lowest_pitch)
    if counts.sum() == 0:
        return float("nan")
    tonic, mode = estimate_key(counts)
    scale = (tonic + (MAJOR_SCALE if mode == "major" else MINOR_SCALE)) % 12
    return float(counts[scale].sum() / counts.sum())


def _repeat_runs(roll, min_lag: int):
    """For each lag L >= min_lag: a boolean (T - L,) 'frame t + L equals frame t exactly'."""
    roll = _bool(roll)
    _, ids = np.unique(roll, axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    for lag in range(min_lag, len(ids)):
        yield lag, ids[lag:] == ids[:-lag]


def _runs(same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of True."""
    padded = np.concatenate([[False], same, [False]]).astype(np.int8)
    change = np.diff(padded)
    starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    return starts, ends - starts


def longest_repeat(roll, min_lag: int = MIN_REPEAT_LAG) -> int:
    """The longest stretch of frames that repeats, frame for frame, the stretch `lag` frames earlier,
    over every lag >= min_lag (a phrase played again)."""
    best = 0
    for _, same in _repeat_runs(roll, min_lag):
        if same.any():
            best = max(best, int(_runs(same)[1].max()))
    return best


def repeated_fraction(roll, min_lag: int = MIN_REPEAT_LAG, span: int = REPEAT_SPAN) -> float:
    """Self-similarity: the share of frames that belong to an exact repeat, at some lag >= min_lag, of
    at least `span` frames (the later copy counts)."""
    roll = _bool(roll)
    covered = np.zeros(len(roll), dtype=bool)
    for lag, same in _repeat_runs(roll, min_lag):
        starts, lengths = _runs(same)
        for start, length in zip(starts[lengths >= span], lengths[lengths >= span]):
            covered[lag + start:lag + start + length] = True
    return float(covered.mean()) if len(roll) else float("nan")


# ------------------------------------------------------------------------ comparing two sets
@dataclass
class Statistic:
    name: str
    summary: str  # what `data` and `model` are
    data: float
    model: float
    overlap: float  # overlapping area of the two normalised histograms, 0..1
    bins: list[str] = field(default_factory=list)  # one label per histogram bin
    data_histogram: list[float] = field(default_factory=list)  # normalised
    model_histogram: list[float] = field(default_factory=list)


def overlapping_area(p: np.ndarray, q: np.ndarray) -> float:
    """sum_i min(p_i, q_i) of two histograms, each normalised to 1 (nan when either is empty)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def _integer_histogram(values: np.ndarray, top: int, low: int = 0) -> np.ndarray:
    """Counts of the integers low..top, values above top in the last bin, below low in the first."""
    values = np.clip(np.asarray(values, dtype=np.int64), low, top) - low
    return np.bincount(values, minlength=top - low + 1).astype(float)


def _binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0].astype(float)


def _compare(name, summary, data_values, model_values, histogram, labels, reduce=np.nanmean) -> Statistic:
    d, m = histogram(data_values), histogram(model_values)
    norm = (lambda h: (h / h.sum()).tolist() if h.sum() else [0.0] * len(h))
    value = (lambda v: float(reduce(v)) if len(v) and not np.all(np.isnan(np.asarray(v, float)))
             else float("nan"))
    return Statistic(name, summary, value(data_values), value(model_values), overlapping_area(d, m), labels,
                     norm(d), norm(m))


def compare(data_rolls: Sequence, model_rolls: Sequence, lowest_pitch: int = 21) -> list[Statistic]:
    """Every listening statistic of two sets of rolls (see the module docstring)."""
    def gather(rolls, per_roll: Callable) -> np.ndarray:
        parts = [np.atleast_1d(np.asarray(per_roll(r), dtype=float)) for r in rolls]
        return np.concatenate(parts) if parts else np.zeros(0)

    stats = []
    for name, per_roll in (("notes per frame (polyphony)", notes_per_frame), ("onsets per frame", onsets_per_frame)):
        top = 12
        stats.append(_compare(name, "mean per frame", gather(data_rolls, per_roll), gather(model_rolls, per_roll),
                              lambda v: _integer_histogram(v, top), [str(i) for i in range(top)] + [f"{top}+"]))
    edges = np.arange(0, 88 + 6, 6)
    stats.append(_compare("pitch range, semitones", "mean per piece",
                          gather(data_rolls, lambda r: pitch_range(r, lowest_pitch)),
                          gather(model_rolls, lambda r: pitch_range(r, lowest_pitch)),
                          lambda v: _binned(v, edges), [f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])]))
    stats.append(_compare("pitch classes used per piece", "mean per piece",
                          gather(data_rolls, lambda r: pitch_classes_used(r, lowest_pitch)),
                          gather(model_rolls, lambda r: pitch_classes_used(r, lowest_pitch)),
                          lambda v: _integer_histogram(v, 12, 1), [str(i) for i in range(1, 13)]))
    data_pc = sum((pitch_class_counts(r, lowest_pitch) for r in data_rolls), np.zeros(12))
    model_pc = sum((pitch_class_counts(r, lowest_pitch) for r in model_rolls), np.zeros(12))
    share = (lambda h: float(h.max() / h.sum()) if h.sum() else float("nan"))
    stats.append(Statistic("pitch-class histogram", "share of the commonest class", share(data_pc),
                           share(model_pc), overlapping_area(data_pc, model_pc), list(PITCH_CLASSES),
                           (data_pc / max(data_pc.sum(), 1)).tolist(), (model_pc / max(model_pc.sum(), 1)).tolist()))
    top = 16
    stats.append(_compare("note length, frames", "mean per note", gather(data_rolls, note_lengths),
                          gather(model_rolls, note_lengths), lambda v: _integer_histogram(v, top, 1),
                          [str(i) for i in range(1, top)] + [f"{top}+"]))
    interval = (lambda r: np.abs(melodic_intervals(r, lowest_pitch)))
    stats.append(_compare("melodic interval, semitones", "mean absolute step of the top voice",
                          gather(data_rolls, interval), gather(model_rolls, interval),
                          lambda v: _integer_histogram(v, MAX_INTERVAL + 1),
                          [str(i) for i in range(MAX_INTERVAL + 1)] + [f"{MAX_INTERVAL + 1}+"]))
    fraction_edges = np.linspace(0, 1, 11)
    fraction_labels = [f"{a:.1f}-{b:.1f}" for a, b in zip(fraction_edges[:-1], fraction_edges[1:])]
    stats.append(_compare("in-key fraction", "mean per piece",
                          gather(data_rolls, lambda r: in_key_fraction(r, lowest_pitch)),
                          gather(model_rolls, lambda r: in_key_fraction(r, lowest_pitch)),
                          lambda v: _binned(v, fraction_edges), fraction_labels))
    repeat_edges = np.array([0, 4, 8, 16, 32, 64, 128, 100_000])
    stats.append(_compare(f"longest exact repeat (lag >= {MIN_REPEAT_LAG}), frames", "median per piece",
                          gather(data_rolls, longest_repeat), gather(model_rolls, longest_repeat),
                          lambda v: _binned(v, repeat_edges),
                          ["0-3", "4-7", "8-15", "16-31", "32-63", "64-127", "128+"], reduce=np.nanmedian))
    stats.append(_compare(f"frames in a repeat of >= {REPEAT_SPAN}", "mean share per piece",
                          gather(data_rolls, repeated_fraction), gather(model_rolls, repeated_fraction),
                          lambda v: _binned(v, fraction_edges), fraction_labels))
    return stats
