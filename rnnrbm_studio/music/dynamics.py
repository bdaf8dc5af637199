"""Dynamics: how hard each note is struck, from where it falls in the bar and in the chord.

A piano-roll says only which keys sound; this rule gives each note-on its velocity, the same live
(live/note_output.py) and in every file written from a roll (midi_files.roll_to_midi), so that an
exported session sounds as it was heard. From the base velocity (80 unless set):

- a note starting on the first beat of a bar (of 4 beats) +12, on another beat +6, between beats -8;
- the top voice (the highest key sounding in that step, the melody) +6, every key under it (the
  chord, the bass) -6;
- clamped to MIDI's 1..127.

With the base 80: a melody note on a downbeat 98, on another beat 92, off the beat 78; a chord note
under it 86, 80 and 66. Steps count from the start of the music (step 0 is a downbeat). Switched off
(PlaybackSettings.dynamics False, `--no-dynamics`, the window's Dynamics box), every note has the
base velocity.
"""
from __future__ import annotations

import numpy as np

BEATS_PER_BAR = 4
# what the switch does, in the command line's help and the window's tooltip
SUMMARY = ("notes on the beats louder than those between, the first beat of a bar most; the top voice "
           "(the melody) louder than the chord under it")
DOWNBEAT, ON_BEAT, OFF_BEAT = 12, 6, -8
TOP_VOICE, UNDER_TOP_VOICE = 6, -6


def velocities(roll: np.ndarray, steps_per_beat: int, base: int = 80, first_step: int = 0,
               dynamics: bool = True) -> np.ndarray:
    """(T, n_keys) int16: the velocity a note starting at each step and key gets (read it where a note
    starts; elsewhere it means nothing). `first_step` is the first row's step number in the music."""
    sounding = np.asarray(roll) > 0
    steps, n_keys = sounding.shape
    if not dynamics:
        return np.full((steps, n_keys), _clamp(base), dtype=np.int16)
    step = first_step + np.arange(steps)
    steps_per_beat = max(1, int(steps_per_beat))
    beat = np.where(step % (steps_per_beat * BEATS_PER_BAR) == 0, DOWNBEAT,
                    np.where(step % steps_per_beat == 0, ON_BEAT, OFF_BEAT))
    # the highest sounding key of each step (-1 where none sounds)
    top = np.where(sounding.any(axis=1), n_keys - 1 - np.argmax(sounding[:, ::-1], axis=1), -1)
    voice = np.where(np.arange(n_keys)[None, :] == top[:, None], TOP_VOICE, UNDER_TOP_VOICE)
    return np.clip(int(base) + beat[:, None] + voice, 1, 127).astype(np.int16)


def step_velocities(keys: np.ndarray, step: int, steps_per_beat: int, base: int = 80,
                    dynamics: bool = True) -> np.ndarray:
    """(n_keys,) the velocities of one step's keys (`keys` sounding at step number `step`)."""
    return velocities(np.asarray(keys)[None, :], steps_per_beat, base, step, dynamics)[0]


def _clamp(velocity: int) -> int:
    return min(127, max(1, int(velocity)))


__all__ = ["velocities", "step_velocities", "BEATS_PER_BAR", "SUMMARY"]
