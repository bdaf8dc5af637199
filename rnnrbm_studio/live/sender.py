"""The sender process: a MIDI output opened in a small child process that sends at given times.

Measured on a loaded 2-core machine, a training run in the app's process delays a sending thread
through the GIL by up to 15 ms (p99 9 ms); from its own process, at real-time priority where
allowed, the same sends were at most 0.65 ms late. The player hands each frame over a little
before its deadline and this process sends it on time. It also releases every note it started if
the app dies. Started as `python -m rnnrbm_studio.live.sender`.

Signals: this process stays in the app's process group (a supervisor that kills the group with
SIGKILL takes it along, and it shows with its parent in job control) but ignores SIGINT, SIGTERM
and SIGHUP. Ctrl+C, a terminal closing or `kill -TERM -PGID` reach the whole group; the app stops
cleanly and closes the pipe, or dies, which closes it too. Either way this process outlives it
just long enough to send the note-offs and All Notes Off, then exits: it never outlives the pipe.

The pipe carries length-prefixed JSON records (MIDI messages as lists of byte values), never
pickles: both ends are ours, but nothing in the package unpickles.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import mido

from .clock import raise_this_thread_to_realtime
from .output_port import ALL_NOTES_OFF, BaseOutputPort, PortError
from .ports import open_port_in_process

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ the sender process
SENDER_LEAD_TIME = 0.03  # the player hands frames over this early; GIL stalls up to this are absorbed
SENDER_PROBE_INTERVAL = 0.25  # with the player's own probe, a vanished synth is noticed within 0.5 s
_MAX_RECORD = 1 << 24  # bytes; a panic (2,064 messages) is about 25 KB
# Python ignores SIGPIPE itself (a write to a gone parent raises); these would kill the sender mid-note
_IGNORED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class RecordError(ValueError):
    """A record on the pipe that is not one of ours (a torn write, a child that died mid-record)."""


def _pack(record) -> bytes:
    """A record, a tuple of JSON values (MIDI messages as lists of byte values), as 4 length bytes
    and JSON. ensure_ascii keeps a port name that came from undecodable bytes (lone surrogates) intact."""
    data = json.dumps(list(record), separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return struct.pack(">I", len(data)) + data


def _unpack_from(stream):
    """The next record (a list whose first item is its kind) from a binary stream, or None at its end.
    Raises RecordError for anything that is not a whole record."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    size = struct.unpack(">I", header)[0]
    if size > _MAX_RECORD:
        raise RecordError(f"a record of {size} bytes")
    data = stream.read(size)
    if len(data) < size:
        raise RecordError("a torn record")
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise RecordError(str(error)) from None
    if not isinstance(record, list) or not record or not isinstance(record[0], str):
        raise RecordError("not a record")
    return record


