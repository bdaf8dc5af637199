"""The model's side of live playback: its RNN state and the frames generated ahead of the scheduler.

The generator thread runs `model.step` a few frames ahead into a small bounded queue. Each queued
frame carries the RNN state after it, so a change (reset, prime, temperature, Gibbs steps, seed, new
weights) drops the queued frames and regenerates from the state after the last frame kept: nothing
already heard is revised. Between frames it asks the port whether its destination still exists (a
synth that quit drops messages without a word).

In the play-along modes (playalong.py) nothing is generated ahead: the frame that depends on the
musician is made at its deadline (`due`, asked of the schedule) by PlayAlong.decide, and the
scheduler sends it at once.

Everything here is guarded by the transport's condition; methods named *_locked expect it held.
"""
from __future__ import annotations

import collections
import copy
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..model import BernoulliSampler
from .clock import Clock
from .playalong import PLAYALONG_GIBBS_STEPS, PlayAlong, PlayAlongSettings
from .settings import PlaybackSettings
from .transport import Transport

log = logging.getLogger(__name__)


@dataclass
class QueuedFrame:
    keys: np.ndarray  # (n_keys,) uint8
    state: torch.Tensor  # RNN state after this frame
    epoch: int
    held: np.ndarray | None = None  # play-along: the musician's keys at its deadline


@dataclass(frozen=True)
class _Job:
    """What one model.step needs, taken under the lock and used outside it."""

    model: Any
    state: torch.Tensor
    epoch: int
    sampler: BernoulliSampler
    gibbs_steps: int | None
    temperature: float
    due: tuple[int, float] | None = None  # play-along: (index, deadline) of the frame to decide
    period: float = 0.0
    beat: float = 0.0
    start: str | None = None  # where each frame's chain starts (PlaybackSettings.chain)


