"""Small MIDI files made with mido for the tests (generated on the fly, never committed).

Notes are given as (pitch, start_tick, end_tick[, channel[, velocity]]) with absolute ticks; the
helpers turn them into properly ordered delta-time tracks so each test states the music it means.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import mido
import numpy as np

TICKS_PER_BEAT = 480


def _note_events(notes: Iterable[Sequence[int]], note_off_as_velocity_zero: bool = False):
    """(tick, order, message) for each note's on and off; offs sort before ons at the same tick."""
    events = []
    for note in notes:
        pitch, start, end = note[0], note[1], note[2]
        channel = note[3] if len(note) > 3 else 0
        velocity = note[4] if len(note) > 4 else 80
        events.append((start, 1, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)))
        if note_off_as_velocity_zero:
            off = mido.Message("note_on", note=pitch, velocity=0, channel=channel)
        else:
            off = mido.Message("note_off", note=pitch, velocity=0, channel=channel)
        events.append((end, 0, off))
    return events


def track_from_events(events, end_tick: int | None = None) -> mido.MidiTrack:
    """A track from (tick, order, message) with absolute ticks, sorted stably, with end_of_track."""
    track = mido.MidiTrack()
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    last = max(now, end_tick or 0)
    track.append(mido.MetaMessage("end_of_track", time=last - now))
    return track


def notes_track(notes, tempos: Sequence[tuple[int, float]] = (), note_off_as_velocity_zero: bool = False,
                extra_events=(), end_tick: int | None = None) -> mido.MidiTrack:
    """A track with the notes, tempo changes [(tick, bpm)] and any extra (tick, order, message)."""
    events = _note_events(notes, note_off_as_velocity_zero)
    events += [(tick, -1, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))) for tick, bpm in tempos]
    events += list(extra_events)
    return track_from_events(events, end_tick)


def midi_file(tracks: Sequence[mido.MidiTrack], midi_type: int = 1,
              ticks_per_beat: int = TICKS_PER_BEAT) -> mido.MidiFile:
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    midi.tracks.extend(tracks)
    return midi


def midi_bytes(midi: mido.MidiFile) -> bytes:
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def write_notes(path: str | Path, notes, *, tempos=(), midi_type: int = 0,
                ticks_per_beat: int = TICKS_PER_BEAT, note_off_as_velocity_zero: bool = False) -> Path:
    """One track holding `notes` (type 0 by default), saved to path with mido."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    track = notes_track(notes, tempos, note_off_as_velocity_zero)
    midi_file([track], midi_type, ticks_per_beat).save(str(path))
    return path


def roll_notes(roll: np.ndarray, ticks_per_step: int, lowest_pitch: int = 21):
    """Notes (pitch, start, end) for a roll: each run of active frames of a key is one note."""
    notes = []
    padded = np.zeros((roll.shape[0] + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll > 0
    changes = np.diff(padded, axis=0)
    for key in range(roll.shape[1]):
        starts = np.nonzero(changes[:, key] > 0)[0]
        ends = np.nonzero(changes[:, key] < 0)[0]
        for start, end in zip(starts, ends):
            notes.append((key + lowest_pitch, int(start) * ticks_per_step, int(end) * ticks_per_step))
    return notes


def arpeggio_roll(n_frames: int, chord=(60, 64, 67, 72), lowest_pitch: int = 21) -> np.ndarray:
    """A repeating arpeggio: one note per frame cycling through `chord` (an easy pattern to learn)."""
    roll = np.zeros((n_frames, 88), dtype=np.uint8)
    for t in range(n_frames):
        roll[t, chord[t % len(chord)] - lowest_pitch] = 1
    return roll


def write_arpeggio_corpus(folder: str | Path, n_files: int, n_frames: int = 48, steps_per_beat: int = 2,
                          chords=((60, 64, 67, 72), (57, 60, 64, 69))) -> list[Path]:
    """n_files MIDI files of repeating arpeggios (alternating chords), on a beat grid of steps_per_beat."""
    folder = Path(folder)
    ticks_per_step = TICKS_PER_BEAT // steps_per_beat
    paths = []
    for i in range(n_files):
        roll = arpeggio_roll(n_frames, chords[i % len(chords)])
        paths.append(write_notes(folder / f"piece_{i:03d}.mid", roll_notes(roll, ticks_per_step)))
    return paths


def scale_in_d_major(ticks_per_step: int = 240, octave_start: int = 62) -> list[tuple[int, int, int]]:
    """A D major scale up and down plus tonic triads: unambiguously in D major."""
    steps = [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0]
    notes = [(octave_start + s, i * ticks_per_step, (i + 1) * ticks_per_step) for i, s in enumerate(steps)]
    t = len(steps) * ticks_per_step
    for k in range(4):  # D-F#-A triads, long: they dominate the pitch histogram as a tonic would
        for interval in (0, 4, 7):
            notes.append((octave_start - 12 + interval, t + k * 4 * ticks_per_step,
                          t + (k + 1) * 4 * ticks_per_step))
    return notes


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity (7 bits a byte, high bit = more follow), for hand-made files."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))
