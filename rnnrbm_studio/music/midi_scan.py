"""A quick walk over a Standard MIDI File's bytes that bounds what mido will build from them.

mido builds a Python object for every event (about 4 us and 400 bytes each here, all of them before
the caller sees one) and checks system-exclusive data byte by byte (about 0.3 us per byte): a 15 MB
file of 5 million events took 155 s and 4.2 GB. `check_midi_cost` walks the bytes exactly as mido's
reader frames them (chunk headers, variable-length numbers, running status, meta and sysex lengths),
counting, and refuses a file once it is over the caps, without building anything (0.6 us per event).
Where mido would raise, it stops counting and lets mido give its own reason, so every file within the
caps reads exactly as mido alone reads it; the one malformation it refuses itself is a variable-length number
longer than the SMF's 4 bytes, which mido would decode at a cost growing with its square.
"""
from __future__ import annotations

from mido.messages.specs import SPEC_BY_STATUS
from mido.midifiles.midifiles import MAX_MESSAGE_LENGTH

from ..errors import StudioError

# Chosen so that the worst file within the caps is read in about 2.4 s and 175 MB on these 2-core
# machines at load 2-3 (benchmarks/bench_hostile_files.py): within 5 s and 500 MB with room to spare.
# Real files are far below: the largest Nottingham file has 4,311 events, the 6-minute pop song in
# the MIDI oddities 13,050; real-world files rarely exceed 200,000.
MAX_EVENTS = 300_000  # messages, meta events and tracks, as mido counts them
MAX_SYSEX_BYTES = 1_000_000  # ~0.3 s; real files carry a few bytes (a GM reset) to some kilobytes
MAX_NUMBER_BYTES = 4  # the SMF limit for a variable-length number; mido reads any length (quadratic)

# Bytes after the status byte of each status mido knows; None: sysex (a length follows).
_DATA_BYTES = {status: (None if spec["type"] == "sysex" else spec["length"] - 1)
               for status, spec in SPEC_BY_STATUS.items()}


class MidiTooCostly(StudioError):
    """A file over the event or sysex caps, or with an over-long number; str() is a one-line reason."""


class _Stop(Exception):
    """mido raises at this point (the bytes end, an unknown status...): counting can stop here."""


def check_midi_cost(data: bytes, spent: int = 0) -> int:
    """spent plus the events mido will build from data; raises MidiTooCostly once that is over
    MAX_EVENTS (spent: what an earlier parse of the same file cost)."""
    counter = _EventCounter(data, MAX_EVENTS, spent)
    try:
        counter.walk()
    except _Stop:
        pass
    return counter.events


class _EventCounter:
    def __init__(self, data: bytes, budget: int, spent: int):
        self.data = data
        self.budget = budget
        self.events = spent
        self.sysex_bytes = 0

    def walk(self) -> None:
        data = self.data
        if len(data) < 14 or data[:4] != b"MThd":
            raise _Stop  # mido: EOFError or "MThd not found"
        header_size = int.from_bytes(data[4:8], "big")
        if header_size < 6:
            raise _Stop  # mido: EOFError (it needs 6 header bytes)
        n_tracks = int.from_bytes(data[10:12], "big", signed=True)  # mido reads it signed
        position = min(8 + header_size, len(data))
        for _ in range(max(0, n_tracks)):
            self._count(1)
            position = self._track(position)

    def _count(self, events: int) -> None:
        self.events += events
        if self.events > self.budget:
            raise MidiTooCostly(f"more than {self.budget:,} MIDI events (the limit bounds the time and "
                                f"memory one file can take)")

    def _number(self, position: int) -> tuple[int, int]:
        """A variable-length number at position: (value, position after it)."""
        data = self.data
        value = 0
        for length in range(1, MAX_NUMBER_BYTES + 1):
            if position >= len(data):
                raise _Stop  # mido: EOFError
            byte = data[position]
            position += 1
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                return value, position
        raise MidiTooCostly(f"a variable-length number longer than {MAX_NUMBER_BYTES} bytes")

    def _track(self, position: int) -> int:
        data = self.data
        end_of_data = len(data)
        if position + 8 > end_of_data:
            raise _Stop  # mido: EOFError
        if data[position:position + 4] != b"MTrk":
            raise _Stop  # mido: "no MTrk header at start of track" (the caller may retry without it)
        size = int.from_bytes(data[position + 4:position + 8], "big")
        start = position = position + 8
        end = start + size
        last_status = None
        data_bytes = _DATA_BYTES
        events = 0
        # mido stops exactly when it has read `size` bytes; a message running past the end makes it
        # read on (into the next chunk) until the data ends, and so does this loop.
        try:
            while position != end:
                events += 1
                if events >= 4096:  # counted in batches: this loop is the hot path
                    self._count(events)
                    events = 0
                _, position = self._number(position)
                if position >= end_of_data:
                    raise _Stop
                status = data[position]
                position += 1
                peeked = 0
                if status < 0x80:
                    if last_status is None:
                        raise _Stop  # mido: "running status without last_status"
                    status, peeked = last_status, 1
                elif status != 0xFF:
                    last_status = status  # as mido: anything but a meta event sets the running status
                if status == 0xFF:
                    if position >= end_of_data:
                        raise _Stop
                    length, position = self._number(position + 1)
                    position = self._payload(position, length)
                elif status in (0xF0, 0xF7):  # mido drops a peeked data byte here and reads a length
                    length, position = self._number(position)
                    position = self._payload(position, length)
                    self.sysex_bytes += length
                    if self.sysex_bytes > MAX_SYSEX_BYTES:
                        raise MidiTooCostly(f"more than {MAX_SYSEX_BYTES:,} bytes of system-exclusive data")
                else:
                    length = data_bytes.get(status)
                    if length is None:
                        raise _Stop  # mido: "undefined status byte"
                    position = self._payload(position, max(0, length - peeked))
        except _Stop:
            self.events += events  # what mido builds before it raises counts too
            raise
        self._count(events)
        return position

    def _payload(self, position: int, length: int) -> int:
        if length > MAX_MESSAGE_LENGTH or position + length > len(self.data):
            raise _Stop  # mido: "Message length ... exceeds maximum length", or EOFError
        return position + length
