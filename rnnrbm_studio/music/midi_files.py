"""Reading and writing MIDI files: a file's bytes -> a PianoRoll, a roll -> a type-0 MIDI file.

Two time grids for reading (RollSettings chooses):
- beat-based (the default): `steps_per_beat` frames per quarter note, read off the file's ticks, so
  the grid follows the music's beats whatever its tempo changes (2 = eighth notes, as the ICML-2012
  benchmark data);
- seconds-based: one frame every `seconds_per_step` seconds (the tutorial's 0.3 s), converting
  ticks to seconds through the file's tempo map.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import mido
import numpy as np

from ..errors import StudioError
from .midi_scan import MidiTooCostly, check_midi_cost
from .dynamics import velocities
from .pianoroll import DEFAULT_BPM, LOWEST_PITCH, PianoRoll, RollSettings, estimate_transposition_to_c
from .atomic_files import write_atomically
from .safe_files import FileRefused, read_regular_file

DRUM_CHANNEL = 9  # channel 10, counted from 1
MAX_FILE_BYTES = 16 * 1024 * 1024


class MidiReadError(StudioError):
    """A MIDI file that cannot be made into a piano-roll; str() is a one-line reason."""


@dataclass
class _Note:
    pitch: int
    channel: int
    start_tick: int
    end_tick: int


def read_midi(source: str | os.PathLike | bytes, settings: RollSettings | None = None) -> PianoRoll:
    """Read a MIDI file (a path or its bytes) into a piano-roll.

    Raises MidiReadError, and only that, for anything that is not a usable MIDI file.
    """
    settings = settings or RollSettings()
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    data = _read_bytes(source)
    try:
        midi = _parse_midi(data)
    except MidiReadError:
        raise
    except MidiTooCostly as error:
        raise MidiReadError(str(error)) from None
    except Exception as error:  # mido raises OSError, EOFError, ValueError, KeyError, ...
        raise MidiReadError(f"not a readable MIDI file ({_describe(error)})") from None
    try:
        return _midi_to_roll(midi, settings, name)
    except MidiReadError:
        raise
    except Exception as error:
        raise MidiReadError(f"unusable MIDI content ({_describe(error)})") from None


def parse_midi_file(source: str | os.PathLike | bytes) -> mido.MidiFile:
    """A MIDI file (a path or its bytes) as mido reads it, read and bounded as read_midi does;
    MidiReadError, and only that, for anything that is not a usable MIDI file."""
    data = _read_bytes(source)
    try:
        return _parse_midi(data)
    except MidiReadError:
        raise
    except MidiTooCostly as error:
        raise MidiReadError(str(error)) from None
    except Exception as error:  # mido raises OSError, EOFError, ValueError, KeyError, ...
        raise MidiReadError(f"not a readable MIDI file ({_describe(error)})") from None


def _parse_midi(data: bytes) -> mido.MidiFile:
    # Each parse is bounded before mido builds anything (midi_scan); the two together share one budget.
    spent = check_midi_cost(data)
    try:
        return mido.MidiFile(file=io.BytesIO(data), clip=True)
    except OSError as error:
        # The SMF spec tells readers to skip chunk types they do not know; mido stops at them.
        # Retried only after that failure, so every file mido already reads is read unchanged.
        stripped = _without_unknown_chunks(data) if "no MTrk header" in str(error) else data
        if stripped is data:
            raise
        check_midi_cost(stripped, spent)
        return mido.MidiFile(file=io.BytesIO(stripped), clip=True)


def _without_unknown_chunks(data: bytes) -> bytes:
    """data without the complete chunks after the header whose 4-letter type is not MTrk."""
    if data[:4] != b"MThd" or len(data) < 8:
        return data
    position = 8 + int.from_bytes(data[4:8], "big")
    kept, dropped = [data[:position]], False
    while position + 8 <= len(data):
        name = data[position:position + 4]
        end = position + 8 + int.from_bytes(data[position + 4:position + 8], "big")
        if name != b"MTrk" and name.isalpha() and end <= len(data):
            dropped = True
        else:
            kept.append(data[position:end])
        position = end
    kept.append(data[position:])
    return b"".join(kept) if dropped else data


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        try:
            data = read_regular_file(source, MAX_FILE_BYTES, "a MIDI file")
        except FileRefused as error:
            raise MidiReadError(str(error)) from None
    if not data:
        raise MidiReadError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise MidiReadError(f"too large for a MIDI file ({len(data) / 2**20:.1f} MiB)")
    return data


def _describe(error: Exception) -> str:
    if isinstance(error, EOFError):
        return "the file ends too early"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_END_OF_TRACK = mido.MetaMessage("end_of_track")


def _timeline(midi: mido.MidiFile):
    """(absolute tick, message) of all tracks in playing order; type-2 tracks play one after another."""
    if midi.type == 2:
        offset = 0
        for track in midi.tracks:
            tick = offset
            for message in track:
                tick += message.time
                yield tick, message
            offset = tick
        return
    # What mido.merge_tracks gives, without its two copies of every message (two thirds of the time
    # and most of the memory of a large file): all messages stably sorted by absolute tick, the
    # end-of-track events dropped and one added at the latest tick.
    timed, last_tick = [], 0
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type != "end_of_track":
                timed.append((tick, message))
        last_tick = max(last_tick, tick)
    timed.sort(key=itemgetter(0))
    yield from timed
    yield last_tick, _END_OF_TRACK


def _collect_notes(midi: mido.MidiFile, include_drums: bool):
    """Notes with tick spans, the tempo changes (tick, microseconds per beat), drum notes left out."""
    notes: list[_Note] = []
    open_notes: dict[tuple[int, int], list[int]] = {}
    tempos: list[tuple[int, int]] = []
    last_tick = 0
    drum_notes = 0
    for tick, message in _timeline(midi):
        last_tick = tick
        kind = message.type
        if kind == "set_tempo":
            tempos.append((tick, message.tempo))
        elif kind in ("note_on", "note_off"):
            if message.channel == DRUM_CHANNEL and not include_drums:
                drum_notes += kind == "note_on" and message.velocity > 0
                continue
            key = (message.channel, message.note)
            if kind == "note_on" and message.velocity > 0:
                starts = open_notes.setdefault(key, [])
                if starts:  # a re-strike without a note-off ends the sounding note
                    notes.append(_Note(message.note, message.channel, starts.pop(0), tick))
                starts.append(tick)
            else:
                starts = open_notes.get(key)
                if starts:
                    notes.append(_Note(message.note, message.channel, starts.pop(0), tick))
    for (channel, pitch), starts in open_notes.items():  # never released: held to the end
        for start in starts:
            notes.append(_Note(pitch, channel, start, max(last_tick, start)))
    return notes, tempos, drum_notes


def _tick_to_seconds(tempos: list[tuple[int, int]], ticks_per_beat: int):
    """A function mapping ticks to seconds through the tempo map (default 120 bpm)."""
    points = [(0, 0.0, 500_000)]
    for tick, tempo in sorted(tempos):
        last_tick, last_seconds, last_tempo = points[-1]
        seconds = last_seconds + (tick - last_tick) * last_tempo / 1e6 / ticks_per_beat
        if tick == last_tick:
            points[-1] = (tick, last_seconds, tempo)
        else:
            points.append((tick, seconds, tempo))
    starts = np.array([p[0] for p in points])

    def convert(tick: int) -> float:
        i = int(np.searchsorted(starts, tick, side="right")) - 1
        start_tick, seconds, tempo = points[i]
        return seconds + (tick - start_tick) * tempo / 1e6 / ticks_per_beat

    return convert


def _midi_to_roll(midi: mido.MidiFile, settings: RollSettings, name: str) -> PianoRoll:
    ticks_per_beat = midi.ticks_per_beat
    if not ticks_per_beat or ticks_per_beat <= 0:
        raise MidiReadError(f"invalid ticks per beat ({ticks_per_beat}); SMPTE time is not supported")
    notes, tempos, drum_notes = _collect_notes(midi, settings.include_drums)
    bpm = mido.tempo2bpm(sorted(tempos)[0][1]) if tempos else DEFAULT_BPM

    if settings.seconds_per_step:
        seconds_at = _tick_to_seconds(tempos, ticks_per_beat)
        seconds_per_step = float(settings.seconds_per_step)

        def to_frame(tick: int) -> int:
            return int(round(seconds_at(tick) / seconds_per_step))
    else:
        steps_per_tick = settings.steps_per_beat / ticks_per_beat

        def to_frame(tick: int) -> int:
            return int(round(tick * steps_per_tick))

    spans = []
    for note in notes:
        start = to_frame(note.start_tick)
        end = max(to_frame(note.end_tick), start + 1)  # a note shorter than a step still sounds
        spans.append((note.pitch, start, end))
    n_frames = max((end for _, _, end in spans), default=0)
    if n_frames > settings.max_frames:
        raise MidiReadError(f"too long: {n_frames} steps (limit {settings.max_frames})")

    transposition = estimate_transposition_to_c(spans) if settings.transpose_to_c else 0
    roll = np.zeros((n_frames, settings.n_keys), dtype=np.uint8)
    dropped = drum_notes
    kept = 0
    for pitch, start, end in spans:
        key = pitch + transposition - settings.lowest_pitch
        if 0 <= key < settings.n_keys:
            roll[start:end, key] = 1
            kept += 1
        else:
            dropped += 1
    return PianoRoll(roll=roll, bpm=float(bpm), dropped_notes=dropped, transposition=transposition,
                     source=name, notes=kept)


def roll_track(roll: np.ndarray, strength: np.ndarray, ticks_per_step: int, lowest_pitch: int, channel: int,
               head: list, extra: tuple = ()) -> mido.MidiTrack:
    """A roll (T, keys) as one track after the messages `head`: consecutive frames of a key make one held
    note, struck at strength[frame, key]. `extra` are (tick, 0, message) merged in before the notes of
    their tick (tempo changes); at a tick note-offs come before note-ons."""
    events = list(extra)  # (tick, order, message)
    padded = np.zeros((roll.shape[0] + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll > 0
    changes = np.diff(padded, axis=0)  # +1 at onsets, -1 at releases, frame index = row
    for frame, key in zip(*np.nonzero(changes)):
        pitch = int(key) + lowest_pitch
        if changes[frame, key] > 0:
            events.append((int(frame) * ticks_per_step, 2, mido.Message(
                "note_on", note=pitch, velocity=int(strength[frame, key]), channel=channel)))
        else:
            events.append((int(frame) * ticks_per_step, 1, mido.Message(
                "note_off", note=pitch, velocity=0, channel=channel)))
    events.sort(key=lambda e: (e[0], e[1], getattr(e[2], "note", 0)))
    track = mido.MidiTrack(head)
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, roll.shape[0] * ticks_per_step - now)))
    return track


def roll_to_midi(roll: np.ndarray, path: str | os.PathLike | None = None, *, bpm: float = DEFAULT_BPM,
                 steps_per_beat: int = 2, ticks_per_beat: int = 480, velocity: int = 80, channel: int = 0,
                 program: int = 0, lowest_pitch: int = LOWEST_PITCH, dynamics: bool = True) -> mido.MidiFile:
    """Write a roll as a type-0 MIDI file; consecutive active frames of a key make one sustained note.
    Each note is struck at `velocity`, shaped by the dynamics rule (music/dynamics.py) unless `dynamics`
    is False: the same rule live playback follows."""
    roll = np.asarray(roll)
    if ticks_per_beat % steps_per_beat:
        raise ValueError("ticks_per_beat must be a multiple of steps_per_beat")
    strength = velocities(roll, steps_per_beat, velocity, dynamics=dynamics)
    head = [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
            mido.Message("program_change", program=program, channel=channel, time=0)]
    track = roll_track(roll, strength, ticks_per_beat // steps_per_beat, lowest_pitch, channel, head)
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    if path is not None:
        save_midi_atomically(midi, path)
    return midi


def save_midi_atomically(midi: mido.MidiFile, path: str | os.PathLike) -> None:
    """Write under a temporary name, then rename: a reader never finds half a file at `path`."""
    write_atomically(path, lambda stream: midi.save(file=stream))


__all__ = ["MidiReadError", "read_midi", "parse_midi_file", "roll_to_midi", "save_midi_atomically", "MAX_FILE_BYTES"]
