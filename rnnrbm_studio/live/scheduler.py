"""When each frame goes out: absolute deadlines on an injected clock, and the thread that meets them.

Schedule is the arithmetic: frame n is due at `anchor_time + (n - anchor_index) * period +
latency_offset`, never "one period after the last one", so errors do not add up. Scheduler is the
thread: it waits on the transport's condition until the next deadline (so stop, pause and tempo
changes wake it at once), takes the frame from the generator, has NoteOutput send it and the
Recorder keep it. A port with `send_at` (sender.SenderProcessPort) gets each frame `lead_time`
early and sends it at the deadline from its own process.
"""
from __future__ import annotations

import logging
from typing import Callable

from .clock import Clock, raise_this_thread_to_realtime
from .generator import Generator, QueuedFrame
from .note_output import NoteOutput
from .recorder import PlayedFrame, Recorder
from .transport import PAUSED, Transport

log = logging.getLogger(__name__)

# A frame later than this (or than one period, if longer) is counted as an underrun: the grid
# restarts from it rather than rush the frames after it out in a burst.
UNDERRUN_SECONDS = 0.05


class Schedule:
    """The deadlines of frames. Not thread-safe by itself: the player holds the transport's lock."""

    def __init__(self, period: float, latency_offset: float, start_delay: float):
        self.period = float(period)
        self.latency_offset = float(latency_offset)
        self.start_delay = float(start_delay)
        self.next_index = 0  # the next frame to go out, counted over the whole session
        self.underruns = 0
        self._anchor_index, self._anchor_time = 0, 0.0
        self._last_sent: tuple[int, float] | None = None  # (index, nominal time) of the last frame sent
        self.restart_pending = True

    def restart(self) -> None:
        """After a start or resume: the next frame comes one start delay after the scheduler next looks."""
        self.restart_pending = True
        self._last_sent = None

    def anchor_if_restarting(self, now: float) -> None:
        """One start delay from now (later if the latency offset is negative, so that the first send
        deadline is not already past)."""
        if self.restart_pending:
            self._anchor_index = self.next_index
            self._anchor_time = now + self.start_delay + max(0.0, -self.latency_offset)
            self.restart_pending = False
            self._last_sent = None

    def nominal(self, index: int) -> float:
        return self._anchor_time + (index - self._anchor_index) * self.period

    def deadline(self, index: int) -> float:
        return self.nominal(index) + self.latency_offset

    def take(self, now: float) -> tuple[int, float]:
        """The next frame goes out now: its (index, deadline). A frame far past its deadline moves the
        grid to now (an underrun)."""
        index = self.next_index
        deadline = self.deadline(index)
        nominal = deadline - self.latency_offset
        if now - deadline > max(self.period, UNDERRUN_SECONDS):
            self.underruns += 1
            nominal = now - self.latency_offset
            self._anchor_index, self._anchor_time = index, nominal
        self._last_sent = (index, nominal)
        self.next_index = index + 1
        return index, deadline

    def set_period(self, period: float) -> None:
        """A new tempo keeps the beat: the next frame comes one new period after the last one sent."""
        if self._last_sent is not None:
            self._anchor_index, self._anchor_time = self._last_sent
        self.period = float(period)

    def next_due(self) -> tuple[int, float] | None:
        """(index, deadline) of the next frame to go out; None before the grid is anchored."""
        if self.restart_pending:
            return None
        return self.next_index, self.deadline(self.next_index)

    def due_by(self, horizon: float, queued: int) -> int:
        """How many of the next `queued` frames are due by `horizon` (none before the grid is anchored)."""
        if self.restart_pending:
            return 0
        count = 0
        while count < queued and self.deadline(self.next_index + count) <= horizon:
            count += 1
        return count


class Scheduler:
    """The scheduler thread's work; `run` is its body. `on_end` runs as it ends, whatever the reason."""

    def __init__(self, transport: Transport, schedule: Schedule, generator: Generator, output: NoteOutput,
                 recorder: Recorder, clock: Clock, on_end: Callable[[], None], realtime_priority: bool = True):
        self._transport, self._lock = transport, transport.lock
        self._schedule = schedule
        self._generator = generator
        self._output = output
        self._recorder = recorder
        self._clock = clock
        self._on_end = on_end
        self._realtime_priority = realtime_priority
        self.realtime: bool | None = None  # under the lock: whether this thread got real-time priority

    def run(self) -> None:
        realtime = self._realtime_priority and raise_this_thread_to_realtime()
        with self._lock:
            self.realtime = realtime
        try:
            failure = self._output.program_change()
            if failure:
                self._transport.fail(failure)
                return
            while True:
                item, index, deadline, silence = self._next_due()
                if silence:
                    failure = self._output.silence(all_notes_off=False)
                    if failure:
                        self._transport.fail(failure)
                    continue
                if item is None:
                    return
                self._play(item, index, deadline)
        except Exception as error:
            log.exception("the player's scheduler failed")
            self._transport.fail(f"internal error in the player ({type(error).__name__}: {error})")
        finally:
            self._on_end()

    def _next_due(self) -> tuple[QueuedFrame | None, int, float, bool]:
        """Wait for the next frame's deadline. Returns (item, index, deadline, silence_request)."""
        clock, transport, schedule = self._clock, self._transport, self._schedule
        with self._lock:
            paused_silenced = False
            while True:
                if transport.stopping:
                    return None, 0, 0.0, False
                if transport.state == PAUSED:
                    if not paused_silenced and self._output.any_open():
                        return None, 0, 0.0, True
                    paused_silenced = True
                    clock.wait(self._lock, None, "scheduler")
                    continue
                if schedule.restart_pending:
                    schedule.anchor_if_restarting(clock.now())
                    self._lock.notify_all()  # a play-along generator waits for the first deadline
                if not self._generator.has_frame_locked():
                    clock.wait(self._lock, None, "scheduler")
                    continue
                # a port that sends at given times itself is handed each frame that much earlier
                hand_over = schedule.deadline(schedule.next_index) - self._output.lead_time
                now = clock.now()
                if now < hand_over:
                    clock.wait(self._lock, hand_over, "scheduler")
                    continue
                item = self._generator.pop_locked()
                index, deadline = schedule.take(now)
                return item, index, deadline, False

    def _play(self, item: QueuedFrame, index: int, deadline: float) -> None:
        sent_at, onsets, failure = self._output.play_frame(item.keys, deadline, index, self._clock)
        self._recorder.add(PlayedFrame(index=index, keys=item.keys, onsets=onsets, deadline=deadline,
                                       sent_at=sent_at, musician=item.held), self._schedule.period)
        if failure:
            self._transport.fail(failure)


__all__ = ["Schedule", "Scheduler", "UNDERRUN_SECONDS"]
