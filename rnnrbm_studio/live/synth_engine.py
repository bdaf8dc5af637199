"""FluidSynth in this process: one synthesiser, the SoundFont it plays, and MIDI messages turned into its calls.

The built-in synth (builtin_synth.py) and audio rendering (audio_render.py) both play through a
SynthEngine. It wraps pyfluidsynth, which loads the system's libfluidsynth (Debian: libfluidsynth3);
either missing is a SynthUnavailable with the command that installs it, never an ImportError.
FluidSynth's API is thread-safe: the player's thread sends notes while an audio thread renders.

Which SoundFont: the user's choice (an option, a window setting, or RNNRBM_STUDIO_SOUNDFONT), else a
General MIDI one found on the system, else the small public-domain GM bank shipped in resources/
(resources/GMbank.md). docs/synth.md says why FluidSynth and gives the measurements.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from ..assets import resource_path
from ..errors import StudioError
from ..music.safe_files import display_name, open_regular_file

log = logging.getLogger(__name__)

SOUNDFONT_ENV = "RNNRBM_STUDIO_SOUNDFONT"
SHIPPED_SOUNDFONT = "GMbank.sf2"
SAMPLE_RATE = 48000  # what PipeWire and JACK run at by default: no resampling on their way
DEFAULT_GAIN = 0.5  # FluidSynth's 0.2 is quiet for one voice; 0.5 leaves headroom for a ten-note chord
MAX_GAIN = 2.0
# General MIDI SoundFonts as Linux distributions, Homebrew and MuseScore install them, best first
SYSTEM_SOUNDFONTS = (
    "/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3", "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2", "/usr/local/share/soundfonts/default.sf2",
)
INSTALL_HINT = ("install FluidSynth's library: `sudo apt install libfluidsynth3` (Debian/Ubuntu), "
                "`brew install fluid-synth` (macOS), then `pip install pyfluidsynth`")


class SynthUnavailable(StudioError):
    """No FluidSynth here (the library or its binding is missing), or no usable SoundFont."""


@dataclass(frozen=True)
class SoundFontChoice:
    path: Path
    source: str  # "chosen", "environment", "system" or "shipped"

    def describe(self) -> str:
        return f"{self.path.name} ({self.source})"


def find_soundfont(chosen: str | os.PathLike | None = None) -> SoundFontChoice:
    """The SoundFont to play: `chosen` (checked: a readable SoundFont file, else SynthUnavailable),
    else $RNNRBM_STUDIO_SOUNDFONT, else the first General MIDI one installed, else the shipped one."""
    if chosen:
        return SoundFontChoice(check_soundfont(chosen), "chosen")
    from_env = os.environ.get(SOUNDFONT_ENV)
    if from_env:
        return SoundFontChoice(check_soundfont(from_env, f"${SOUNDFONT_ENV}"), "environment")
    for candidate in SYSTEM_SOUNDFONTS:
        try:
            return SoundFontChoice(check_soundfont(candidate), "system")
        except SynthUnavailable:
            continue
    shipped = resource_path(SHIPPED_SOUNDFONT)
    return SoundFontChoice(check_soundfont(shipped, "the shipped SoundFont"), "shipped")


def check_soundfont(path: str | os.PathLike, label: str = "") -> Path:
    """path, if it is a regular file that starts like a SoundFont (RIFF sfbk); else a one-line SynthUnavailable."""
    shown = f"{label} ({display_name(path)})" if label else display_name(path)
    try:
        with open_regular_file(path) as stream:  # a FIFO or a device is refused, not waited on
            header = stream.read(12)
    except StudioError as error:
        raise SynthUnavailable(f"cannot use the SoundFont {shown}: {error}") from None
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise SynthUnavailable(f"{shown} is not a SoundFont (.sf2/.sf3) file")
    return Path(path)


def load_fluidsynth():
    """The pyfluidsynth module, its library loaded; SynthUnavailable with the install command if absent."""
    try:
        import fluidsynth
    except (ImportError, OSError) as error:
        raise SynthUnavailable(f"the built-in synth needs FluidSynth ({' '.join(str(error).split())}): "
                               f"{INSTALL_HINT}") from None
    _declare_extras(fluidsynth)
    return fluidsynth


def _declare_extras(fluidsynth) -> None:
    """Prototypes pyfluidsynth does not declare: the gain, and the log hook (FluidSynth prints its own
    errors on stderr otherwise; we collect them for our one-line reasons)."""
    library = fluidsynth._fl
    if getattr(library, "_studio_declared", False):
        return
    library.fluid_synth_set_gain.argtypes = [ctypes.c_void_p, ctypes.c_float]
    library.fluid_synth_set_gain.restype = None
    library.fluid_synth_get_gain.argtypes = [ctypes.c_void_p]
    library.fluid_synth_get_gain.restype = ctypes.c_float
    library.fluid_set_log_function.argtypes = [ctypes.c_int, _LOG_FUNCTION, ctypes.c_void_p]
    library.fluid_set_log_function.restype = _LOG_FUNCTION
    for level in (_FLUID_PANIC, _FLUID_ERR, _FLUID_WARN, _FLUID_INFO):
        library.fluid_set_log_function(level, _log_hook, None)
    library._studio_declared = True


_FLUID_PANIC, _FLUID_ERR, _FLUID_WARN, _FLUID_INFO = 0, 1, 2, 3
_LOG_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_recent_errors: list[str] = []
_errors_lock = threading.Lock()


@_LOG_FUNCTION
def _log_hook(level, message, _data):
    text = (message or b"").decode("utf-8", "replace")
    log.info("FluidSynth: %s", text)
    with _errors_lock:
        _recent_errors.append(text)
        del _recent_errors[:-20]


def take_fluidsynth_errors() -> list[str]:
    """FluidSynth's error, warning and info lines since the last call (for a one-line reason)."""
    with _errors_lock:
        errors = list(_recent_errors)
        _recent_errors.clear()
    return errors


