"""Timing for the live player: the real monotonic clock, a fake one that tests drive by hand, and
the two process settings that decide how late a waiting thread wakes up.

The player never sleeps a fixed amount; it waits on a threading.Condition until an absolute
deadline or until another thread notifies it (stop, pause, a tempo change). Both clocks offer
exactly that through `wait(condition, deadline, waiter)`, so a test can advance fake time and
watch where each player thread is waiting, without a single real sleep.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""

    def wait(self, condition: threading.Condition, deadline: float | None, waiter: str = "") -> None:
        """With `condition` held: release it and wait until notified or until `deadline` (None: no
        deadline) has passed on this clock, then hold it again. May return early: callers re-check."""


class MonotonicClock:
    """time.perf_counter: monotonic, system-wide, and of fine resolution on Linux, macOS and Windows."""

    # An upper bound on one wait so that a lost notification can only delay, never hang, a thread.
    MAX_WAIT = 1.0

    def now(self) -> float:
        return time.perf_counter()

    def wait(self, condition: threading.Condition, deadline: float | None, waiter: str = "") -> None:
        if deadline is None:
            condition.wait(self.MAX_WAIT)
            return
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            condition.wait(min(remaining, self.MAX_WAIT))


class FakeClock:
    """A clock that moves only when told to, for tests.

    `advance`/`advance_to` move time and wake every thread waiting on it; `wait_until_waiting`
    blocks the test until a named player thread is waiting (optionally for a deadline later than
    some time), which proves it has done everything due before. Real time only appears as safety
    timeouts that turn a hang into a test failure.
    """

    def __init__(self, start: float = 1000.0, safety_timeout: float = 0.5):
        self._time = float(start)
        self._safety_timeout = safety_timeout
        self._lock = threading.Condition()
        self._waiters: dict[int, tuple[str, float | None, threading.Condition, int]] = {}
        self._serial = 0  # counts waits begun, so a test can ask for a wait begun after some moment

    def now(self) -> float:
        with self._lock:
            return self._time

    def wait(self, condition: threading.Condition, deadline: float | None, waiter: str = "") -> None:
        me = threading.get_ident()
        with self._lock:
            if deadline is not None and self._time >= deadline:
                return
            self._serial += 1
            self._waiters[me] = (waiter, deadline, condition, self._serial)
            self._lock.notify_all()
        try:
            # The caller holds `condition` from its check until this wait releases it, so an
            # advance() that comes in between still reaches it: notifying needs that lock.
            condition.wait(self._safety_timeout)
        finally:
            with self._lock:
                self._waiters.pop(me, None)
                self._lock.notify_all()

    def advance(self, seconds: float) -> float:
        with self._lock:
            target = self._time + seconds
        return self.advance_to(target)

    def advance_to(self, moment: float) -> float:
        with self._lock:
            if moment < self._time:
                raise ValueError("a monotonic clock does not go back")
            self._time = float(moment)
            conditions = [entry[2] for entry in self._waiters.values()]
        for condition in conditions:
            with condition:
                condition.notify_all()
        return moment

    def waiting(self) -> dict[str, float | None]:
        """Label -> deadline of the threads waiting right now."""
        with self._lock:
            return {label: deadline for label, deadline, _, _ in self._waiters.values()}

    def serial(self) -> int:
        """A mark to pass as wait_until_waiting(newer_than=...) after changing something."""
        with self._lock:
            return self._serial

    def wait_until_waiting(self, waiter: str, after: float | None = None, without_deadline: bool = False,
                           deadline: float | None = None, newer_than: int | None = None,
                           timeout: float = 5.0) -> float | None:
        """Block until the thread labelled `waiter` waits: for a deadline later than `after`, for
        `deadline` itself (within a nanosecond), or with no deadline at all (if `without_deadline`);
        with `newer_than` (a serial()), only a wait begun since counts, not one that a change has
        just interrupted. Returns that deadline."""
        expected = deadline

        def matches(deadline: float | None) -> bool:
            if without_deadline:
                return deadline is None
            if expected is not None:
                return deadline is not None and abs(deadline - expected) < 1e-9
            if after is not None:
                return deadline is not None and deadline > after
            return True

        end = time.monotonic() + timeout
        with self._lock:
            while True:
                for label, deadline, _, serial in self._waiters.values():
                    if label == waiter and matches(deadline) and (newer_than is None or serial > newer_than):
                        return deadline
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{waiter!r} is not waiting as expected; waiting now: "
                                       f"{ {entry[0]: entry[1] for entry in self._waiters.values()} }")
                self._lock.wait(remaining)


# ------------------------------------------------------------------- waking up on time
REALTIME_PRIORITY = 10  # SCHED_FIFO: above every normal thread, below JACK's audio threads (70+)


def raise_this_thread_to_realtime() -> bool:
    """Put the calling thread under SCHED_FIFO where the system allows (Linux: root, or a user with an
    rtprio limit, which the jackd2 package grants the audio group). On a loaded 2-core machine this
    took a waiting thread's worst wake-up from 2.6-7.6 ms to 0.3 ms. Only for threads that wait or
    do a few microseconds of work per wake-up: a busy real-time thread would starve the machine.
    RNNRBM_STUDIO_REALTIME=0 in the environment turns it off."""
    if not hasattr(os, "sched_setscheduler") or os.environ.get("RNNRBM_STUDIO_REALTIME") == "0":
        return False
    try:
        priority = min(REALTIME_PRIORITY, os.sched_get_priority_max(os.SCHED_FIFO))
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: this thread (Linux)
    except (OSError, AttributeError) as error:
        log.info("timing thread runs at normal priority (%s)", error)
        return False
    return True


class GilSwitching:
    """Lowers Python's GIL switch interval while at least one user holds it, then puts it back.

    A thread that holds the GIL keeps it up to sys.getswitchinterval() (5 ms by default) before a
    thread waking at its deadline gets it: with training in the same process that was the whole
    lateness of the player's sends (p99 3.6 ms, max 4.8-7.4 ms; with 1 ms: max 0.9 ms).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved: float | None = None

    def acquire(self, interval: float | None) -> None:
        if interval is None:
            return
        with self._lock:
            self._users += 1
            current = sys.getswitchinterval()
            if current > interval:
                if self._saved is None:
                    self._saved = current
                sys.setswitchinterval(interval)

    def release(self, interval: float | None) -> None:
        if interval is None:
            return
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0 and self._saved is not None:
                sys.setswitchinterval(self._saved)
                self._saved = None


gil_switching = GilSwitching()
