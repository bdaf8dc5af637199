"""Whether the player plays, the two threads that play, and why they stopped.

`lock` guards this state and also that of the generator (the queue of frames, the RNN state) and of
the schedule (the deadlines): the generator and scheduler threads wait on it, so a stop, a pause, a
tempo change or a new frame wakes them at once. The port and the open notes have their own lock
(note_output.py), always taken after this one, never before.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Callable

from .clock import gil_switching

log = logging.getLogger(__name__)

STOPPED, PLAYING, PAUSED = "stopped", "playing", "paused"
# reasons given to on_stopped
STOP_REQUESTED, STOP_ERROR, STOP_EXIT = "stopped", "error", "exit"
GENERATOR_THREAD, SCHEDULER_THREAD = "rnnrbm-player-generator", "rnnrbm-player-scheduler"


class Transport:
    """While its threads run, the GIL switch interval is lowered to `gil_switch_interval` (see
    clock.GilSwitching; None leaves it alone)."""

    def __init__(self, gil_switch_interval: float | None = None):
        self.lock = threading.Condition(threading.Lock())
        self._gil_switch_interval = gil_switch_interval
        # --- under lock
        self.state = STOPPED
        self.stopping = False  # the threads are to end; state stays PLAYING/PAUSED until they have
        self.stop_reason = STOP_REQUESTED
        self.error: str | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------- the state
    def begin_locked(self) -> None:
        """A start: playing, with no stop asked for and no error."""
        self.state, self.stopping, self.stop_reason, self.error = PLAYING, False, STOP_REQUESTED, None

    def request_stop(self, reason: str = STOP_REQUESTED) -> None:
        """Ask the threads to end; the first reason given is the one reported."""
        with self.lock:
            if not self.stopping:
                self.stopping = True
                self.stop_reason = reason
            self.lock.notify_all()

    def fail(self, message: str) -> None:
        """Stop because of an error; the scheduler reports it as it ends. A stop asked for before
        (by the user, at exit) keeps its reason, and an error never replaces an earlier one."""
        with self.lock:
            if self.error is None and not (self.stopping and self.stop_reason != STOP_ERROR):
                self.error = message
            if not self.stopping:
                self.stopping = True
                self.stop_reason = STOP_ERROR
            self.lock.notify_all()

    def running(self) -> bool:
        """Playing or paused, and not on the way to stopping."""
        with self.lock:
            return self.state != STOPPED and not self.stopping

    def pause(self) -> None:
        with self.lock:
            if self.state == PLAYING:
                self.state = PAUSED
                self.lock.notify_all()

    def resume_locked(self) -> bool:
        """Back to playing after pause(); whether it was paused. With the lock held, so that the
        caller moves the schedule in the same breath (a thread woken in between would play late)."""
        if self.state != PAUSED:
            return False
        self.state = PLAYING
        self.lock.notify_all()
        return True

    # ----------------------------------------------------------------------- the threads
    def start(self, generator: Callable[[], None], scheduler: Callable[[], None],
              on_begin_locked: Callable[[], None]) -> None:
        """Play: the two threads start once the last run's have ended; on_begin_locked runs with the
        lock held as the state becomes PLAYING. RuntimeError if already running."""
        current = threading.current_thread()
        with self.lock:
            if self.state != STOPPED:
                raise RuntimeError("the player is already running")
            finishing = [t for t in self._threads if t.is_alive() and t is not current]
        for thread in finishing:  # a stopped player's thread may still be in on_stopped
            thread.join(5.0)
        with self.lock:
            if self.state != STOPPED or any(t.is_alive() and t is not current for t in self._threads):
                raise RuntimeError("the player is already running")
            self.begin_locked()
            on_begin_locked()
            self._threads = [threading.Thread(target=generator, name=GENERATOR_THREAD, daemon=True),
                             threading.Thread(target=scheduler, name=SCHEDULER_THREAD, daemon=True)]
        _running.add(self)
        gil_switching.acquire(self._gil_switch_interval)
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0, reason: str = STOP_REQUESTED) -> None:
        """Stop and wait for the threads (not when called from one of them: a callback)."""
        self.request_stop(reason)
        with self.lock:
            threads = list(self._threads)
        if threading.current_thread() in threads:
            return
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("player thread %s did not stop within %.1f s", thread.name, timeout)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the threads have ended (for instance after an error). True if they have."""
        with self.lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in threads)

    def finish(self) -> tuple[str, str | None]:
        """The scheduler's end, once the notes are silenced: the generator ends too, and from here on
        start() may run again. Returns (the stop reason, the error) to report."""
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
            generator = next((t for t in self._threads if t.name == GENERATOR_THREAD), None)
        if generator is not None and generator is not threading.current_thread() and generator.ident:
            generator.join(5.0)
        _running.discard(self)
        gil_switching.release(self._gil_switch_interval)
        with self.lock:
            self.state = STOPPED
            return self.stop_reason, self.error


# --------------------------------------------------------------- process-wide concerns
_running: "weakref.WeakSet[Transport]" = weakref.WeakSet()


def stop_all_players(reason: str = STOP_EXIT) -> None:
    """Stop every running player (note-offs and All Notes Off). Registered with atexit."""
    for transport in list(_running):
        try:
            transport.stop(timeout=2.0, reason=reason)
        except Exception:
            log.exception("stopping a player at exit")


atexit.register(stop_all_players)

__all__ = ["Transport", "stop_all_players", "STOPPED", "PLAYING", "PAUSED", "STOP_REQUESTED", "STOP_ERROR",
           "STOP_EXIT"]
