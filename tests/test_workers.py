"""The generic worker (ui/workers.py) and the window's job functions (ui/jobs.py).

A function runs in a QThread and sees only a Job; its handle says what happened on the GUI thread; a
registry cancels and awaits every job. No test sleeps: each waits on a signal or an event.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore  # noqa: E402

from rnnrbm_studio.errors import StudioError  # noqa: E402
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig  # noqa: E402
from rnnrbm_studio.training.trainer import TrainConfig, Trainer  # noqa: E402
from rnnrbm_studio.ui import jobs, workers  # noqa: E402
from rnnrbm_studio.ui.jobs import (GenerationProgress, TrainingReport, export_bars_job, generate_roll,  # noqa: E402
                                   train_job)
from rnnrbm_studio.ui.workers import Job, JobCancelled, WorkerRegistry, start_worker  # noqa: E402


def counting(job, n):
    for i in range(n):
        job.report(i)
    return n * 10


def wait_for_cancel(job, started: threading.Event | None = None):
    """Works until cancelled, as an engine loop checking its stop flag would."""
    stopped = threading.Event()
    job.on_cancel(stopped.set)
    if started is not None:
        started.set()
    job.report("started")
    assert stopped.wait(30), "never cancelled"
    job.check()


def on_gui_thread() -> bool:
    return QtCore.QThread.currentThread() is QtCore.QCoreApplication.instance().thread()


@pytest.fixture
def registry(qapp):
    registry = WorkerRegistry()
    yield registry
    assert registry.shutdown(10_000), "a test left a job running"


def test_a_function_runs_in_its_thread_and_its_signals_arrive_on_the_gui_thread(qtbot, registry):
    events, threads = [], []

    def work(job, n):
        threads.append(QtCore.QThread.currentThread().objectName())
        return counting(job, n)

    handle = registry.start(work, 5, name="counter", progress=True)
    # lambdas are safe: the handle re-emits on the GUI thread
    handle.progress.connect(lambda value: events.append(("progress", value, on_gui_thread())))
    handle.succeeded.connect(lambda result: events.append(("succeeded", result, on_gui_thread())))
    handle.finished.connect(lambda: events.append(("finished", None, on_gui_thread())))
    assert handle.is_running() and registry.running() == [handle]
    with qtbot.waitSignal(handle.finished, timeout=10_000):
        pass
    assert threads == ["counter"]
    assert events == [("progress", i, True) for i in range(5)] + [("succeeded", 50, True), ("finished", None, True)]
    assert not handle.is_running() and handle.outcome == workers.SUCCEEDED
    assert registry.handles() == [] and not handle.thread_running()


def test_reports_are_dropped_unless_progress_is_asked_for(qtbot, registry):
    seen, results = [], []
    handle = registry.start(counting, 3, name="quiet", connect={"progress": seen.append, "succeeded": results.append})
    with qtbot.waitSignal(handle.finished, timeout=10_000):
        pass
    assert results == [30] and seen == []


def test_a_user_error_fails_with_its_line_and_a_bug_with_its_type(qtbot, registry):
    def user_error(job):
        raise StudioError("no such folder: /nowhere")

    def bug(job):
        return {}["missing"]

    for function, expected in ((user_error, "no such folder: /nowhere"), (bug, "unexpected error: KeyError: 'missing'")):
        messages = []
        handle = registry.start(function, name=function.__name__, connect={"failed": messages.append})
        with qtbot.waitSignal(handle.finished, timeout=10_000):
            pass
        assert messages == [expected] and handle.outcome == workers.FAILED


def test_cancel_sets_the_flag_and_runs_the_cancel_callbacks(qtbot, registry):
    handle = registry.start(wait_for_cancel, name="waiter", progress=True)
    results = []
    handle.succeeded.connect(results.append)
    with qtbot.waitSignal(handle.progress, timeout=10_000):
        pass
    assert not handle.job.cancelled()
    with qtbot.waitSignals([handle.cancelled, handle.finished], timeout=10_000):
        handle.cancel()
    assert handle.job.cancelled() and handle.outcome == workers.CANCELLED and results == []


def test_shutdown_cancels_every_job_waits_for_all_and_delivers_nothing_more(qtbot, registry):
    started = [threading.Event() for _ in range(3)]
    delivered = []
    handles = [registry.start(wait_for_cancel, event, name=f"job{i}", connect={
        "cancelled": lambda: delivered.append("cancelled"), "finished": lambda: delivered.append("finished")})
        for i, event in enumerate(started)]
    assert all(event.wait(10) for event in started)
    assert registry.shutdown(10_000)
    assert not any(handle.thread_running() or handle.is_running() for handle in handles)
    assert registry.handles() == []
    QtCore.QCoreApplication.processEvents()  # what was queued for the closed owner is dropped
    QtCore.QCoreApplication.processEvents()
    assert delivered == []


def test_shutdown_is_bounded_when_a_job_ignores_cancel(qtbot, registry):
    release, started = threading.Event(), threading.Event()

    def stubborn(job):
        started.set()
        assert release.wait(30)

    handle = registry.start(stubborn, name="stubborn")
    assert started.wait(10)
    assert not registry.shutdown(timeout_ms=50)  # logged, left to end by itself
    assert handle.thread_running() and registry.handles() == [handle]
    release.set()
    assert handle.wait(10_000) and registry.handles() == []


def test_a_handle_nobody_keeps_still_ends_cleanly(qtbot, qapp):
    import gc

    results = []
    start_worker(counting, 2, name="orphan", connect={"succeeded": results.append})
    gc.collect()  # the caller kept no reference: the thread must not be destroyed while it runs
    qtbot.waitUntil(lambda: results == [20] and not workers._LIVE, timeout=10_000)


def test_on_cancel_after_cancel_runs_at_once_and_a_failing_callback_does_not_stop_the_others():
    job = Job()
    calls = []

    def broken():
        raise RuntimeError("bug")

    job.on_cancel(broken)
    job.on_cancel(lambda: calls.append("first"))
    job.cancel()
    job.cancel()  # twice is once
    job.on_cancel(lambda: calls.append("late"))
    assert calls == ["first", "late"]
    with pytest.raises(JobCancelled):
        job.check()


# -------------------------------------------------------------------------------- the jobs
def small_model() -> RnnRbm:
    return RnnRbm(RnnRbmConfig(n_hidden=16, n_hidden_recurrent=8, cd_k=1, gibbs_steps=5))


def test_generation_frame_by_frame_draws_what_generate_draws_and_reports_it():
    model = small_model()
    reports = []
    roll = generate_roll(Job(report=reports.append), model, 40, gibbs_steps=7, inverse_temperature=0.8, seed=3)
    assert np.array_equal(roll, model.generate(40, seed=3, gibbs_steps=7, inverse_temperature=0.8))
    assert reports[0] == GenerationProgress(0, 40) and reports[-1] == GenerationProgress(40, 40)
    assert [r.frames_done for r in reports] == sorted(r.frames_done for r in reports)


def test_a_cancelled_export_writes_nothing(tmp_path, monkeypatch):
    reports = []

    def cancel_at_the_second_report(progress):
        reports.append(progress)
        if len(reports) == 2:
            job.cancel()

    job = Job(report=cancel_at_the_second_report)
    monkeypatch.setattr(jobs, "REPORT_INTERVAL_S", 0)  # a report after every frame
    with pytest.raises(JobCancelled):
        export_bars_job(job, small_model(), tmp_path / "x.mid", 64, bpm=120, steps_per_beat=2)
    assert reports[-1] == GenerationProgress(1, 64)  # cancelled after the first frame
    assert list(tmp_path.iterdir()) == []


def test_train_job_hands_cancel_to_the_trainer_and_reports_weights_each_epoch(tmp_path):
    rng = np.random.default_rng(0)
    rolls = [(rng.random((40, 88)) < 0.05).astype(np.uint8) for _ in range(3)]
    config = TrainConfig(epochs=2, batch_seqs=4, seed=0)

    def make_trainer(progress):
        return Trainer(small_model(), rolls, rolls[:1], config, tmp_path / "m.pt", progress=progress)

    reports = []
    result = train_job(Job(report=reports.append), make_trainer)
    assert result.status == "finished" and result.epochs_completed == 2
    assert all(isinstance(r, TrainingReport) for r in reports)
    epochs = [r for r in reports if r.progress.event == "epoch"]
    assert [r.progress.epoch for r in epochs] == [1, 2]
    assert all(isinstance(r.weights, RnnRbm) and not r.weights.training for r in epochs)
    assert all(r.weights is None for r in reports if r.progress.event != "epoch")

    cancelled = Job()
    cancelled.cancel()  # before the trainer exists: it is told to stop as soon as it does
    result = train_job(cancelled, make_trainer)
    assert result.status == "stopped" and result.epochs_completed == 0
