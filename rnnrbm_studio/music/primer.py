"""A primer: a MIDI file whose music a model listens to first and then continues.

Generate, play, the window's Prime… and LivePlayer.prime_from_midi all read their primer here, so
one file primes every one of them with the same frames.
"""
from __future__ import annotations

import os

import numpy as np

from .midi_files import MidiReadError, read_midi
from .pianoroll import RollSettings
from .safe_files import display_name


def read_primer(path: str | os.PathLike, roll_settings: RollSettings, label: str = "primer") -> np.ndarray:
    """The roll (frames, keys) uint8 of the primer at `path`, read the way the model's own music was:
    `roll_settings` is the model's (roll_settings_of its checkpoint), with its grid in beats or seconds,
    its keys, and transposition to C if its music was transposed.

    Raises MidiReadError "<label> <path>: <reason>" (label: how the caller names the file, such as
    "--primer"). Only a regular file is opened (safe_files): a FIFO or a device cannot make it wait.
    """
    try:
        return read_midi(path, roll_settings).roll
    except MidiReadError as error:
        raise MidiReadError(f"{label} {display_name(path)}: {error}") from None


__all__ = ["read_primer"]
