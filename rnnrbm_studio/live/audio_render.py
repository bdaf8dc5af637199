"""MIDI to a WAV file with the built-in synth (FluidSynth, no audio device), faster than real time.

`render piece.mid out.wav`, `generate --wav` and the window's *Export session as audio* all come
here. The file is written atomically (music/atomic_files.py): never half a WAV under the name.
"""
from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import mido

from ..errors import StudioError
from ..music.atomic_files import write_atomically
from ..music.midi_files import MidiReadError, parse_midi_file
from ..music.safe_files import display_name
from .synth_engine import DEFAULT_GAIN, SAMPLE_RATE, SynthEngine

MAX_SECONDS = 2 * 3600.0  # 2 hours of 48 kHz stereo is 1.4 GB of WAV; longer is a mistake
TAIL_SECONDS = 3.0  # after the last event, release tails ring out this long at most
_BLOCK = 4096


@dataclass(frozen=True)
class RenderResult:
    seconds: float
    notes: int
    soundfont: str


def render_midi_file(source: str | os.PathLike, out: str | os.PathLike, *, soundfont: str | None = None,
                     program: int | None = None, gain: float = DEFAULT_GAIN,
                     between: Callable[[], object] | None = None) -> RenderResult:
    """Render a MIDI file (read safely; MidiReadError names what is wrong) to a WAV file.
    `between`, when given, is called before each message (a worker's cancel check may raise there)."""
    try:
        midi = parse_midi_file(source)
    except MidiReadError as error:
        raise MidiReadError(f"{display_name(source)}: {error}") from None
    return render_messages(sounding_messages(midi, between), out, soundfont=soundfont, program=program, gain=gain)


def sounding_messages(midi: mido.MidiFile, between: Callable[[], object] | None = None
                      ) -> Iterator[tuple[float, mido.Message]]:
    """(seconds since the previous sounding message, message) of a MIDI file, meta messages left out:
    the time of a meta message (a tempo change's) belongs to the next sounding one, or every note after
    it would come early."""
    waited = 0.0
    for message in midi:
        if between is not None:
            between()
        waited += message.time
        if not message.is_meta:
            yield waited, message
            waited = 0.0


def render_messages(messages: Iterable[tuple[float, mido.Message]], out: str | os.PathLike, *,
                    soundfont: str | None = None, program: int | None = None,
                    gain: float = DEFAULT_GAIN) -> RenderResult:
    """Render (seconds since the previous message, message) pairs to a 16-bit stereo WAV at out.
    `program` (0..127), when given, replaces every program change and is set on all channels first."""
    engine = SynthEngine(soundfont, gain=gain)
    try:
        if program is not None:
            for channel in range(16):
                if channel != 9:
                    engine.send(mido.Message("program_change", channel=channel, program=program))
        result: dict = {}
        write_atomically(out, lambda stream: _write_wav(stream, engine, messages, program, result))
        return RenderResult(result["seconds"], result["notes"], engine.soundfont.describe())
    finally:
        engine.delete()


def _write_wav(stream, engine: SynthEngine, messages, program, result: dict) -> None:
    rate = engine.sample_rate
    frames_done, due, notes = 0, 0.0, 0
    with wave.open(stream, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        for delta, message in messages:
            due += max(0.0, float(delta))
            if due > MAX_SECONDS:
                raise StudioError(f"the music lasts more than {MAX_SECONDS / 3600:g} hours; "
                                  f"render a shorter piece")
            frames_done += _render_until(wav, engine, frames_done, round(due * rate))
            if message.type == "program_change" and program is not None:
                continue
            notes += message.type == "note_on" and message.velocity > 0
            engine.send(message)
        tail_end = frames_done + int(TAIL_SECONDS * rate)
        while frames_done < tail_end and engine.voice_count() > 0:
            frames_done += _render_until(wav, engine, frames_done, min(tail_end, frames_done + _BLOCK))
    result.update(seconds=frames_done / rate, notes=notes)


def _render_until(wav, engine: SynthEngine, done: int, target: int) -> int:
    rendered = 0
    while done + rendered < target:
        count = min(_BLOCK, target - done - rendered)
        wav.writeframes(engine.render(count).astype("<i2", copy=False).tobytes())  # WAV is little-endian
        rendered += count
    return rendered


__all__ = ["render_midi_file", "render_messages", "RenderResult", "SAMPLE_RATE"]