class Generator:
    """The model (a copy: a trainer may keep changing the original), its state and the frame queue.

    `imminent(queued)` is asked, with the lock held, how many of the `queued` frames at the head of
    the queue are due too soon to be made again after a change of settings or weights.
    """

    def __init__(self, model, transport: Transport, settings: PlaybackSettings, clock: Clock,
                 imminent: Callable[[int], int], lookahead: int = 4, probe_interval: float = 0.25,
                 due: Callable[[], tuple[int, float] | None] | None = None,
                 on_musician_frame: Callable[[int, np.ndarray], Any] | None = None):
        self._model = copy.deepcopy(model).eval()
        self.n_keys = int(self._model.config.n_visible)
        self.lowest_pitch = int(self._model.config.lowest_pitch)
        if self.lowest_pitch < 0 or self.lowest_pitch + self.n_keys > 128:
            raise ValueError(f"the model's keys ({self.lowest_pitch}..{self.lowest_pitch + self.n_keys - 1}) "
                             "do not fit MIDI notes 0..127")
        self._transport, self._lock = transport, transport.lock
        self._clock = clock
        self._imminent = imminent
        self._lookahead = max(1, int(lookahead))
        self._probe_interval = float(probe_interval)
        # --- under the lock
        self._queue: collections.deque[QueuedFrame] = collections.deque()
        self._epoch = 0  # counts regenerations: a frame made under an older epoch is dropped
        self.played_state = self._model.initial_state()  # RNN state after the last frame played
        self._generator_state = self.played_state  # state after the last frame queued
        self._settings = settings
        self._sampler = BernoulliSampler(settings.seed)
        self._generated = 0
        self._generation_seconds = 0.0
        # play-along: `due()` (under the lock) is (index, deadline) of the next frame to decide, None
        # while the schedule is not anchored; on_musician_frame(index, keys) gets each complete
        # musician frame (outside the lock)
        self._due = due
        self._on_musician_frame = on_musician_frame
        self.playalong: PlayAlong | None = None

    def set_playalong_locked(self, playalong: PlayAlong | None) -> None:
        """Play along (or, with None or solo settings, alone) from the next frame on; frames made
        ahead without hearing the musician are dropped."""
        self.playalong = playalong
        if playalong is not None:
            playalong.forget()
        self._regenerate_locked()

    def _playing_along_locked(self) -> bool:
        return self.playalong is not None and self.playalong.settings.listening

    # ----------------------------------------------------------------- the scheduler's side
    def has_frame_locked(self) -> bool:
        return bool(self._queue)

    def queued_locked(self) -> int:
        return len(self._queue)

    def pop_locked(self) -> QueuedFrame:
        """The next frame, to be played now: its state becomes the state of what was played."""
        item = self._queue.popleft()
        self.played_state = item.state
        self._lock.notify_all()  # room in the queue
        return item

    def generation_time_per_frame(self) -> float | None:
        with self._lock:
            return self._generation_seconds / self._generated if self._generated else None

    # -------------------------------------------------------------------------- changes
    def apply_locked(self, settings: PlaybackSettings) -> None:
        """New settings: frames due after the regeneration horizon are made again if how frames are
        made (Gibbs steps, temperature, seed) changed."""
        old, self._settings = self._settings, settings
        if settings.frame_period != old.frame_period and self._playing_along_locked():
            # the frame to decide next is due at another moment now: wake the generator waiting for
            # the old one, or it would decide too early (slower) or too late (faster)
            self._lock.notify_all()
        if settings.seed != old.seed:
            self._sampler = BernoulliSampler(settings.seed)
        elif ((settings.gibbs_steps, settings.temperature, settings.chain_start)
              == (old.gibbs_steps, old.temperature, old.chain_start)):
            return
        self._regenerate_locked(keep_imminent=True)

    def reset(self) -> None:
        """Forget what was played: the next frame starts from the model's initial state."""
        with self._lock:
            model = self._model
        state = model.initial_state()
        with self._lock:
            self.played_state = state
            self._regenerate_locked()

    def prime(self, roll, continue_state: bool = False) -> None:
        """Set the state by running the RNN over a piano-roll (T, n_keys): from the initial state, or
        from the current one if continue_state."""
        roll = np.asarray(roll)
        if roll.ndim != 2 or roll.shape[1] != self.n_keys:
            raise ValueError(f"a primer roll must have shape (frames, {self.n_keys}), not {roll.shape}")
        with self._lock:
            model, start = self._model, (self.played_state if continue_state else None)
        state = model.prime((roll > 0).astype(np.float32), state=start)
        with self._lock:
            self.played_state = state
            self._regenerate_locked()

    def swap_weights(self, source: Mapping[str, torch.Tensor] | torch.nn.Module) -> None:
        """New weights from the first frame due after the horizon, keeping the RNN state. Copied here,
        on the caller's thread. Raises ValueError if they do not fit the playing model."""
        state_dict = source.state_dict() if isinstance(source, torch.nn.Module) else source
        with self._lock:
            template = self._model
        replacement = copy.deepcopy(template)
        try:
            replacement.load_state_dict(state_dict)
        except (RuntimeError, KeyError, TypeError) as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(error).__name__)
            raise ValueError(f"the new weights do not fit the playing model ({detail})") from None
        replacement.eval()
        with self._lock:
            # the generator thread uses whichever model object it picked up; this one is never mutated
            self._model = replacement
            self._regenerate_locked(keep_imminent=True)

    def _regenerate_locked(self, keep_imminent: bool = False) -> None:
        """Drop the frames generated but not played; the thread continues from the state after the
        last frame kept, with the settings and weights in force now.

        keep_imminent keeps the frames due within the horizon: regenerating them could make them late
        (with training in the process, a step can wait on the GIL for tens of ms), and a new
        temperature or new weights a fraction of a second later is not heard as late. A new state
        (reset, prime) drops them all: it replaces what follows the last frame played.
        """
        kept = self._imminent(len(self._queue)) if keep_imminent and not self._playing_along_locked() else 0
        while len(self._queue) > kept:
            self._queue.pop()
        if not keep_imminent and self.playalong is not None:
            self.playalong.forget()
        self._generator_state = self._queue[-1].state if self._queue else self.played_state
        self._epoch += 1
        self._lock.notify_all()

    # --------------------------------------------------------------------------- thread
    def run(self, probe: Callable[[], str | None]) -> None:
        """The generator thread: frames ahead until the queue is full; `probe()` every probe interval
        (a reason stops the player with an error)."""
        clock, transport = self._clock, self._transport
        next_probe = clock.now() + self._probe_interval
        try:
            use_one_torch_thread_here()
            while True:
                with self._lock:
                    due = None
                    while True:
                        if transport.stopping:
                            return
                        now = clock.now()
                        if now >= next_probe:
                            break
                        if self._playing_along_locked():
                            due = self._due() if self._due is not None and not self._queue else None
                            if due is not None and now >= due[1]:
                                break
                            clock.wait(self._lock, next_probe if due is None else min(due[1], next_probe),
                                       "generator")
                            continue
                        due = None
                        if len(self._queue) < self._lookahead:
                            break
                        clock.wait(self._lock, next_probe, "generator")
                    job = None if now >= next_probe else self._job_locked(due)
                if job is None:
                    next_probe = now + self._probe_interval
                    problem = probe()
                    if problem:
                        transport.fail(problem)
                        return
                    continue
                self._make(job)
        except Exception as error:
            log.exception("generating the next frame failed")
            transport.fail(f"generating music failed ({type(error).__name__}: {error})")

    def _job_locked(self, due: tuple[int, float] | None = None) -> _Job:
        settings = self._settings
        gibbs_steps, start = settings.chain(int(self._model.config.gibbs_steps))
        if due is not None and start is None and settings.gibbs_steps is None:
            # playing along on the exact chain: the model's own steps from silence may be far too slow
            # to reply within the frame
            gibbs_steps = min(PLAYALONG_GIBBS_STEPS, int(self._model.config.gibbs_steps))
        return _Job(self._model, self._generator_state, self._epoch, self._sampler, gibbs_steps,
                    settings.temperature, due, settings.frame_period, 60.0 / settings.bpm, start)

    def _make(self, job: _Job) -> None:
        if job.due is not None:
            self._decide(job)
            return
        started = time.perf_counter()
        # the one place where the temperature becomes the sampler's inverse temperature (beta)
        frame, new_state = job.model.step(job.state, job.sampler, job.gibbs_steps, 1.0 / job.temperature,
                                          start=job.start)
        keys = (frame.detach().cpu().numpy() > 0.5).astype(np.uint8)
        took = time.perf_counter() - started
        with self._lock:
            self._generated += 1
            self._generation_seconds += took
            if job.epoch == self._epoch:  # else it was made under settings now replaced
                self._queue.append(QueuedFrame(keys, new_state, job.epoch))
                self._generator_state = new_state
                self._lock.notify_all()


    def _decide(self, job: _Job) -> None:
        """Play along: the frame `job.due` is made now, at its deadline, from what the musician holds."""
        index, deadline = job.due
        playalong = self.playalong
        started = time.perf_counter()
        decision = playalong.decide(job.model, job.state, deadline, job.period, job.beat, job.sampler,
                                    job.gibbs_steps, 1.0 / job.temperature, job.start)
        took = time.perf_counter() - started
        with self._lock:
            self._generated += 1
            self._generation_seconds += took
            if job.epoch == self._epoch:
                self._queue.append(QueuedFrame(decision.keys, decision.state, job.epoch, decision.held))
                self._generator_state = decision.state
                self._lock.notify_all()
            # else a change came while deciding: the same frame is decided again, from the same state
        if decision.previous_musician is not None and index > 0 and self._on_musician_frame is not None:
            self._on_musician_frame(index - 1, decision.previous_musician)


def use_one_torch_thread_here() -> None:
    """Run this thread's torch operations on one thread.

    One frame is a few dozen tiny operations; some of them (the logistic noise) still open an
    OpenMP parallel region, after which torch's worker thread spins for a while. Measured on a
    2-core machine: the spinning made 500 model.step calls take 9.3 s instead of 1.3 s and put the
    scheduler's sends 4-16 ms late. With the OpenMP backend the thread count is per thread, but
    torch.set_num_threads also sets the default of threads created later and MKL's global count;
    a helper thread puts those back, leaving only this thread at one.
    """
    before = torch.get_num_threads()
    if before <= 1:
        return
    torch.set_num_threads(1)
    restore = threading.Thread(target=torch.set_num_threads, args=(before,), name="rnnrbm-torch-threads")
    restore.start()
    restore.join()


__all__ = ["Generator", "QueuedFrame", "use_one_torch_thread_here"]
