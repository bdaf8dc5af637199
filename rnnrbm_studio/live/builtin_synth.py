"""The built-in synth: an output port that plays through FluidSynth in this process, to the speakers.

It is a port like the others (BaseOutputPort: send, problem, close), always in the output list, and
the default when there is no MIDI output, so a fresh machine hears Play without a synth to set up.
What it plays with is one SynthSettings: the SoundFont (None: found as synth_engine.find_soundfont
says), the volume (FluidSynth's gain), the audio output (audio_output.py: "auto", "none", a driver),
and how many seconds of audio to tap (0: no tap; tests and checks read port.tap).

On stop the player sends note-offs and All Notes Off, and the notes ring out as a synth's do; on
close every voice is cut (All Sound Off), the audio driver goes, then the synth.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import mido

from .audio_output import AUTO, AudioTap, open_audio_output
from .clock import Clock
from .output_port import BaseOutputPort, PortError
from .synth_engine import DEFAULT_GAIN, MAX_GAIN, SynthEngine, SynthUnavailable

log = logging.getLogger(__name__)

BUILTIN_SYNTH_NAME = "Built-in synth (FluidSynth)"
_MATCH = "built-in synth"
_LAST_BLOCK_FRAMES = 512
_LAST_BLOCKS_AT_MOST = 16  # 0.19 s of audio at 44.1 kHz, rendered (not played) at close


@dataclass(frozen=True)
class SynthSettings:
    soundfont: str | None = None
    gain: float = DEFAULT_GAIN
    audio_output: str = AUTO
    tap_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.gain) <= MAX_GAIN:
            raise ValueError(f"the synth's volume must be from 0 to {MAX_GAIN:g}, not {self.gain}")
        if not 0.0 <= float(self.tap_seconds) <= 600.0:
            raise ValueError(f"the audio tap holds 0 to 600 seconds, not {self.tap_seconds}")


def is_builtin_synth(name: str | None) -> bool:
    """Whether a port name given by a user (exact, or a part such as "built-in synth") means the built-in synth."""
    return bool(name) and (name == BUILTIN_SYNTH_NAME or _MATCH in name.lower()
                           or name.lower() in ("builtin", "fluidsynth"))


class BuiltinSynthPort(BaseOutputPort):
    """FluidSynth in this process as a MIDI output. `notice` is one line when something is off but it
    still plays (no audio device: silent); `tap` holds the audio it played when settings ask for one."""

    name = BUILTIN_SYNTH_NAME
    system = "FluidSynth"

    def __init__(self, settings: SynthSettings | None = None, clock: Clock | None = None):
        super().__init__()
        self.settings = settings or SynthSettings()
        try:
            self.engine = SynthEngine(self.settings.soundfont, gain=self.settings.gain)
        except SynthUnavailable as error:
            raise PortError(str(error)) from None
        self.tap = AudioTap(self.settings.tap_seconds, self.engine.sample_rate) if self.settings.tap_seconds else None
        self._lock = threading.Lock()
        self.voices_at_close: int | None = None
        self.output, self.notice = open_audio_output(self.engine, self.settings.audio_output, self.tap, clock)
        if self.notice:
            log.warning("%s", self.notice)

    @property
    def soundfont(self):
        return self.engine.soundfont

    def describe(self) -> str:
        where = getattr(self.output, "driver", None) or "no audio output"
        return f"{self.engine.soundfont.describe()}, {where}"

    def send(self, message: mido.Message) -> None:
        with self._lock:
            if self.closed:
                return
            self.engine.send(message)

    def set_gain(self, gain: float) -> None:
        with self._lock:
            if not self.closed:
                self.engine.set_gain(gain)

    def voice_count(self) -> int:
        with self._lock:
            return 0 if self.closed else self.engine.voice_count()

    def _close(self) -> None:
        with self._lock:
            self.engine.silence()
            self.output.close()
            # FluidSynth frees silenced voices as it renders: last blocks, tapped, until they are gone (a
            # voice struck just before the silence can outlive the first block; a CI run saw one)
            for _ in range(_LAST_BLOCKS_AT_MOST):
                last = self.engine.render(_LAST_BLOCK_FRAMES)
                if self.tap is not None:
                    self.tap.write(last)
                if self.engine.voice_count() == 0:
                    break
            self.voices_at_close = self.engine.voice_count()
            self.engine.delete()


__all__ = ["BUILTIN_SYNTH_NAME", "SynthSettings", "BuiltinSynthPort", "is_builtin_synth"]
