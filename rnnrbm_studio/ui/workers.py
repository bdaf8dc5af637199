"""Background work for the window: any function, run in its own QThread, told apart only by its signals.

`start_worker(function, *args, name=...)` runs `function(job, *args, **kwargs)` in a new QThread and
returns a `WorkerHandle` (superqt's `thread_worker` pattern, written here). The function sees only a
small `Job`: `job.cancelled()` is the flag the engine's cancel callbacks and stop flags check,
`job.on_cancel(callback)` hands cancelling on to an engine object (e.g. `Trainer.request_stop`), and
`job.report(value)` sends progress. The handle lives on the GUI thread and says, there:

    progress(value)     each job.report(value), in order (only when started with progress=True)
    succeeded(result)   the function returned
    failed(message)     it raised: a StudioError's one line, or "unexpected error: ..." (logged)
    cancelled()         it raised JobCancelled (job.check() does, once cancelled)
    finished()          after one of the three above, once its thread has ended

Because the handle re-emits on the GUI thread, any slot may be connected to it, lambdas included, and
no widget is ever touched from a worker thread. A `WorkerRegistry` keeps the jobs its owner started:
closing the window cancels them all and waits for them with one deadline (`shutdown`).
"""
from __future__ import annotations

import logging
import threading
import traceback
from typing import Any, Callable

from PySide6 import QtCore

from ..errors import StudioError

log = logging.getLogger(__name__)

SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
DEFAULT_SHUTDOWN_MS = 60_000  # closing waits this long, in all, for every job to stop

# Handles whose thread may still run: a QThread destroyed while it runs takes the process down, so a
# handle stays referenced here until its thread has ended, whoever else still holds it.
_LIVE: set["WorkerHandle"] = set()


class JobCancelled(Exception):
    """Ends a job as cancelled: raised by `job.check()`, or by the job function itself."""


class Job:
    """What a function running in a worker sees of it. Thread-safe; made by `start_worker`.

    Tests and the command line can make one directly: `Job(report=values.append)`.
    """

    def __init__(self, name: str = "job", report: Callable[[Any], None] | None = None):
        self.name = name
        self._report = report
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._on_cancel: list[Callable[[], None]] = []

    def cancelled(self) -> bool:
        """True once the job was asked to stop: pass `job.cancelled` where the engine takes a cancel callback."""
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise JobCancelled if the job was asked to stop (call it between chunks of work)."""
        if self._cancel.is_set():
            raise JobCancelled()

    def report(self, value: Any) -> None:
        """Send `value` to the handle's `progress` signal (dropped when the job reports to nobody)."""
        if self._report is not None:
            self._report(value)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the job is cancelled, at once if it already is.

        It runs in the thread that cancels (the GUI thread): it must be quick and thread-safe, like
        setting a threading.Event (`Trainer.request_stop`).
        """
        with self._lock:
            if not self._cancel.is_set():
                self._on_cancel.append(callback)
                return
        callback()

    def cancel(self) -> None:
        with self._lock:
            if self._cancel.is_set():
                return
            self._cancel.set()
            callbacks, self._on_cancel = self._on_cancel, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a bug in a callback must not stop the others, nor the window closing
                log.error("cancel callback of %s failed:\n%s", self.name, traceback.format_exc())


class _Runner(QtCore.QObject):
    """Lives in the worker thread; calls the function there and emits what happened."""

    reported = QtCore.Signal(object)
    ended = QtCore.Signal(str, object, str)  # SUCCEEDED/FAILED/CANCELLED, the result or message, a traceback

    def __init__(self, function: Callable, args: tuple, kwargs: dict, job: Job):
        super().__init__()
        self.function, self.args, self.kwargs, self.job = function, args, kwargs, job

    @QtCore.Slot()
    def run(self) -> None:
        # Nothing here logs: a log record made in a thread that Python did not start leaves a dummy
        # threading.Thread behind for good; the handle logs a bug's traceback on the GUI thread.
        details = ""
        try:
            outcome = (SUCCEEDED, self.function(self.job, *self.args, **self.kwargs))
        except JobCancelled:
            outcome = (CANCELLED, None)
        except StudioError as error:
            outcome = (FAILED, str(error))
        except Exception as error:  # a bug: keep the window alive and say what happened
            outcome = (FAILED, f"unexpected error: {type(error).__name__}: {error}")
            details = traceback.format_exc()
        self.function = self.args = self.kwargs = None  # the job's inputs (a corpus, a model) are not kept
        self.ended.emit(*outcome, details)
        thread = self.thread()
        self.moveToThread(QtCore.QCoreApplication.instance().thread())  # deleted later from the GUI thread
        # quit directly (thread-safe): the GUI thread may itself be waiting for this thread to end
        thread.quit()


class WorkerHandle(QtCore.QObject):
    """One job: its thread, its `Job`, and its signals, emitted on the GUI thread."""

    progress = QtCore.Signal(object)
    succeeded = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    cancelled = QtCore.Signal()
    finished = QtCore.Signal()

    def __init__(self, function: Callable, args: tuple = (), kwargs: dict | None = None, *, name: str,
                 progress: bool = False):
        super().__init__()
        self.name = name
        self.outcome: str | None = None  # SUCCEEDED, FAILED or CANCELLED once known
        self._running = False
        self._delivering = True
        self._registry: WorkerRegistry | None = None
        self._runner = _Runner(function, args, kwargs or {}, None)
        self.job = Job(name, self._runner.reported.emit if progress else None)
        self._runner.job = self.job
        self.qthread = QtCore.QThread()
        self.qthread.setObjectName(name)
        self._runner.moveToThread(self.qthread)
        self.qthread.started.connect(self._runner.run)  # runs in the new thread: the runner lives there
        # the handle lives on the GUI thread, so these are queued there, in the order they were emitted
        self._runner.reported.connect(self._on_reported)
        self._runner.ended.connect(self._on_ended)
        self.qthread.finished.connect(self._on_thread_finished)

    def start(self) -> "WorkerHandle":
        self._running = True
        _LIVE.add(self)
        self.qthread.start()
        return self

    def is_running(self) -> bool:
        """True until the job's outcome has reached the GUI thread (or its thread was waited for)."""
        return self._running

    def cancel(self) -> None:
        """Ask the job to stop: its `job.cancelled()` turns true and its on_cancel callbacks run."""
        self.job.cancel()

    def wait(self, timeout_ms: int = DEFAULT_SHUTDOWN_MS) -> bool:
        """Block until the thread has ended (True) or timeout_ms passed (False)."""
        ended = self.qthread.wait(QtCore.QDeadlineTimer(max(0, int(timeout_ms))))
        if ended:
            self._ended()
        return ended

    def cancel_and_wait(self, timeout_ms: int = DEFAULT_SHUTDOWN_MS) -> bool:
        self.cancel()
        return self.wait(timeout_ms)

    def detach(self) -> None:
        """Deliver nothing more: the owner is going away (what the job still reports is dropped)."""
        self._delivering = False

    def thread_running(self) -> bool:
        return self.qthread.isRunning()

    # ------------------------------------------------------------------ on the GUI thread
    @QtCore.Slot(object)
    def _on_reported(self, value: object) -> None:
        if self._delivering:
            self.progress.emit(value)

    @QtCore.Slot(str, object, str)
    def _on_ended(self, outcome: str, value: object, details: str) -> None:
        if details:
            log.error("%s failed:\n%s", self.name, details)
        self.outcome = outcome
        self._running = False  # the work is done; the thread itself is ending
        if not self._delivering:
            return
        if outcome == SUCCEEDED:
            self.succeeded.emit(value)
        elif outcome == FAILED:
            self.failed.emit(value)
        else:
            self.cancelled.emit()

    @QtCore.Slot()
    def _on_thread_finished(self) -> None:
        self.qthread.wait()  # finished is emitted just before the thread ends: a moment at most
        self._ended()
        if self._delivering:
            self.finished.emit()

    def _ended(self) -> None:
        self._running = False
        _LIVE.discard(self)
        if self._registry is not None:
            self._registry._forget(self)


