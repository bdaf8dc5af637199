"""Where the built-in synth's sound goes: the computer's speakers through one of FluidSynth's own
audio drivers, or nowhere (silent, still rendered) when no audio device is there; and a tap that keeps
what was handed to the device, for tests and for checks.

Measured (docs/synth.md): FluidSynth's native drivers render in their own thread without Python, so a
busy app (training, generating) cannot starve them; a PortAudio stream fed from a Python callback
underflowed in 22 of 379 periods under the same load. So the speakers are fed natively, and Python
only joins the audio thread when a tap is asked for (the driver then calls us to render each period).

Audio outputs are strings: "auto" (the first driver that opens, in the platform's order), "none"
(silent), or a FluidSynth driver name ("pulseaudio", "alsa", "jack", "coreaudio", "wasapi"...),
optionally with a device: "alsa:hw:1".
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading

import numpy as np

from .clock import Clock, MonotonicClock
from .synth_engine import SynthEngine, load_fluidsynth, take_fluidsynth_errors

log = logging.getLogger(__name__)

AUTO, NONE = "auto", "none"
# the order "auto" tries; a sound server before the raw device it would otherwise have to share
_PLATFORM_DRIVERS = {"linux": ("pipewire", "pulseaudio", "jack", "alsa", "oss"),
                     "darwin": ("coreaudio", "portaudio"), "win32": ("wasapi", "dsound", "waveout", "portaudio")}
_DRIVER_LABELS = {"pipewire": "PipeWire", "pulseaudio": "PulseAudio", "jack": "JACK", "alsa": "ALSA",
                  "oss": "OSS", "coreaudio": "Core Audio", "wasapi": "WASAPI", "dsound": "DirectSound",
                  "waveout": "WaveOut", "portaudio": "PortAudio", "sdl2": "SDL2", "opensles": "OpenSL ES",
                  "oboe": "Oboe", "sndman": "Sound Manager", "dart": "DART", "file": "file"}
_NOT_SPEAKERS = {"file", "sdl2"}  # sdl2 needs SDL initialised by the application
PERIOD_FRAMES = 256  # 5.8 ms at 44.1 kHz; with PERIODS, about 23 ms of buffered sound
PERIODS = 4
NO_AUDIO_HELP = ("start your desktop's sound (PulseAudio/PipeWire) or plug in an output, then Play again; "
                 "or choose a MIDI synth")


def _platform_key() -> str:
    return "linux" if sys.platform.startswith("linux") else sys.platform


def compiled_drivers() -> list[str]:
    """The audio drivers this libfluidsynth was built with ([] without FluidSynth)."""
    try:
        fluidsynth = load_fluidsynth()
    except Exception:
        return []
    return _options(fluidsynth, "audio.driver")


def _options(fluidsynth, name: str) -> list[str]:
    found: list[str] = []
    callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p)
    collect = callback_type(lambda _data, _name, option: found.append(option.decode("utf-8", "replace")))
    library = fluidsynth._fl
    library.fluid_settings_foreach_option.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p,
                                                      callback_type]
    settings = fluidsynth.new_fluid_settings()
    try:
        library.fluid_settings_foreach_option(settings, name.encode(), None, collect)
    finally:
        fluidsynth.delete_fluid_settings(settings)
    return found


def audio_outputs() -> list[tuple[str, str]]:
    """(key, label) of every audio output to offer: Automatic, each speaker driver (with its listed
    devices, where FluidSynth lists them), and Silent."""
    choices = [(AUTO, "Automatic (system default)")]
    compiled = compiled_drivers()
    order = list(_PLATFORM_DRIVERS.get(_platform_key(), ())) + sorted(compiled)
    fluidsynth = load_fluidsynth() if compiled else None
    for driver in dict.fromkeys(order):
        if driver not in compiled or driver in _NOT_SPEAKERS:
            continue
        label = _DRIVER_LABELS.get(driver, driver)
        choices.append((driver, label))
        for device in _options(fluidsynth, f"audio.{driver}.device"):
            if device != "default":
                choices.append((f"{driver}:{device}", f"{label}: {device}"))
    choices.append((NONE, "Silent (no audio output)"))
    return choices


def describe_output(key: str) -> str:
    return dict(audio_outputs()).get(key, key)


class AudioTap:
    """The last `seconds` of what the synth handed to its audio device, as float32 stereo in -1..1.
    Written by the audio thread, read by anyone: samples() copies, clear() forgets."""

    def __init__(self, seconds: float, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self._buffer = np.zeros((max(1, int(seconds * sample_rate)), 2), dtype=np.float32)
        self._written = 0  # frames ever written
        self._lock = threading.Lock()

    def write(self, block: np.ndarray) -> None:
        """A (frames, 2) block: int16 or float."""
        if block.dtype == np.int16:
            block = block.astype(np.float32) / 32768.0
        capacity = len(self._buffer)
        with self._lock:
            block = block[-capacity:]
            start = self._written % capacity
            first = min(len(block), capacity - start)
            self._buffer[start:start + first] = block[:first]
            self._buffer[:len(block) - first] = block[first:]
            self._written += len(block)

    @property
    def frames_written(self) -> int:
        with self._lock:
            return self._written

    def samples(self, since: int = 0) -> np.ndarray:
        """Frames written since frame number `since` (as counted by frames_written), oldest first;
        those no longer held are left out."""
        capacity = len(self._buffer)
        with self._lock:
            count = min(self._written - max(0, since), capacity, self._written)
            if count <= 0:
                return np.zeros((0, 2), dtype=np.float32)
            end = self._written % capacity
            indexes = (np.arange(end - count, end)) % capacity
            return self._buffer[indexes].copy()

    def clear(self) -> None:
        with self._lock:
            self._written = 0


class NoAudioDevice(Exception):
    """No audio driver could open a device; str() is a one-line reason."""


class DriverOutput:
    """The synth playing through one of FluidSynth's audio drivers. With a tap, the driver calls us
    for each period (Python in the audio thread: the price of knowing what was played)."""

    def __init__(self, engine: SynthEngine, driver: str, device: str | None, tap: AudioTap | None):
        self._engine = engine
        self._fluidsynth = engine.fluidsynth
        self.driver, self.device, self.tap = driver, device, tap
        engine.setting("audio.driver", driver)
        engine.setting("audio.period-size", PERIOD_FRAMES)
        engine.setting("audio.periods", PERIODS)
        if driver == "jack":
            engine.setting("audio.jack.autoconnect", 1)
        if device:
            engine.setting(f"audio.{driver}.device", device)
        take_fluidsynth_errors()
        with _no_jack_autostart():
            self._driver = self._open(tap)
        errors = take_fluidsynth_errors()
        if not self._driver:
            raise NoAudioDevice(f"{_DRIVER_LABELS.get(driver, driver)}: " + (errors[-1] if errors else "failed"))
        rate = engine.follow_driver_rate(errors)  # JACK makes the synth follow the server's rate
        if tap is not None:
            tap.sample_rate = rate
        log.info("built-in synth: audio through %s%s", driver, f" ({device})" if device else "")

    def _open(self, tap: AudioTap | None):
        fluidsynth, library = self._fluidsynth, self._fluidsynth._fl
        if tap is None:
            return fluidsynth.new_fluid_audio_driver(self._engine.settings_handle, self._engine.handle)
        buffers = ctypes.POINTER(ctypes.POINTER(ctypes.c_float))
        function_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, buffers,
                                         ctypes.c_int, buffers)
        library.fluid_synth_process.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, buffers,
                                                ctypes.c_int, buffers]
        library.new_fluid_audio_driver2.argtypes = [ctypes.c_void_p, function_type, ctypes.c_void_p]
        library.new_fluid_audio_driver2.restype = ctypes.c_void_p
        synth = self._engine.handle

        def render(_data, frames, n_fx, fx, n_out, out):
            for channel in range(n_out):  # fluid_synth_process adds to what is there
                ctypes.memset(out[channel], 0, frames * 4)
            result = library.fluid_synth_process(synth, frames, n_fx, fx, n_out, out)
            if n_out >= 2:
                left = np.ctypeslib.as_array(out[0], (frames,))
                right = np.ctypeslib.as_array(out[1], (frames,))
                tap.write(np.stack([left, right], axis=1))
            return result

        self._callback = function_type(render)  # kept: the driver calls it until deleted
        return library.new_fluid_audio_driver2(self._engine.settings_handle, self._callback, None)

    def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver:
            self._fluidsynth.delete_fluid_audio_driver(driver)


@contextlib.contextmanager
def _no_jack_autostart():
    """libjack starts a JACK server when none runs (seconds, and it grabs the sound card): only use one
    that is already there."""
    saved = os.environ.get("JACK_NO_START_SERVER")
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("JACK_NO_START_SERVER", None)
        else:
            os.environ["JACK_NO_START_SERVER"] = saved


class SilentOutput:
    """No audio device: the synth still renders in real time (so its voices live and end as they
    would, and a tap sees the music), block after block at absolute deadlines, into nothing."""

    BLOCK_FRAMES = 512

    def __init__(self, engine: SynthEngine, tap: AudioTap | None, clock: Clock | None = None):
        self._engine, self.tap = engine, tap
        self._clock = clock or MonotonicClock()
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="rnnrbm-silent-audio", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = self.BLOCK_FRAMES / self._engine.sample_rate
        start, blocks = self._clock.now(), 0
        with self._condition:
            while not self._stopping:
                deadline = start + blocks * period
                if self._clock.now() < deadline:
                    self._clock.wait(self._condition, deadline, "silent-audio")
                    continue
                block = self._engine.render(self.BLOCK_FRAMES)
                blocks += 1
                if self.tap is not None:
                    self.tap.write(block)

    def close(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(5.0)


def open_audio_output(engine: SynthEngine, output: str = AUTO, tap: AudioTap | None = None,
                      clock: Clock | None = None):
    """(the output, a one-line notice or None). When `output` cannot be opened (or "auto" finds no
    device), the synth plays silently and the notice says so and what to do."""
    if output == NONE:
        return SilentOutput(engine, tap, clock), None
    if output == AUTO:
        compiled = compiled_drivers()
        candidates = [(d, None) for d in _PLATFORM_DRIVERS.get(_platform_key(), ()) if d in compiled]
    else:
        driver, _, device = output.partition(":")
        candidates = [(driver, device or None)]
    failures = []
    for driver, device in candidates:
        try:
            return DriverOutput(engine, driver, device, tap), None
        except NoAudioDevice as error:
            failures.append(str(error))
    tried = ", ".join(_DRIVER_LABELS.get(d, d) for d, _ in candidates) or "no audio driver in this FluidSynth"
    log.info("no audio device: %s", "; ".join(failures))
    notice = f"No audio device (tried {tried}): the built-in synth plays silently. To hear it, {NO_AUDIO_HELP}."
    return SilentOutput(engine, tap, clock), notice


__all__ = ["AUTO", "NONE", "AudioTap", "DriverOutput", "SilentOutput", "open_audio_output", "audio_outputs",
           "compiled_drivers", "describe_output", "NO_AUDIO_HELP"]
