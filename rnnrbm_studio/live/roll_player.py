"""Playing a given piano-roll (a training piece) on a MIDI output, on the live player's machinery.

RollPlayer is LivePlayer's parts without the model: the roll's frames stand in for the generator,
and the same Schedule (absolute deadlines t0 + n * period on an injected clock), Scheduler thread,
NoteOutput (open notes tracked, velocities by the dynamics rule) and Transport play them. At the end
of the roll, on stop() or on an error, every open note gets its note-off, then All Notes Off.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..music.pianoroll import LOWEST_PITCH
from .clock import Clock, MonotonicClock
from .note_output import NoteOutput
from .output_port import PortError
from .recorder import PlayedFrame, Recorder
from .scheduler import Schedule, Scheduler
from .settings import PlaybackSettings
from .transport import STOP_ERROR, STOPPED, Transport

log = logging.getLogger(__name__)

STOP_FINISHED = "finished"  # the reason on_stopped hears when the whole roll has been played


@dataclass(frozen=True)
class _Frame:
    """A frame as the scheduler takes it from a generator."""

    keys: np.ndarray
    held: None = None  # no musician plays along with a piece


class _RollSource:
    """The generator's two calls the scheduler makes (under the transport's lock): the roll, frame by
    frame, then one silent frame that releases the last notes when the roll's time is up."""

    def __init__(self, roll: np.ndarray, transport: Transport):
        roll = (np.asarray(roll) > 0).astype(np.uint8)
        self._frames = list(roll) + [np.zeros(roll.shape[1], dtype=np.uint8)]
        self._next = 0
        self._transport = transport

    def has_frame_locked(self) -> bool:
        return self._next < len(self._frames)

    def pop_locked(self) -> _Frame:
        frame = _Frame(self._frames[self._next])
        self._next += 1
        if self._next == len(self._frames):  # the closing silence: then the scheduler ends
            transport = self._transport
            if not transport.stopping:
                transport.stopping, transport.stop_reason = True, STOP_FINISHED
        return frame


class RollPlayer:
    """Plays `roll` (T, n_keys) once on `port` with `settings` (tempo, grid, velocity, dynamics,
    channel, program). The caller opens and closes the port. on_error(message) and
    on_stopped(reason) are called from the player's thread ('finished' after the last frame)."""

    def __init__(self, roll: np.ndarray, port, settings: PlaybackSettings, lowest_pitch: int = LOWEST_PITCH, *,
                 start_delay: float = 0.05, clock: Clock | None = None, realtime_priority: bool = True,
                 on_error: Callable[[str], Any] | None = None, on_stopped: Callable[[str], Any] | None = None):
        if port is None:
            raise PortError("no MIDI output chosen to play on")
        roll = np.asarray(roll)
        self.n_frames = int(roll.shape[0])
        self._clock = clock or MonotonicClock()
        self.on_error, self.on_stopped = on_error, on_stopped
        self._transport = Transport(gil_switch_interval=0.001)
        self._schedule = Schedule(settings.frame_period, settings.latency_offset, start_delay)
        self._output = NoteOutput(port, settings, lowest_pitch, roll.shape[1])
        self._recorder = Recorder(roll.shape[1])
        self._scheduler = Scheduler(self._transport, self._schedule, _RollSource(roll, self._transport), self._output,
                                    self._recorder, self._clock, self._finish, realtime_priority)

    @property
    def state(self) -> str:
        with self._transport.lock:
            return self._transport.state

    @property
    def frames_played(self) -> int:
        """Frames of the roll sent so far (the closing silence not counted)."""
        with self._transport.lock:
            return min(self._schedule.next_index, self.n_frames)

    open_notes = property(lambda self: self._output.open_notes, doc="MIDI notes sounding now.")

    def start(self) -> None:
        self._transport.start(lambda: None, self._scheduler.run, on_begin_locked=self._schedule.restart)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop now: note-offs for the open notes, then All Notes Off. Harmless when stopped."""
        self._transport.stop(timeout)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._transport.wait_stopped(timeout)

    def drain_played_frames(self) -> list[PlayedFrame]:
        """The frames played since the last call, oldest first (the closing silence included)."""
        return self._recorder.drain()

    def _finish(self) -> None:
        """The scheduler's last act: silence, then tell the callbacks why it ended."""
        failure = self._output.silence(all_notes_off=True)
        if failure:
            log.warning("while stopping a piece: %s", failure)
        reason, error = self._transport.finish()
        try:
            if reason == STOP_ERROR and error and self.on_error is not None:
                self.on_error(error)
            if self.on_stopped is not None:
                self.on_stopped(reason)
        except Exception:
            log.exception("a piece player's callback failed")


__all__ = ["RollPlayer", "STOP_FINISHED", "STOPPED"]
