"""MIDI inputs: list them, open one by name (or a virtual one), and read it reliably.

The same rules as outputs (ports.py): an exact name or a unique, case-insensitive part of one, over
every MIDI system of the platform (MIDO_BACKEND chooses one), one-line PortErrors. A virtual input
"RNN-RBM Studio In" where the system allows (ALSA, JACK, CoreMIDI; not Windows).

Reading: mido's input callbacks run Python inside JACK's thread and dropped 379 of 1000 events in a
burst on a loaded machine (../shared/PLATFORM.md); a raw rtmidi.MidiIn with a large queue, polled
with get_message() from a thread of ours, lost none. Each event is stamped, as it is read, with the
player's clock (clock.py), so the musician's notes and the scheduler's deadlines are on one scale;
the stamp is at most one poll interval (1 ms) late. Listeners (the frame folder, the clock follower,
the controller map) are called on that thread with (time, message bytes) and must be quick.

A keyboard unplugged (its port gone) or the JACK server stopping is reported by problem(), asked a
few times a second by the player, as for outputs.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .clock import Clock, MonotonicClock
from .output_port import PortError
from .ports import _shown, describe_system_error, midi_systems, system_label, virtual_ports_supported

log = logging.getLogger(__name__)

VIRTUAL_INPUT_NAME = "RNN-RBM Studio In"
LISTENER_NAME = "RNN-RBM Studio listener"
POLL_INTERVAL = 0.001
QUEUE_SIZE = 4096
PROBE_INTERVAL = 0.25

Listener = Callable[[float, list], object]


def _rtmidi_api(backend) -> int | None:
    """rtmidi's number of a mido backend's system (None: not an rtmidi backend, or no API named)."""
    import rtmidi

    if backend.name != "mido.backends.rtmidi":
        return None
    if not backend.api:
        return rtmidi.API_UNSPECIFIED
    return getattr(rtmidi, f"API_{backend.api}", None)


def _systems() -> list[tuple[str, int]]:
    """(label, rtmidi API) of each MIDI system to look in, in order of preference."""
    found = []
    for backend in midi_systems():
        try:
            api = _rtmidi_api(backend)
        except ImportError as error:
            raise PortError(f"the MIDI library is missing ({error})") from None
        if api is not None:
            found.append((system_label(backend), api))
    return found


def _new_client(api: int, name: str):
    import rtmidi

    return rtmidi.MidiIn(api, name, queue_size_limit=QUEUE_SIZE)


def _list_with_systems() -> list[tuple[str, str, int]]:
    """(port name, system label, rtmidi API) of every input; PortError when no MIDI system works."""
    found: list[tuple[str, str, int]] = []
    failures: list[str] = []
    systems = _systems()
    for label, api in systems:
        try:
            client = _new_client(api, f"{VIRTUAL_INPUT_NAME} list")
            try:
                names = client.get_ports()
            finally:
                client.delete()
        except Exception as error:  # rtmidi raises SystemError when the system is not running
            log.info("MIDI system %s unusable for input: %s", label, error)
            failures.append(describe_system_error(label, error))
            continue
        known = {name for name, _, _ in found}
        found.extend((name, label, api) for name in names if name not in known)
    if not systems or len(failures) == len(systems):
        raise PortError("no MIDI system is available (" + ("; ".join(failures) or "none usable") + ")")
    return found


def list_input_ports() -> list[str]:
    """Names of the MIDI inputs one can play into the app from. PortError when no MIDI system works."""
    return [name for name, _, _ in _list_with_systems()]


def open_input(name: str | None = None, *, virtual: bool = False, clock: Clock | None = None,
               poll_interval: float = POLL_INTERVAL) -> "MidiInput":
    """Open the input called `name` (exact, else a unique case-insensitive part of a name), the first
    input when name is None, or a new virtual input "RNN-RBM Studio In" when virtual. Events are
    stamped with `clock` (the player's). Raises PortError. Reading starts at once."""
    clock = clock or MonotonicClock()
    if virtual:
        return _open_virtual(clock, poll_interval)
    inputs = _list_with_systems()
    if not inputs:
        raise PortError("no MIDI input found: connect a keyboard, or use the virtual input "
                        f"{VIRTUAL_INPUT_NAME!r} and connect to it")
    if name is None:
        chosen = inputs[0]
    else:
        exact = [entry for entry in inputs if entry[0] == name]
        partial = exact or [entry for entry in inputs if name.lower() in entry[0].lower()]
        if len(partial) != 1:
            listed = ", ".join(repr(entry[0]) for entry in (partial or inputs))
            if partial:
                raise PortError(f"MIDI input name {_shown(name)} is ambiguous; it matches {listed}")
            raise PortError(f"no MIDI input named {_shown(name)}; available: {listed}")
        chosen = partial[0]
    port_name, label, api = chosen
    try:
        client = _new_client(api, LISTENER_NAME)  # not the virtual input's name: others would take it for it
        names = client.get_ports()
        client.open_port(names.index(port_name), "in")
    except Exception as error:
        raise PortError(f"cannot open MIDI input {port_name!r} ({' '.join(str(error).split())})") from None
    log.info("opened MIDI input %r (%s)", port_name, label)
    return MidiInput(client, port_name, label, api, clock, poll_interval)


def _open_virtual(clock: Clock, poll_interval: float) -> "MidiInput":
    import mido

    failures = []
    for label, api in _systems():
        if not virtual_ports_supported(mido.Backend("mido.backends.rtmidi", api=_api_label(api))):
            failures.append(f"{label}: virtual ports are not supported")
            continue
        try:
            client = _new_client(api, VIRTUAL_INPUT_NAME)
            client.open_virtual_port(VIRTUAL_INPUT_NAME)
        except Exception as error:
            failures.append(describe_system_error(label, error))
            continue
        log.info("opened virtual MIDI input %r (%s)", VIRTUAL_INPUT_NAME, label)
        return MidiInput(client, VIRTUAL_INPUT_NAME, label, api, clock, poll_interval, virtual=True)
    raise PortError("cannot create the virtual MIDI input (" + "; ".join(failures) + ")")


def _api_label(api: int) -> str | None:
    import rtmidi

    for attribute in dir(rtmidi):
        if attribute.startswith("API_") and getattr(rtmidi, attribute) == api:
            return attribute[4:]
    return None


class MidiInput:
    """An open MIDI input read by a polling thread. Close it (or use `with`) when done."""

    def __init__(self, client, name: str, system: str, api: int, clock: Clock,
                 poll_interval: float = POLL_INTERVAL, virtual: bool = False):
        self.name, self.system, self.virtual = name, system, virtual
        self._client = client
        self._clock = clock
        self._poll_interval = float(poll_interval)
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._closed = threading.Event()
        self.received = 0  # events read so far
        self._watch = None
        self._probe = None
        self._next_probe = 0.0
        self._problem: str | None = None
        if system == "JACK":
            from .jack_watch import JackServerWatch

            self._watch = JackServerWatch.open(f"{VIRTUAL_INPUT_NAME} watch")
        if not virtual:
            try:
                self._probe = _new_client(api, f"{VIRTUAL_INPUT_NAME} probe")
            except Exception as error:
                log.warning("cannot watch MIDI input %r for disappearance: %s", name, error)
        client.ignore_types(sysex=True, timing=False, active_sense=True)  # MIDI clock is wanted
        self._thread = threading.Thread(target=self._read, name="rnnrbm-midi-input", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def add_listener(self, listener: Listener) -> None:
        """listener(time, message) for each event from now on, on the input thread."""
        with self._listeners_lock:
            self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_lock:
            self._listeners = [known for known in self._listeners if known != listener]

    def _read(self) -> None:
        client, clock, closed = self._client, self._clock, self._closed
        while not closed.is_set():
            try:
                event = client.get_message()
                while event is not None:
                    now = clock.now()
                    self.received += 1
                    for listener in self._listeners:
                        try:
                            listener(now, event[0])
                        except Exception:
                            log.exception("a MIDI input listener failed")
                    event = client.get_message()
            except Exception as error:  # the client is gone under us
                self._problem = f"reading the MIDI input {self.name!r} failed ({error})"
                return
            closed.wait(self._poll_interval)  # a poll, not a beat: events are stamped when read

    def problem(self) -> str | None:
        """None while the input is there; else a one-line reason (keyboard unplugged, JACK gone)."""
        if self.closed:
            return None
        if self._problem:
            return self._problem
        gone = self._watch.gone() if self._watch is not None else None
        if gone:
            return gone
        if self._probe is None:
            return None
        now = time.monotonic()
        if now < self._next_probe:
            return None
        self._next_probe = now + PROBE_INTERVAL / 2
        try:
            present = self.name in self._probe.get_ports()
        except Exception as error:
            return f"cannot reach the MIDI input {self.name!r} ({error})"
        return None if present else f"the MIDI input {self.name!r} is gone (was the keyboard unplugged?)"

    def close(self) -> None:
        """Stop reading and close the port; closing again does nothing."""
        if self.closed:
            return
        self._closed.set()
        self._thread.join(2.0)
        if self._watch is not None and self._watch.gone():
            log.info("not closing MIDI input %r: its JACK server is gone", self.name)
            return  # libjack crashes closing a client of a dead server
        for action in (self._client.close_port, self._client.delete, getattr(self._probe, "delete", None),
                       getattr(self._watch, "close", None)):
            if action is None:
                continue
            try:
                action()
            except Exception as error:
                log.warning("closing MIDI input %r: %s", self.name, error)

    def __enter__(self) -> "MidiInput":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "virtual " if self.virtual else ""
        return f"<{kind}MIDI input {self.name!r} ({self.system})>"


__all__ = ["MidiInput", "VIRTUAL_INPUT_NAME", "list_input_ports", "open_input"]