class WorkerRegistry(QtCore.QObject):
    """The jobs one owner (the window) started: to cancel them all and wait for them when it closes."""

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._handles: list[WorkerHandle] = []

    def start(self, function: Callable, *args, name: str, progress: bool = False,
              connect: dict[str, Callable] | None = None, **kwargs) -> WorkerHandle:
        return start_worker(function, *args, name=name, progress=progress, connect=connect, registry=self, **kwargs)

    def add(self, handle: WorkerHandle) -> None:
        handle._registry = self
        self._handles.append(handle)

    def _forget(self, handle: WorkerHandle) -> None:
        if handle in self._handles:
            self._handles.remove(handle)

    def handles(self) -> list[WorkerHandle]:
        """The jobs whose thread may still be running."""
        return list(self._handles)

    def running(self) -> list[WorkerHandle]:
        return [handle for handle in self._handles if handle.is_running()]

    def cancel_all(self) -> None:
        for handle in list(self._handles):
            handle.cancel()

    def wait_all(self, timeout_ms: int = DEFAULT_SHUTDOWN_MS) -> bool:
        """Wait for every thread to end, all within one deadline; True if they all did."""
        deadline = QtCore.QDeadlineTimer(max(0, int(timeout_ms)))
        for handle in list(self._handles):
            handle.wait(max(0, deadline.remainingTime()))
        return not self._handles

    def shutdown(self, timeout_ms: int = DEFAULT_SHUTDOWN_MS) -> bool:
        """Cancel every job and wait for them (bounded); their outcomes are no longer delivered.

        A job that does not stop in time is logged and left to end by itself (its handle stays
        referenced, so its thread is never destroyed while it runs).
        """
        for handle in list(self._handles):
            handle.detach()
            handle.cancel()
        if self.wait_all(timeout_ms):
            return True
        log.warning("still running after %.0f s: %s", timeout_ms / 1000,
                    ", ".join(handle.name for handle in self._handles))
        return False


def start_worker(function: Callable, *args, name: str, progress: bool = False,
                 connect: dict[str, Callable] | None = None, registry: WorkerRegistry | None = None,
                 **kwargs) -> WorkerHandle:
    """Run `function(job, *args, **kwargs)` in a new QThread named `name`; returns its handle, started.

    progress: emit each `job.report(value)` as `progress(value)` (otherwise reports are dropped).
    connect: {"succeeded": slot, ...}, connected before the thread starts. Connecting right after
        this returns is as safe: the handle's signals reach the GUI thread through its event loop.
    registry: the WorkerRegistry that keeps the job (its owner cancels and awaits it on close).
    The keyword names above are taken; pass a functools.partial to give the function such arguments.
    """
    handle = WorkerHandle(function, args, kwargs, name=name, progress=progress)
    for signal_name, slot in (connect or {}).items():
        getattr(handle, signal_name).connect(slot)
    if registry is not None:
        registry.add(handle)
    return handle.start()
