"""MIDI output ports in this process: list them, open one by name or a virtual one, notice when one
vanishes. outputs.open_output_port() chooses between such a port and one in a sender process.

Ports go through mido, so MIDO_BACKEND is respected (e.g. `mido.backends.rtmidi/UNIX_JACK`). Without
it, every MIDI system python-rtmidi was built with for this platform is tried in turn: ALSA then
JACK on Linux, CoreMIDI (then JACK) on macOS, Windows MM on Windows.

By default the app plays through a port in a small separate process (sender.SenderProcessPort), which
opens its port with this module; sender.py says why.

Facts measured on Linux that shape this module:
- a system that is not running makes rtmidi raise SystemError ("no ALSA sequencer", "JACK server
  not running?"): it becomes a PortError with a one-line reason;
- when the synth at the other end quits, sending keeps "working": the messages are dropped without
  a word. A port opened here therefore keeps a second rtmidi client as a probe whose get_ports()
  (about 0.05 ms) tells whether the destination still exists; see OutputPort.problem();
- when the JACK server itself quits, that probe is blind too (it lists the ports from the dead
  server's shared memory): a JACK port also holds a jack_watch.JackServerWatch, which libjack tells
  at once;
- creating a JACK client holds the GIL for tens of milliseconds: list ports when the user asks,
  not in a loop while playing.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Iterable

import mido

from .output_port import BaseOutputPort, PortError, all_notes_off_messages

log = logging.getLogger(__name__)

VIRTUAL_PORT_NAME = "RNN-RBM Studio"

_RTMIDI_BACKEND = "mido.backends.rtmidi"
_SYSTEM_LABELS = {"LINUX_ALSA": "ALSA", "UNIX_JACK": "JACK", "MACOSX_CORE": "CoreMIDI",
                  "WINDOWS_MM": "Windows MM", "WINDOWS_UWP": "Windows UWP", "WEB_MIDI_API": "Web MIDI"}
_PLATFORM_APIS = {"linux": ("LINUX_ALSA", "UNIX_JACK"), "darwin": ("MACOSX_CORE", "UNIX_JACK"),
                  "win32": ("WINDOWS_MM",)}

# What `scripts/setup.sh` installs (fluidsynth brings /usr/share/sounds/sf2/default-GM.sf2): the command works
SYNTH_COMMAND = "fluidsynth -a pulseaudio -m alsa_seq /usr/share/sounds/sf2/default-GM.sf2"
NO_PORT_HELP = (f"No MIDI output: the built-in synth plays through the speakers. For another synth, start "
                f"one such as FluidSynth (Linux: {SYNTH_COMMAND}; on JACK: -a jack -m jack) and press Refresh, or play on the virtual "
                f"port \"{VIRTUAL_PORT_NAME}\" (--virtual) and connect it. MIDO_BACKEND chooses the MIDI system.")


# ------------------------------------------------------------------------------- systems
def midi_systems() -> list[mido.Backend]:
    """The mido backends to look for ports in, in order of preference."""
    chosen = os.environ.get("MIDO_BACKEND")
    if chosen:
        return [mido.Backend(chosen)]
    try:
        import rtmidi
    except ImportError:
        return [mido.Backend(_RTMIDI_BACKEND)]  # mido will tell what is missing
    compiled = {_api_name(api) for api in rtmidi.get_compiled_api()}
    platform_key = "linux" if sys.platform.startswith("linux") else sys.platform
    wanted = [api for api in _PLATFORM_APIS.get(platform_key, ()) if api in compiled]
    if not wanted:
        return [mido.Backend(_RTMIDI_BACKEND)]
    return [mido.Backend(_RTMIDI_BACKEND, api=api) for api in wanted]


def system_label(backend: mido.Backend) -> str:
    if backend.api:
        return _SYSTEM_LABELS.get(backend.api, backend.api)
    return backend.name.rsplit(".", 1)[-1]


def _api_name(api_id: int) -> str:
    import rtmidi

    for name in dir(rtmidi):
        if name.startswith("API_") and getattr(rtmidi, name) == api_id:
            return name[4:]
    return str(api_id)


def describe_system_error(label: str, error: BaseException) -> str:
    """A short reason a MIDI system is not usable, e.g. 'JACK: no JACK server is running'."""
    text = " ".join(str(error).split()) or type(error).__name__
    lowered = text.lower()
    if "jack server not running" in lowered or "jack server is not running" in lowered:
        reason = "no JACK server is running"
    elif "alsa sequencer" in lowered:
        reason = "no ALSA sequencer (no sound system, or the snd-seq module is not loaded)"
    elif isinstance(error, ImportError):
        reason = f"the MIDI library is missing ({text})"
    else:
        reason = text
    return f"{label}: {reason}"


def list_output_ports() -> list[str]:
    """Names of the MIDI outputs one can play on, over all MIDI systems.

    Raises PortError when no MIDI system works at all; returns [] when one works but has no port.
    """
    return [name for name, _ in _list_with_systems()]


def _list_with_systems() -> list[tuple[str, mido.Backend]]:
    found: list[tuple[str, mido.Backend]] = []
    failures: list[str] = []
    systems = midi_systems()
    for backend in systems:
        label = system_label(backend)
        try:
            names = backend.get_output_names()
        except Exception as error:  # rtmidi raises SystemError; other backends OSError, ImportError...
            log.info("MIDI system %s unusable: %s", label, error)
            failures.append(describe_system_error(label, error))
            continue
        found.extend((name, backend) for name in names if name not in {n for n, _ in found})
    if len(failures) == len(systems):
        raise PortError("no MIDI system is available (" + "; ".join(failures) + ")")
    return found


# ---------------------------------------------------------------------------------- ports
class OutputPort(BaseOutputPort):
    """A mido output port in this process, with a liveness probe."""

    # rtmidi's JACK client hands messages over in JACK's next process cycle; closing it sooner loses
    # them (seen: the last note-off and All Notes Off never reached FluidSynth). A few periods.
    JACK_DRAIN_SECONDS = 0.1

    def __init__(self, port, system: str, virtual: bool = False, probe=None, watch=None):
        super().__init__(port.name)
        self._port = port
        self.system = system
        self.virtual = virtual
        self._probe = probe
        self._watch = watch  # a JackServerWatch on JACK, else None
        self._last_send = float("-inf")

    def send(self, message: mido.Message) -> None:
        self._port.send(message)
        self._last_send = time.monotonic()

    def problem(self) -> str | None:
        """None while the destination exists; else a one-line reason (the synth quit...)."""
        if self.closed:
            return None
        gone = self._watch.gone() if self._watch is not None else None
        if gone:
            return gone
        if self._probe is None:
            return None
        try:
            present = self.name in self._probe.get_ports()
        except Exception as error:
            return f"cannot reach the MIDI output {self.name!r} ({error})"
        if not present:
            return f"the MIDI output {self.name!r} is gone (did the synth quit?)"
        return None

    def _close(self) -> None:
        if self._watch is not None and self._watch.gone():
            # Nothing left to drain to or to tell; the clients of a dead server are left to the
            # process's end (libjack's client close only talks to the dead socket).
            log.info("not closing MIDI port %r: its JACK server is gone", self.name)
            return
        if self.system == "JACK":
            time.sleep(max(0.0, self._last_send + self.JACK_DRAIN_SECONDS - time.monotonic()))
        for action in (self._port.close, getattr(self._probe, "delete", None),
                       getattr(self._watch, "close", None)):
            if action is None:
                continue
            try:
                action()
            except Exception as error:
                log.warning("closing MIDI port %r: %s", self.name, error)


def virtual_ports_supported(backend: mido.Backend | None = None) -> bool:
    if backend is not None and backend.api:
        return backend.api not in ("WINDOWS_MM", "WINDOWS_UWP", "WEB_MIDI_API")
    return not sys.platform.startswith("win")


def open_port_in_process(name: str | None = None, *, virtual: bool = False) -> OutputPort:
    """Open, in this process, the output called `name` (exact, else a unique case-insensitive part of
    a name), the first output when name is None, or a new virtual output "RNN-RBM Studio" when
    virtual is True. Raises PortError. (The app plays through outputs.open_output_port.)"""
    if virtual:
        return _open_virtual()
    ports = _list_with_systems()
    if not ports:
        raise PortError("no MIDI output port found: start a synth (e.g. FluidSynth) or use the virtual port")
    if name is None:
        chosen, backend = ports[0]
    else:
        chosen, backend = _match(name, ports)
    try:
        port = backend.open_output(chosen)
    except Exception as error:
        raise PortError(f"cannot open MIDI output {chosen!r} ({' '.join(str(error).split())})") from None
    log.info("opened MIDI output %r (%s)", chosen, system_label(backend))
    return OutputPort(port, system_label(backend), probe=_make_probe(backend, port), watch=_make_watch(backend, port))


def _match(name: str, ports: list[tuple[str, mido.Backend]]) -> tuple[str, mido.Backend]:
    for candidate in ports:
        if candidate[0] == name:
            return candidate
    partial = [candidate for candidate in ports if name.lower() in candidate[0].lower()]
    if len(partial) == 1:
        return partial[0]
    available = ", ".join(repr(n) for n, _ in ports)
    if partial:
        raise PortError(f"MIDI output name {_shown(name)} is ambiguous; it matches "
                        f"{', '.join(repr(n) for n, _ in partial)}")
    raise PortError(f"no MIDI output named {_shown(name)}; available: {available}")


def _shown(name: str, limit: int = 80) -> str:
    """A name as an error message quotes it: repr (a newline or an undecodable byte shows as an
    escape, so the message stays one line) and cut short (a name of 100,000 characters is a typo)."""
    return repr(name) if len(name) <= limit else repr(name[:limit]) + f"... ({len(name)} characters)"


def _open_virtual() -> OutputPort:
    failures = []
    for backend in midi_systems():
        label = system_label(backend)
        if not virtual_ports_supported(backend):
            failures.append(f"{label}: virtual ports are not supported")
            continue
        try:
            port = backend.open_output(VIRTUAL_PORT_NAME, virtual=True, client_name=VIRTUAL_PORT_NAME)
        except Exception as error:
            failures.append(describe_system_error(label, error))
            continue
        log.info("opened virtual MIDI output %r (%s)", VIRTUAL_PORT_NAME, label)
        return OutputPort(port, label, virtual=True, watch=_make_watch(backend, port))
    hint = " (on Windows, use a loopback driver such as loopMIDI and choose its port)" if sys.platform.startswith(
        "win") else ""
    raise PortError("cannot create the virtual MIDI port (" + "; ".join(failures) + ")" + hint)


def _make_probe(backend: mido.Backend, port):
    """A second rtmidi client of the same MIDI system, used only to see whether the port still exists."""
    if backend.name != _RTMIDI_BACKEND:
        return None
    api = getattr(port, "api", None) or backend.api
    try:
        import rtmidi

        return rtmidi.MidiOut(getattr(rtmidi, f"API_{api}"), f"{VIRTUAL_PORT_NAME} probe")
    except Exception as error:
        log.warning("cannot watch MIDI output %r for disappearance: %s", port.name, error)
        return None


def _make_watch(backend: mido.Backend, port):
    """A JackServerWatch for a port on JACK (see jack_watch), else None."""
    if backend.name != _RTMIDI_BACKEND or (getattr(port, "api", None) or backend.api) != "UNIX_JACK":
        return None
    from .jack_watch import JackServerWatch

    return JackServerWatch.open(f"{VIRTUAL_PORT_NAME} watch")


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True):
    """Hide what libjack and alsa-lib print on the process's stderr (file descriptor 2) while
    looking for a MIDI system that is not there ("Cannot connect to server socket...", "ALSA lib
    seq_hw.c..."): our own one-line reason says it better. For command-line use: it silences the
    whole process's stderr for that moment."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ---------------------------------------------------------------------------------- panic
def panic(port, channels: Iterable[int] = range(16)) -> None:
    """Silence everything on a port: All Notes Off and note-offs for all keys on all channels."""
    messages = all_notes_off_messages(channels)
    if hasattr(port, "send_at"):
        port.send_at(0.0, messages)  # one request to the sender process, not 2064
        return
    for message in messages:
        port.send(message)
