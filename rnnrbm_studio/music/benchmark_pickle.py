"""The ICML-2012 benchmark pickles (Boulanger-Lewandowski et al.) read as data, never as code.

The format: a dict with "train", "valid" and "test", each a list of sequences; a sequence is a list
of time steps; a step is a tuple (or list) of the MIDI note numbers sounding. The file is read with
the restricted unpickler (safe_pickle), then every part of that structure is checked before any roll
is made. The totals are bounded before the steps are walked, because a small pickle can refer to one
long sequence a million times: checking lengths first keeps the work proportional to what is allowed.
"""
from __future__ import annotations

import itertools
import os

import numpy as np

from ..errors import StudioError
from .pianoroll import RollSettings
from .safe_files import FileRefused, display_name, read_regular_file
from .safe_pickle import PickleRefused, restricted_loads

SPLITS = ("train", "valid", "test")
MAX_PICKLE_BYTES = 32 * 2 ** 20  # the real pickles: Nottingham 4.0 MB, JSB Chorales 0.3 MB
MAX_SEQUENCES = 20_000  # Nottingham has 1,037
MAX_TOTAL_STEPS = 1_000_000  # Nottingham has 266,537 (88 bytes each as a roll)
MAX_TOTAL_NOTES = 5_000_000  # Nottingham has 1,057,016
MAX_CHORD = 128  # a step cannot sound more notes than MIDI has
MIDI_NOTES = range(128)


class BenchmarkPickleError(StudioError):
    """A pickle that is not a usable benchmark pickle; str() is a one-line reason naming the file."""


def read_benchmark_pickle(path: str | os.PathLike, settings: RollSettings) -> dict[str, list[np.ndarray]]:
    """The rolls (T, n_keys) uint8 of each split of the benchmark pickle at path."""
    name = display_name(path)
    try:
        data = read_regular_file(path, MAX_PICKLE_BYTES, "a benchmark pickle")
        content = restricted_loads(data, encoding="latin1")
    except (FileRefused, PickleRefused) as error:
        raise BenchmarkPickleError(f"cannot read benchmark pickle {name}: {error}") from None
    if not isinstance(content, dict) or "train" not in content:
        raise BenchmarkPickleError(f"{name} is not a benchmark pickle (a dict with train/valid/test)")
    try:
        splits = _checked_splits(content, settings)
    except ValueError as error:
        raise BenchmarkPickleError(f"{name} is not a usable benchmark pickle: {error}") from None
    return {split: [_sequence_to_roll(sequence, settings) for sequence in sequences] for split, sequences in splits.items()}


def _checked_splits(content: dict, settings: RollSettings) -> dict[str, list]:
    """The sequences of each split, every part of them checked (ValueError says what is wrong)."""
    splits = {}
    sequences_seen = steps = notes = 0
    for split in SPLITS:
        sequences = content.get(split, [])
        if not isinstance(sequences, (list, tuple)):
            raise ValueError(f"{split} is not a list of sequences but {type(sequences).__name__}")
        sequences_seen += len(sequences)
        if sequences_seen > MAX_SEQUENCES:
            raise ValueError(f"more than {MAX_SEQUENCES:,} sequences")
        for i, sequence in enumerate(sequences):
            if not isinstance(sequence, (list, tuple)):
                raise ValueError(f"{split}/{i} is not a list of steps but {type(sequence).__name__}")
            if len(sequence) > settings.max_frames:
                raise ValueError(f"{split}/{i} has {len(sequence):,} steps (the limit is {settings.max_frames:,})")
            steps += len(sequence)
            if steps > MAX_TOTAL_STEPS:
                raise ValueError(f"more than {MAX_TOTAL_STEPS:,} steps in all")
        splits[split] = sequences
    for split, sequences in splits.items():  # the bounds hold: now each step
        for i, sequence in enumerate(sequences):
            for chord in sequence:
                if not isinstance(chord, (list, tuple)):
                    raise ValueError(f"a step of {split}/{i} is not a tuple of notes but {type(chord).__name__}")
                if len(chord) > MAX_CHORD:
                    raise ValueError(f"a step of {split}/{i} has {len(chord):,} notes")
                notes += len(chord)
            if notes > MAX_TOTAL_NOTES:
                raise ValueError(f"more than {MAX_TOTAL_NOTES:,} notes in all")
            kinds = set(map(type, itertools.chain.from_iterable(sequence)))
            if not kinds <= {int}:  # exactly int: not bool, float or str
                odd = sorted(k.__name__ for k in kinds - {int})
                raise ValueError(f"{split}/{i} has notes that are not whole numbers ({', '.join(odd)})")
            if any(note not in MIDI_NOTES for note in itertools.chain.from_iterable(sequence)):
                raise ValueError(f"{split}/{i} has a note outside the MIDI notes 0..127")
    return splits


def _sequence_to_roll(sequence, settings: RollSettings) -> np.ndarray:
    """A checked sequence as a roll; notes outside the piano's keys are left out (as notes_to_roll)."""
    lengths = np.fromiter(map(len, sequence), dtype=np.int64, count=len(sequence))
    pitches = np.fromiter(itertools.chain.from_iterable(sequence), dtype=np.int64, count=int(lengths.sum()))
    steps = np.repeat(np.arange(len(sequence)), lengths)
    keys = pitches - settings.lowest_pitch
    inside = (keys >= 0) & (keys < settings.n_keys)
    roll = np.zeros((len(sequence), settings.n_keys), dtype=np.uint8)
    roll[steps[inside], keys[inside]] = 1
    return roll