class SynthEngine:
    """One FluidSynth synthesiser with a SoundFont loaded: send(message) plays a mido message;
    render(frames) returns that many stereo frames (int16, shape (frames, 2)); voice_count() says
    how many voices sound. delete() frees it (after any audio driver using it is gone)."""

    def __init__(self, soundfont: str | os.PathLike | None = None, *, gain: float = DEFAULT_GAIN,
                 sample_rate: int = SAMPLE_RATE):
        self.fluidsynth = load_fluidsynth()
        self.soundfont = find_soundfont(soundfont)
        self.sample_rate = int(sample_rate)
        self._synth = self.fluidsynth.Synth(gain=float(gain), samplerate=float(sample_rate))
        self._sfid = self._synth.sfload(str(self.soundfont.path))
        if self._sfid < 0:
            reason = "; ".join(take_fluidsynth_errors()[-1:]) or "FluidSynth refused it"
            self._synth.delete()
            raise SynthUnavailable(f"cannot load the SoundFont {display_name(self.soundfont.path)} ({reason})")
        for channel in range(16):
            self._synth.program_select(channel, self._sfid, 128 if channel == 9 else 0, 0)
        self.deleted = False
        log.info("FluidSynth plays %s", self.soundfont.describe())

    @property
    def handle(self):
        """The fluid_synth_t pointer (for audio drivers)."""
        return self._synth.synth

    @property
    def settings_handle(self):
        return self._synth.settings

    def setting(self, name: str, value) -> None:
        self._synth.setting(name, value)

    def follow_driver_rate(self, driver_messages: list[str]) -> int:
        """The rate the synth renders at now: FluidSynth's JACK driver moves the synth to the server's
        rate and says so only in a warning ("... jackd=44100)"), not in its settings."""
        for message in driver_messages:
            found = re.search(r"sample rate mismatch.*jackd=(\d+)", message)
            if found:
                self.sample_rate = int(found.group(1))
        return self.sample_rate

    def send(self, message: mido.Message) -> None:
        synth, kind = self._synth, message.type
        if kind == "note_on" and message.velocity > 0:
            synth.noteon(message.channel, message.note, message.velocity)
        elif kind in ("note_on", "note_off"):
            synth.noteoff(message.channel, message.note)
        elif kind == "control_change":
            synth.cc(message.channel, message.control, message.value)
        elif kind == "program_change":
            synth.program_change(message.channel, message.program)
        elif kind == "pitchwheel":
            synth.pitch_bend(message.channel, message.pitch + 8192)
        # other messages (sysex, clock, aftertouch) change nothing a General MIDI piece relies on

    def set_gain(self, gain: float) -> None:
        if not 0.0 <= gain <= MAX_GAIN:
            raise ValueError(f"the synth's volume must be from 0 to {MAX_GAIN:g}, not {gain}")
        self.fluidsynth._fl.fluid_synth_set_gain(self.handle, float(gain))

    def gain(self) -> float:
        return float(self.fluidsynth._fl.fluid_synth_get_gain(self.handle))

    def silence(self) -> None:
        """All Sound Off on every channel: every voice stops at once, release tails too (for close); only
        the reverb's fading echo is left (system_reset, tried, kept the voices sounding)."""
        for channel in range(16):
            self._synth.all_sounds_off(channel)

    def voice_count(self) -> int:
        return int(self._synth.get_active_voice_count())

    def render(self, frames: int) -> np.ndarray:
        return self._synth.get_samples(int(frames)).reshape(-1, 2)

    def delete(self) -> None:
        if not self.deleted:
            self.deleted = True
            self._synth.delete()


__all__ = ["SynthEngine", "SynthUnavailable", "SoundFontChoice", "find_soundfont", "check_soundfont",
           "load_fluidsynth", "take_fluidsynth_errors", "SOUNDFONT_ENV", "SAMPLE_RATE", "DEFAULT_GAIN", "MAX_GAIN"]
