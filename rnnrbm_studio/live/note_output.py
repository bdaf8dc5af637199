"""What sounds on the port: the open notes, and the messages that start and end them.

Every note-on gets its note-off: a frame goes out as its difference from the notes open now
(note-offs for released keys, then note-ons for new ones), and on stop, pause, error, a change of
port or channel the open notes get their note-offs, then All Notes Off on the channel. The port and
the open notes are under this object's own lock, which the player takes after the transport's lock,
never before. Methods report a failed send as a one-line reason (None when all went out); the
player decides what a failure stops.
"""
from __future__ import annotations

import threading

import mido
import numpy as np

from ..music.dynamics import step_velocities
from .clock import Clock
from .output_port import ALL_NOTES_OFF, all_notes_off_messages
from .settings import PlaybackSettings


class NoteOutput:
    def __init__(self, port, settings: PlaybackSettings, lowest_pitch: int, n_keys: int):
        self._lock = threading.RLock()
        # --- under _lock
        self._port = port
        self._open = np.zeros(n_keys, dtype=bool)
        self._lowest_pitch = int(lowest_pitch)
        self._velocity, self._channel, self._program = settings.velocity, settings.channel, settings.program
        self._restrike = settings.restrike
        self._dynamics, self._steps_per_beat = settings.dynamics, settings.steps_per_beat
        self._messages: dict[tuple[str, int, int, int], mido.Message] = {}

    # ---------------------------------------------------------------------------- looking
    @property
    def port(self):
        with self._lock:
            return self._port

    @property
    def lead_time(self) -> float:
        """How long before a deadline the port wants its messages (0 unless it sends at given times)."""
        return getattr(self._port, "lead_time", 0.0)

    @property
    def open_notes(self) -> list[int]:
        """MIDI notes sounding now (sent note-on, no note-off yet)."""
        with self._lock:
            return [self._lowest_pitch + int(k) for k in np.flatnonzero(self._open)]

    def any_open(self) -> bool:
        with self._lock:
            return bool(self._open.any())

    def problem(self) -> str | None:
        """The port's own word on whether its destination still exists (ports without problem(): None)."""
        with self._lock:
            port = self._port
        probe = getattr(port, "problem", None)
        if probe is None:
            return None
        try:
            return probe()
        except Exception as error:
            return f"cannot check the MIDI output ({error})"

    # ---------------------------------------------------------------------------- playing
    def play_frame(self, keys: np.ndarray, deadline: float, tag: int,
                   clock: Clock) -> tuple[float, np.ndarray, str | None]:
        """Send a frame's difference, due at `deadline`. `tag` is the frame's step number in the
        session, which places it in the bar for the dynamics. Returns (sent_at, keys struck, failure)."""
        pressed = keys.astype(bool)
        with self._lock:
            sent_at = clock.now()
            open_notes = self._open
            releases = open_notes.copy() if self._restrike else open_notes & ~pressed
            strikes = pressed.copy() if self._restrike else pressed & ~open_notes
            velocity = step_velocities(pressed, tag or 0, self._steps_per_beat, self._velocity, self._dynamics)
            messages = ([self._message("note_off", key, 0) for key in np.flatnonzero(releases)]
                        + [self._message("note_on", key, int(velocity[key])) for key in np.flatnonzero(strikes)])
            # counted as sounding before it is sent: if sending fails, a note-off too many is harmless
            open_notes &= ~releases
            open_notes |= strikes
            failure = self._send_locked(messages, deadline, tag)
        return sent_at, strikes, failure

    def program_change(self) -> str | None:
        with self._lock:
            return self._send_locked([self._program_change_locked()])

    def silence(self, all_notes_off: bool = True) -> str | None:
        """Note-offs for the open notes (then All Notes Off on the channel if asked); best effort on a
        dead port."""
        with self._lock:
            return self._silence_locked(all_notes_off)

    def panic(self) -> str | None:
        """All Notes Off and note-offs for every key on all 16 channels, now (nothing without a port)."""
        with self._lock:
            if self._port is None:
                return None
            self._open[:] = False
            return self._send_locked(list(all_notes_off_messages()))

    # ---------------------------------------------------------------------------- changes
    def apply(self, settings: PlaybackSettings, running: bool) -> str | None:
        """New velocity, dynamics, restrike, channel or program: notes open on an old channel are
        released first, and a playing port hears the new program at once."""
        with self._lock:
            self._velocity, self._restrike = settings.velocity, settings.restrike
            self._dynamics, self._steps_per_beat = settings.dynamics, settings.steps_per_beat
            if (settings.channel, settings.program) == (self._channel, self._program):
                return None
            failure = None
            if settings.channel != self._channel and self._port is not None:
                failure = self._silence_locked(all_notes_off=True)
            self._channel, self._program = settings.channel, settings.program
            if running and failure is None and self._port is not None:
                failure = self._send_locked([self._program_change_locked()])
            return failure

    def set_port(self, port, running: bool):
        """Play on `port` from now on; the old one gets note-offs and All Notes Off first (best effort:
        it may be dead). Returns (the old port, a failure of the new one)."""
        with self._lock:
            if self._port is not None:
                self._silence_locked(all_notes_off=True)
            old, self._port = self._port, port
            failure = self._send_locked([self._program_change_locked()]) if running else None
        return old, failure

    # ---------------------------------------------------------------------------- sending
    def _message(self, kind: str, key: int, velocity: int) -> mido.Message:
        note = self._lowest_pitch + int(key)
        cache_key = (kind, self._channel, note, velocity)
        message = self._messages.get(cache_key)
        if message is None:  # building a mido.Message validates every field: cache them
            message = mido.Message(kind, channel=self._channel, note=note, velocity=velocity)
            self._messages[cache_key] = message
        return message

    def _program_change_locked(self) -> mido.Message:
        return mido.Message("program_change", channel=self._channel, program=self._program)

    def _silence_locked(self, all_notes_off: bool) -> str | None:
        messages = [self._message("note_off", key, 0) for key in np.flatnonzero(self._open)]
        if all_notes_off:
            messages.append(mido.Message("control_change", channel=self._channel, control=ALL_NOTES_OFF, value=0))
        self._open[:] = False
        return self._send_locked(messages) if messages else None

    def _send_locked(self, messages: list[mido.Message], deadline: float = 0.0, tag: int | None = None) -> str | None:
        """Send now, or at `deadline` if the port sends at given times itself (send_at; 0 = after what
        it already holds). A one-line failure reason, or None."""
        try:
            send_at = getattr(self._port, "send_at", None)
            if send_at is not None:
                send_at(deadline, messages, tag)
            else:
                for message in messages:
                    self._port.send(message)
        except Exception as error:
            name = getattr(self._port, "name", "")
            text = " ".join(str(error).split()) or type(error).__name__
            return f"sending to the MIDI output {name!r} failed ({text})"
        return None


__all__ = ["NoteOutput"]