class SenderProcessPort(BaseOutputPort):
    """A MIDI output opened in a small child process (no torch), which sends at given times.

    send_at(deadline, messages, tag) queues messages to go out at `deadline` (time.perf_counter:
    one monotonic clock for all processes of the machine); send(message) queues one for right after
    everything queued before, so order is kept: a note-off sent after a frame never overtakes it.
    The child reports what it sent (send_report()) and any trouble with the port (problem()). When
    the pipe from this process closes (close(), or this process died), the child sends note-offs for
    the notes it left sounding and All Notes Off on their channels, then exits.
    """

    lead_time = SENDER_LEAD_TIME

    def __init__(self, name: str | None = None, *, virtual: bool = False, record_to: str | None = None,
                 start_timeout: float = 20.0):
        super().__init__(name or "")
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding rnnrbm_studio/
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self._process = subprocess.Popen([sys.executable, "-m", "rnnrbm_studio.live.sender"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        except OSError as error:
            raise PortError(f"cannot start the MIDI sender process ({error})") from None
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._started = threading.Event()
        self._reports: collections.deque = collections.deque(maxlen=100_000)
        self._problem: str | None = None
        self._failure: str | None = None
        self._closing = False
        self.virtual, self.realtime = virtual, False
        self._reader = threading.Thread(target=self._read_replies, name="rnnrbm-sender-replies", daemon=True)
        self._reader.start()
        try:
            self._write(("open", {"name": name, "virtual": virtual, "record_to": record_to}))
        except OSError:
            pass  # the reader sees the child end and says why
        if not self._started.wait(start_timeout):
            self._end()
            raise PortError("the MIDI sender process did not start in time")
        if self._failure is not None:
            self._end()
            raise PortError(self._failure)

    def _read_replies(self) -> None:
        stream = self._process.stdout
        while True:
            try:
                reply = _unpack_from(stream)
            except (RecordError, OSError, ValueError):  # a torn record: the child died mid-write
                reply = None
            if reply is None:
                break
            kind = reply[0]
            if kind == "sent":
                self._reports.append(tuple(reply[1:]))
            elif kind == "ready":
                self.name, self.system, self.virtual, self.realtime = reply[1:5]
                self._started.set()
            elif kind == "failed":
                self._failure = reply[1]
                self._started.set()
            elif kind == "problem":
                with self._state_lock:
                    self._problem = self._problem or reply[1]
        status = self._process.wait()
        with self._state_lock:
            if not self._closing and self._failure is None and self._problem is None:
                self._problem = f"the MIDI sender process ended unexpectedly (exit status {status})"
        if not self._started.is_set():
            self._failure = self._failure or self._problem or "the MIDI sender process failed to start"
            self._started.set()

    def _write(self, record) -> None:
        data = _pack(record)
        with self._write_lock:
            try:
                self._process.stdin.write(data)
                self._process.stdin.flush()
            except (OSError, ValueError) as error:
                raise OSError(self.problem() or f"the MIDI sender process is gone ({error})") from None

    def send(self, message: mido.Message) -> None:
        self._write(("at", 0.0, [message.bytes()], None))

    def send_at(self, deadline: float, messages: Sequence[mido.Message], tag: int | None = None) -> None:
        self._write(("at", float(deadline), [m.bytes() for m in messages], tag))

    def problem(self) -> str | None:
        with self._state_lock:
            return self._problem

    def send_report(self) -> list[tuple[int, float, float]]:
        """(tag, deadline, sent_at) of the tagged sends done since the last call."""
        report = []
        while self._reports:
            report.append(self._reports.popleft())
        return report

    def close(self, timeout: float = 5.0) -> None:
        """Let the child send what is queued, release its notes and exit."""
        if self.closed:
            return
        self.closed = True
        with self._state_lock:
            self._closing = True
        try:
            self._write(("close",))
            self._process.stdin.close()
        except OSError:
            pass
        self._end(timeout)

    def _end(self, timeout: float = 5.0) -> None:
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the MIDI sender process did not exit; killing it")
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout)
        for stream in (self._process.stdin, self._process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def __repr__(self) -> str:
        kind = "virtual " if self.virtual else ""
        return f"<{kind}MIDI output {self.name!r} ({self.system}, in sender process {self._process.pid})>"


class _RecordingPort(BaseOutputPort):
    """The sender's stand-in for a MIDI port in tests and benchmarks: appends 'time hex' lines to a file."""

    name = "recording"
    system = "recording"

    def __init__(self, path: str):
        super().__init__()
        self._file = open(path, "a", buffering=1)

    def send(self, message: mido.Message) -> None:
        self._file.write(f"{time.perf_counter()!r} {message.hex()}\n")

    def _close(self) -> None:
        self._file.close()


def _sender_main() -> int:
    """The child side of SenderProcessPort: `python -m rnnrbm_studio.live.sender`."""
    # Ctrl+C, a closed terminal (SIGHUP) and SIGTERM reach the whole process group; the parent
    # decides when this process stops (the module docstring says why it is not in its own session).
    for name in _IGNORED_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the replies
    requests = sys.stdin.buffer
    reply_lock = threading.Lock()

    def reply(*fields) -> None:
        with reply_lock:
            try:
                replies.write(_pack(fields))
            except OSError:
                pass  # the parent is gone; the end of its pipe tells the main loop

    opening = _unpack_from(requests)
    if not opening or opening[0] != "open":
        return 2
    spec = opening[1] if len(opening) > 1 and isinstance(opening[1], dict) else {}
    from .jack_watch import route_libjack_messages_to_logging

    route_libjack_messages_to_logging()  # a server going away is told by one line, not libjack's ten
    try:
        port = (_RecordingPort(spec["record_to"]) if spec.get("record_to")
                else open_port_in_process(spec.get("name"), virtual=bool(spec.get("virtual"))))
    except PortError as error:
        reply("failed", str(error))
        return 1
    except Exception as error:
        reply("failed", f"cannot open the MIDI output ({type(error).__name__}: {error})")
        return 1
    realtime = raise_this_thread_to_realtime()
    reply("ready", port.name, port.system, port.virtual, realtime)
    _send_until_closed(port, requests, reply)
    # The port is closed. Skip the interpreter's finalisers: they would close the MIDI clients once
    # more, and the clients of a JACK server that died must not be touched again.
    sys.stderr.flush()
    os._exit(0)


def _send_until_closed(port, requests, reply) -> None:
    queued: collections.deque = collections.deque()
    arrived = threading.Condition()

    def read_requests() -> None:
        while True:
            try:
                request = _checked_request(_unpack_from(requests))
            except (RecordError, OSError, ValueError) as error:
                log.warning("the MIDI sender stops: unreadable request from the app (%s)", error)
                request = None
            with arrived:
                queued.append(request or ("close",))
                arrived.notify()
            if request is None or request[0] == "close":
                return

    threading.Thread(target=read_requests, name="sender-requests", daemon=True).start()
    sounding: set[tuple[int, int]] = set()
    broken = False
    next_probe = time.perf_counter() + SENDER_PROBE_INTERVAL
    while True:
        with arrived:
            while True:
                now = time.perf_counter()
                if now >= next_probe:
                    request = None
                    break
                if queued and (queued[0][0] != "at" or queued[0][1] <= now):
                    request = queued.popleft()
                    break
                wake = min(queued[0][1], next_probe) if queued else next_probe
                arrived.wait(wake - now)
        if request is None:
            next_probe = now + SENDER_PROBE_INTERVAL
            problem = None if broken or not hasattr(port, "problem") else port.problem()
            if problem:
                broken = True
                reply("problem", problem)
            continue
        if request[0] == "close":
            break
        _, deadline, payload, tag = request
        sent_at = time.perf_counter()
        # Even after a problem every message is tried: the player's note-offs follow its report,
        # and a port that only looked gone (a probe that failed once) must still get them.
        for raw in payload:
            try:
                message = mido.Message.from_bytes(raw)
            except Exception as error:  # mido raises ValueError, TypeError, IndexError... on bad bytes
                log.warning("skipping a malformed MIDI message from the app: %s", error)
                continue
            try:
                port.send(message)
            except Exception as error:
                if not broken:
                    broken = True
                    reply("problem", f"sending to the MIDI output {port.name!r} failed ({error})")
                continue  # a note-off that failed leaves its note counted: released again at the end
            _track_sounding(sounding, message)
        if tag is not None:
            reply("sent", tag, deadline, sent_at)
    _release(port, sounding)  # the parent left notes on: it died, or forgot
    port.close()


def _release(port, sounding: set[tuple[int, int]]) -> None:
    """Best effort: a note-off for each note still sounding, then All Notes Off on their channels."""
    failures = 0
    for message in _release_messages(sounding) if sounding else ():
        try:
            port.send(message)
        except Exception as error:
            failures += 1
            if failures == 1:
                log.warning("releasing notes: %s", error)


def _checked_request(request):
    """A request from the app as the main loop expects it: ["at", deadline, [[byte, ...], ...], tag]
    or ["close"] (None stays None: the pipe's end). Raises RecordError otherwise."""
    if request is None or request == ["close"]:
        return request
    if (request[0] == "at" and len(request) == 4 and isinstance(request[1], (int, float))
            and isinstance(request[2], list) and (request[3] is None or isinstance(request[3], int))):
        return request
    raise RecordError(f"an unexpected request {str(request)[:80]}")


def _track_sounding(sounding: set[tuple[int, int]], message: mido.Message) -> None:
    if message.type == "note_on" and message.velocity > 0:
        sounding.add((message.channel, message.note))
    elif message.type in ("note_on", "note_off"):
        sounding.discard((message.channel, message.note))
    elif message.type == "control_change" and message.control == ALL_NOTES_OFF:
        sounding.difference_update({key for key in sounding if key[0] == message.channel})


def _release_messages(sounding: set[tuple[int, int]]) -> list[mido.Message]:
    messages = [mido.Message("note_off", channel=c, note=n, velocity=0) for c, n in sorted(sounding)]
    return messages + [mido.Message("control_change", channel=c, control=ALL_NOTES_OFF, value=0)
                       for c in sorted({c for c, _ in sounding})]


if __name__ == "__main__":
    sys.exit(_sender_main())
