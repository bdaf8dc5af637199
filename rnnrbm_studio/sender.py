"""The sender process: a MIDI output opened in a small child process that sends at given times.

Measured on a loaded 2-core machine, a training run in the app's process delays a sending thread
through the GIL by up to 15 ms (p99 9 ms); from its own process, at real-time priority where
allowed, the same sends were at most 0.65 ms late. The player hands each frame over a little
before its deadline and this process sends it on time. It also releases every note it started if
the app dies. Started as `python -m rnnrbm_studio.sender`.
"""
from __future__ import annotations

import collections
import logging
import os
import pickle
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
from .ports import ALL_NOTES_OFF, PortError, open_output_port

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ the sender process
SENDER_LEAD_TIME = 0.03  # the player hands frames over this early; GIL stalls up to this are absorbed
SENDER_PROBE_INTERVAL = 0.5


def _pack(record) -> bytes:
    data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack(">I", len(data)) + data


def _unpack_from(stream):
    """The next record from a binary stream, or None at its end."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    data = stream.read(struct.unpack(">I", header)[0])
    return pickle.loads(data)


class SenderProcessPort:
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
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            self._process = subprocess.Popen([sys.executable, "-m", "rnnrbm_studio.sender"],
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
        self.closed = False
        self.name, self.system, self.virtual, self.realtime = name or "", "", virtual, False
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
            except Exception:  # a torn record: the child died mid-write
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
        self._write(("at", 0.0, [bytes(message.bytes())], None))

    def send_at(self, deadline: float, messages: Sequence[mido.Message], tag: int | None = None) -> None:
        self._write(("at", float(deadline), [bytes(m.bytes()) for m in messages], tag))

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

    def __enter__(self) -> "SenderProcessPort":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "virtual " if self.virtual else ""
        return f"<{kind}MIDI output {self.name!r} ({self.system}, in sender process {self._process.pid})>"


class _RecordingPort:
    """The sender's stand-in for a MIDI port in tests and benchmarks: appends 'time hex' lines to a file."""

    system = "recording"
    virtual = False

    def __init__(self, path: str):
        self.name = "recording"
        self._file = open(path, "a", buffering=1)

    def send(self, message: mido.Message) -> None:
        self._file.write(f"{time.perf_counter()!r} {message.hex()}\n")

    def close(self) -> None:
        self._file.close()


def _sender_main() -> int:
    """The child side of SenderProcessPort: `python -m rnnrbm_studio.sender`."""
    # Ctrl+C reaches the whole process group; the parent decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
    spec = opening[1]
    try:
        port = (_RecordingPort(spec["record_to"]) if spec.get("record_to")
                else open_output_port(spec["name"], virtual=spec["virtual"], separate_process=False))
    except PortError as error:
        reply("failed", str(error))
        return 1
    except Exception as error:
        reply("failed", f"cannot open the MIDI output ({type(error).__name__}: {error})")
        return 1
    realtime = raise_this_thread_to_realtime()
    reply("ready", port.name, port.system, port.virtual, realtime)
    _send_until_closed(port, requests, reply)
    return 0


def _send_until_closed(port, requests, reply) -> None:
    queued: collections.deque = collections.deque()
    arrived = threading.Condition()

    def read_requests() -> None:
        while True:
            try:
                request = _unpack_from(requests)
            except Exception:
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
        if not broken:
            try:
                for raw in payload:
                    message = mido.Message.from_bytes(raw)
                    port.send(message)
                    _track_sounding(sounding, message)
            except Exception as error:
                broken = True
                reply("problem", f"sending to the MIDI output {port.name!r} failed ({error})")
        if tag is not None:
            reply("sent", tag, deadline, sent_at)
    if sounding and not broken:  # the parent left notes on: it died, or forgot
        try:
            for message in _release_messages(sounding):
                port.send(message)
        except Exception as error:
            log.warning("releasing notes: %s", error)
    port.close()


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
