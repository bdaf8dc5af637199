"""The live player: the RNN-RBM composes frame by frame and a MIDI port plays each frame on time.

Two threads per running player:

- the generator runs `model.step` a few frames ahead into a small bounded queue. Each queued frame
  carries the RNN state after it, so a change (reset, prime, temperature, Gibbs steps, new weights)
  drops the queued frames and regenerates from the state after the last frame kept: nothing already
  heard is revised. Between frames it asks the port whether its destination still exists (a synth
  that quit drops messages without a word);
- the scheduler sends each frame's difference (note-offs for released keys, then note-ons for new
  keys) at its absolute deadline `anchor_time + (n - anchor_index) * dt + latency_offset` on an
  injected clock, and owns the set of open notes. It waits on a condition until the deadline, so
  stop, pause and tempo changes wake it at once; it never sleeps a period in a loop, so errors do
  not accumulate. A port with `send_at` (ports.SenderProcessPort) gets each frame `lead_time` early
  and sends it at the deadline from its own process.

State shared between the threads and callers lives under one condition (`_lock`); the port and the
open notes under `_port_lock` (taken after `_lock`, never before); callbacks run on player threads
with no lock held.

Timing, measured (benchmarks/bench_playback.py): the scheduler shares the GIL with the rest of the
process, so while it runs the GIL switch interval is lowered to 1 ms; it asks for real-time priority
where the system allows; torch runs one thread in the generator. With training in the same process,
only a port in a separate process keeps sends within a millisecond on a loaded machine.

One class on purpose, longer than our other modules: its two threads and the caller share state
under two locks, and keeping every rule about that state in one place is what keeps it correct.
"""
from __future__ import annotations

import atexit
import collections
import copy
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import mido
import numpy as np
import torch

from .clock import Clock, MonotonicClock, gil_switching, raise_this_thread_to_realtime
from ..model import BernoulliSampler
from ..music.midi_files import read_midi, roll_to_midi
from ..music.pianoroll import RollSettings
from .ports import ALL_NOTES_OFF, PortError, all_notes_off_messages

log = logging.getLogger(__name__)

STOPPED, PLAYING, PAUSED = "stopped", "playing", "paused"
# reasons given to on_stopped
STOP_REQUESTED, STOP_ERROR, STOP_EXIT = "stopped", "error", "exit"


@dataclass(frozen=True)
class PlayedFrame:
    index: int  # position in the session's recording
    keys: np.ndarray  # (n_visible,) uint8, 1 = key sounding during this frame
    onsets: np.ndarray  # (n_visible,) bool, keys struck at this frame (re-strikes included)
    deadline: float  # clock time its messages were due on the port
    sent_at: float  # clock time they started going out


@dataclass
class _Queued:
    keys: np.ndarray
    state: torch.Tensor  # RNN state after this frame
    epoch: int


class LivePlayer:
    """Plays a model live on a MIDI output port.

    `port` needs `send(mido.Message)`. Optional: `problem() -> str | None`, asked every
    probe_interval (a reason stops the player with an error); `send_at(deadline, messages, tag)` with
    `lead_time`, for ports that send at given times themselves. ports.open_output_port() returns
    such ports. The player never closes the port: whoever opened it does.

    The model is copied, so a trainer may keep changing the original; push its weights with
    swap_weights(). Every method may be called from any thread; on_error(message) and
    on_stopped(reason) are called from a player thread, with no lock held.
    """

    def __init__(self, model, port, *, bpm: float = 120.0, steps_per_beat: int = 2, velocity: int = 80,
                 channel: int = 0, program: int = 0, restrike: bool = False, latency_offset: float = 0.0,
                 gibbs_steps: int | None = None, temperature: float = 1.0, seed: int | None = None,
                 lookahead: int = 4, start_delay: float = 0.05, regenerate_horizon: float = 0.15,
                 played_buffer_size: int = 1024, probe_interval: float = 0.25,
                 gil_switch_interval: float | None = 0.001, realtime_priority: bool = True,
                 clock: Clock | None = None, on_error: Callable[[str], Any] | None = None,
                 on_stopped: Callable[[str], Any] | None = None):
        self._model = copy.deepcopy(model).eval()
        self._n_keys = int(self._model.config.n_visible)
        self._lowest_pitch = int(self._model.config.lowest_pitch)
        if self._lowest_pitch < 0 or self._lowest_pitch + self._n_keys > 128:
            raise ValueError(f"the model's keys ({self._lowest_pitch}..{self._lowest_pitch + self._n_keys - 1}) "
                             "do not fit MIDI notes 0..127")
        self._port = port
        self._clock: Clock = clock or MonotonicClock()
        self.on_error = on_error
        self.on_stopped = on_stopped
        self._sampler = BernoulliSampler(seed)
        self._lookahead = max(1, int(lookahead))
        self._start_delay = float(start_delay)
        self._regenerate_horizon = float(regenerate_horizon)
        self._probe_interval = float(probe_interval)
        self._gil_switch_interval = gil_switch_interval
        self._realtime_priority = realtime_priority
        self._realtime: bool | None = None  # whether the scheduler got real-time priority

        self._lock = threading.Condition(threading.Lock())
        # --- under _lock
        self._state = STOPPED
        self._stopping = False
        self._stop_reason = STOP_REQUESTED
        self._error: str | None = None
        self._queue: collections.deque[_Queued] = collections.deque()
        self._epoch = 0
        self._played_state = self._model.initial_state()  # RNN state after the last frame played
        self._generator_state = self._played_state  # state after the last frame queued
        self._gibbs_steps = self._check_gibbs(gibbs_steps)
        self._inverse_temperature = 1.0 / self._check_temperature(temperature)
        self._dt = self._period(bpm, steps_per_beat)
        self._bpm, self._steps_per_beat = float(bpm), int(steps_per_beat)
        self._latency_offset = float(latency_offset)
        self._next_index = 0
        self._anchor_index, self._anchor_time = 0, 0.0
        self._last_sent: tuple[int, float] | None = None  # (index, nominal time) of the last frame sent
        self._reanchor_from_now = True
        self._underruns = 0
        self._generated = 0
        self._generation_seconds = 0.0
        self._threads: list[threading.Thread] = []
        # --- under _port_lock
        self._port_lock = threading.RLock()
        self._open_notes = np.zeros(self._n_keys, dtype=bool)
        self._velocity = self._check_midi(velocity, 1, 127, "velocity")
        self._channel = self._check_midi(channel, 0, 15, "channel")
        self._program = self._check_midi(program, 0, 127, "program")
        self._restrike = bool(restrike)
        self._messages: dict[tuple[str, int, int, int], mido.Message] = {}
        # --- under _record_lock
        self._record_lock = threading.Lock()
        self._recorded: list[np.ndarray] = []
        self._played = collections.deque(maxlen=max(1, int(played_buffer_size)))
        self._played_dropped = 0

    # ------------------------------------------------------------------------ validation
    @staticmethod
    def _period(bpm: float, steps_per_beat: int) -> float:
        if not (0 < float(bpm) <= 1000):
            raise ValueError(f"tempo must be between 0 and 1000 BPM, not {bpm}")
        if int(steps_per_beat) != steps_per_beat or not 1 <= int(steps_per_beat) <= 96:
            raise ValueError(f"steps per beat must be a whole number from 1 to 96, not {steps_per_beat}")
        return 60.0 / (float(bpm) * int(steps_per_beat))

    @staticmethod
    def _check_temperature(temperature: float) -> float:
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be positive, not {temperature}")
        return float(temperature)

    @staticmethod
    def _check_gibbs(steps: int | None) -> int | None:
        if steps is not None and (int(steps) != steps or steps < 1):
            raise ValueError(f"Gibbs steps must be a whole number of at least 1, not {steps}")
        return None if steps is None else int(steps)

    @staticmethod
    def _check_midi(value: int, low: int, high: int, what: str) -> int:
        if int(value) != value or not low <= value <= high:
            raise ValueError(f"MIDI {what} must be a whole number from {low} to {high}, not {value}")
        return int(value)

    # ---------------------------------------------------------------------- properties
    @property
    def state(self) -> str:
        """'playing', 'paused' or 'stopped'."""
        with self._lock:
            return self._state

    @property
    def error(self) -> str | None:
        """The message of the error that stopped the player last, if any."""
        with self._lock:
            return self._error

    @property
    def port(self):
        with self._port_lock:
            return self._port

    @property
    def bpm(self) -> float:
        with self._lock:
            return self._bpm

    @property
    def steps_per_beat(self) -> int:
        with self._lock:
            return self._steps_per_beat

    @property
    def frame_period(self) -> float:
        with self._lock:
            return self._dt

    @property
    def temperature(self) -> float:
        with self._lock:
            return 1.0 / self._inverse_temperature

    @property
    def gibbs_steps(self) -> int | None:
        with self._lock:
            return self._gibbs_steps

    @property
    def frames_played(self) -> int:
        with self._lock:
            return self._next_index

    @property
    def underruns(self) -> int:
        """Frames that were not generated by their deadline and went out late."""
        with self._lock:
            return self._underruns

    @property
    def generation_time_per_frame(self) -> float | None:
        """Mean seconds model.step took per frame so far (compare with frame_period)."""
        with self._lock:
            return self._generation_seconds / self._generated if self._generated else None

    @property
    def realtime_scheduling(self) -> bool | None:
        """Whether the scheduler thread runs at real-time priority (None: not started yet)."""
        with self._lock:
            return self._realtime

    @property
    def open_notes(self) -> list[int]:
        """MIDI notes sounding now (sent note-on, no note-off yet)."""
        with self._port_lock:
            return [self._lowest_pitch + int(k) for k in np.flatnonzero(self._open_notes)]

    # ---------------------------------------------------------------------- transport
    def start(self) -> None:
        """Start playing (again): from the current RNN state; the recording continues."""
        with self._port_lock:
            if self._port is None:
                raise PortError("no MIDI output chosen to play on")
        current = threading.current_thread()
        with self._lock:
            if self._state != STOPPED:
                raise RuntimeError("the player is already running")
            finishing = [t for t in self._threads if t.is_alive() and t is not current]
        for thread in finishing:  # a stopped player's thread may still be in on_stopped
            thread.join(5.0)
        with self._lock:
            if self._state != STOPPED or any(t.is_alive() and t is not current for t in self._threads):
                raise RuntimeError("the player is already running")
            self._state = PLAYING
            self._stopping = False
            self._stop_reason = STOP_REQUESTED
            self._error = None
            self._reanchor_from_now = True
            self._last_sent = None
            self._threads = [threading.Thread(target=self._run_generator, name="rnnrbm-player-generator",
                                              daemon=True),
                             threading.Thread(target=self._run_scheduler, name="rnnrbm-player-scheduler",
                                              daemon=True)]
        _running_players.add(self)
        gil_switching.acquire(self._gil_switch_interval)
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0, reason: str = STOP_REQUESTED) -> None:
        """Stop: note-offs for open notes, then All Notes Off on the channel. Returns when done
        (unless called from a player callback, which returns at once). Stopping twice is harmless."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._stop_reason = reason
            self._lock.notify_all()
            threads = list(self._threads)
        current = threading.current_thread()
        if current in threads:
            return
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("player thread %s did not stop within %.1f s", thread.name, timeout)

    def pause(self) -> None:
        """Hold the music: open notes are released; frames already generated wait."""
        with self._lock:
            if self._state == PLAYING:
                self._state = PAUSED
                self._lock.notify_all()

    def resume(self) -> None:
        """Continue after pause(): the next frame comes after the start delay."""
        with self._lock:
            if self._state == PAUSED:
                self._state = PLAYING
                self._reanchor_from_now = True
                self._lock.notify_all()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the player threads have ended (for instance after an error). True if they have."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in threads)

    # ----------------------------------------------------------------- live settings
    def set_tempo(self, bpm: float | None = None, steps_per_beat: int | None = None) -> None:
        """Change the tempo while playing: the next frame comes one new period after the last one."""
        with self._lock:
            bpm = self._bpm if bpm is None else float(bpm)
            steps_per_beat = self._steps_per_beat if steps_per_beat is None else steps_per_beat
            dt = self._period(bpm, steps_per_beat)
            if self._last_sent is not None:
                self._anchor_index, self._anchor_time = self._last_sent
            self._dt, self._bpm, self._steps_per_beat = dt, bpm, int(steps_per_beat)
            self._lock.notify_all()

    def set_temperature(self, temperature: float) -> None:
        """Sampling temperature 1/beta (1 = the model), from the first frame due after regenerate_horizon."""
        beta = 1.0 / self._check_temperature(temperature)
        with self._lock:
            self._inverse_temperature = beta
            self._regenerate_locked(keep_imminent=True)

    def set_gibbs_steps(self, steps: int | None) -> None:
        """Gibbs steps per frame (None = the model's setting), from the first frame due after regenerate_horizon."""
        steps = self._check_gibbs(steps)
        with self._lock:
            self._gibbs_steps = steps
            self._regenerate_locked(keep_imminent=True)

    def set_latency_offset(self, seconds: float) -> None:
        """Seconds added to every send deadline (negative: send early to make up for a slow synth)."""
        with self._lock:
            self._latency_offset = float(seconds)
            self._lock.notify_all()

    def set_velocity(self, velocity: int) -> None:
        velocity = self._check_midi(velocity, 1, 127, "velocity")
        with self._port_lock:
            self._velocity = velocity

    def set_restrike(self, restrike: bool) -> None:
        """True: keys held from one frame to the next are struck again; False: they sustain."""
        with self._port_lock:
            self._restrike = bool(restrike)

    def set_channel(self, channel: int | None = None, program: int | None = None) -> None:
        """Move to another channel and/or program; notes open on the old channel are released."""
        channel = self._channel if channel is None else self._check_midi(channel, 0, 15, "channel")
        program = self._program if program is None else self._check_midi(program, 0, 127, "program")
        with self._lock:
            running = self._state != STOPPED
        failure = None
        with self._port_lock:
            if channel != self._channel and self._port is not None:
                failure = self._silence_locked(all_notes_off=True)
            self._channel, self._program = channel, program
            if running and failure is None and self._port is not None:
                failure = self._send_locked(mido.Message("program_change", channel=channel, program=program))
        if failure:
            self._fail_or_raise(failure)

    def set_port(self, port):
        """Play on another port from the next frame; the old one gets note-offs and All Notes Off
        first. Returns the old port (the caller closes it)."""
        with self._lock:
            running = self._state != STOPPED
        with self._port_lock:
            if self._port is not None:
                self._silence_locked(all_notes_off=True)  # the old port may be dead: best effort
            old, self._port = self._port, port
            failure = None
            if running:
                failure = self._send_locked(mido.Message("program_change", channel=self._channel,
                                                         program=self._program))
        if failure:
            self._fail(failure)
        return old

    # ------------------------------------------------------------------ the RNN state
    def reset_state(self) -> None:
        """Forget what was played: the next frame starts from the model's initial state."""
        with self._lock:
            model = self._model
        state = model.initial_state()
        with self._lock:
            self._played_state = state
            self._regenerate_locked()

    def prime(self, roll, continue_state: bool = False) -> None:
        """Set the RNN state by running it over a piano-roll (T, n_keys): the music continues it.
        From the initial state, or from the current one if continue_state."""
        roll = np.asarray(roll)
        if roll.ndim != 2 or roll.shape[1] != self._n_keys:
            raise ValueError(f"a primer roll must have shape (frames, {self._n_keys}), not {roll.shape}")
        with self._lock:
            model, start = self._model, (self._played_state if continue_state else None)
        state = model.prime((roll > 0).astype(np.float32), state=start)
        with self._lock:
            self._played_state = state
            self._regenerate_locked()

    def prime_from_midi(self, path, settings: RollSettings | None = None) -> int:
        """prime() from a MIDI file; returns its number of frames. Raises MidiReadError (a StudioError)."""
        piano_roll = read_midi(path, settings or RollSettings(steps_per_beat=self.steps_per_beat))
        self.prime(piano_roll.roll)
        return piano_roll.n_frames

    def swap_weights(self, source: Mapping[str, torch.Tensor] | torch.nn.Module) -> None:
        """Play with new weights from the first frame due after regenerate_horizon, keeping the RNN state.

        `source` is a model or a state dict; it is copied here, on the caller's thread, so pass it
        where it is consistent (e.g. from the trainer's progress callback between updates).
        Raises ValueError if the weights do not fit the playing model.
        """
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
            # the generator uses whichever model object it picked up; this one is never mutated
            self._model = replacement
            self._regenerate_locked(keep_imminent=True)

    def _regenerate_locked(self, keep_imminent: bool = False) -> None:
        """Drop the frames generated but not played; the generator continues from the state after the
        last frame kept, with the settings and weights in force now.

        keep_imminent keeps the frames due within regenerate_horizon: regenerating them could make
        them late (with training in the process, a step can wait on the GIL for tens of ms), and a new
        temperature or new weights a fraction of a second later is not heard as late. A new state
        (reset, prime) drops them all: it replaces what follows the last frame played.
        """
        kept = 0
        if keep_imminent and self._state == PLAYING and not self._reanchor_from_now:
            horizon = self._clock.now() + self._regenerate_horizon
            while (kept < len(self._queue)
                   and self._nominal_locked(self._next_index + kept) + self._latency_offset <= horizon):
                kept += 1
        while len(self._queue) > kept:
            self._queue.pop()
        self._generator_state = self._queue[-1].state if self._queue else self._played_state
        self._epoch += 1
        self._lock.notify_all()

    # ------------------------------------------------------------------- what was played
    def drain_played_frames(self) -> list[PlayedFrame]:
        """The frames played since the last call, oldest first (at most played_buffer_size: when the
        UI falls behind, the oldest are dropped; see played_frames_dropped)."""
        with self._record_lock:
            frames = list(self._played)
            self._played.clear()
        return frames

    @property
    def played_frames_dropped(self) -> int:
        with self._record_lock:
            return self._played_dropped

    def recorded_roll(self) -> np.ndarray:
        """Every frame played in this session, (T, n_keys) uint8."""
        with self._record_lock:
            if not self._recorded:
                return np.zeros((0, self._n_keys), dtype=np.uint8)
            return np.stack(self._recorded)

    def clear_recording(self) -> None:
        with self._record_lock:
            self._recorded.clear()

    def export_midi(self, path, bpm: float | None = None, steps_per_beat: int | None = None) -> mido.MidiFile:
        """Write the recording as a .mid file: the same frames, at one tempo (the current one unless
        given). Tempo changes, pauses and re-strikes during the session are not in the file."""
        roll = self.recorded_roll()
        with self._lock:
            bpm = self._bpm if bpm is None else float(bpm)
            steps_per_beat = self._steps_per_beat if steps_per_beat is None else int(steps_per_beat)
        with self._port_lock:
            velocity, channel, program = self._velocity, self._channel, self._program
        ticks_per_beat = 480 if 480 % steps_per_beat == 0 else 96 * steps_per_beat
        return roll_to_midi(roll, path, bpm=bpm, steps_per_beat=steps_per_beat, ticks_per_beat=ticks_per_beat,
                            velocity=velocity, channel=channel, program=program, lowest_pitch=self._lowest_pitch)

    # ------------------------------------------------------------------------- panic
    def panic(self) -> None:
        """All Notes Off and note-offs for every key on all 16 channels, now."""
        with self._port_lock:
            if self._port is None:
                return
            self._open_notes[:] = False
            failure = self._send_locked(list(all_notes_off_messages()))
        if failure:
            self._fail_or_raise(failure)

    # ----------------------------------------------------------------------- threads
    def _run_generator(self) -> None:
        clock = self._clock
        next_probe = clock.now() + self._probe_interval
        try:
            _use_one_torch_thread_here()
            while True:
                with self._lock:
                    while True:
                        if self._stopping:
                            return
                        now = clock.now()
                        if now >= next_probe:
                            break
                        if len(self._queue) < self._lookahead:
                            break
                        clock.wait(self._lock, next_probe, "generator")
                    if now >= next_probe:
                        job = None
                    else:
                        job = (self._model, self._generator_state, self._epoch, self._gibbs_steps,
                               self._inverse_temperature)
                if job is None:
                    next_probe = now + self._probe_interval
                    problem = self._probe_port()
                    if problem:
                        self._fail(problem)
                        return
                    continue
                model, state, epoch, gibbs_steps, beta = job
                started = time.perf_counter()
                frame, new_state = model.step(state, self._sampler, gibbs_steps, beta)
                keys = (frame.detach().cpu().numpy() > 0.5).astype(np.uint8)
                took = time.perf_counter() - started
                with self._lock:
                    self._generated += 1
                    self._generation_seconds += took
                    if epoch == self._epoch:  # else the frame was generated under settings now replaced
                        self._queue.append(_Queued(keys, new_state, epoch))
                        self._generator_state = new_state
                        self._lock.notify_all()
        except Exception as error:
            log.exception("generating the next frame failed")
            self._fail(f"generating music failed ({type(error).__name__}: {error})")

    def _probe_port(self) -> str | None:
        with self._port_lock:
            port = self._port
        probe = getattr(port, "problem", None)
        if probe is None:
            return None
        try:
            return probe()
        except Exception as error:
            return f"cannot check the MIDI output ({error})"

    def _fail(self, message: str) -> None:
        """Stop the player because of an error; the scheduler reports it as it ends."""
        with self._lock:
            if self._error is None and not (self._stopping and self._stop_reason != STOP_ERROR):
                self._error = message
            if not self._stopping:
                self._stopping = True
                self._stop_reason = STOP_ERROR
            self._lock.notify_all()

    def _fail_or_raise(self, message: str) -> None:
        """A failure on the caller's thread: stops a running player (reported through the callbacks),
        or raises PortError when nothing is playing."""
        with self._lock:
            running = self._state != STOPPED and not self._stopping
        if not running:
            raise PortError(message)
        self._fail(message)

    def _run_scheduler(self) -> None:
        clock = self._clock
        realtime = self._realtime_priority and raise_this_thread_to_realtime()
        with self._lock:
            self._realtime = realtime
        try:
            with self._port_lock:
                failure = self._send_locked(mido.Message("program_change", channel=self._channel,
                                                         program=self._program))
            if failure:
                self._fail(failure)
                return
            while True:
                item, index, deadline, silence = self._next_due(clock)
                if silence:
                    with self._port_lock:
                        failure = self._silence_locked(all_notes_off=False)
                    if failure:
                        self._fail(failure)
                    continue
                if item is None:
                    return
                self._play(item, index, deadline, clock)
        except Exception as error:
            log.exception("the player's scheduler failed")
            self._fail(f"internal error in the player ({type(error).__name__}: {error})")
        finally:
            self._finish()

    def _next_due(self, clock: Clock):
        """Wait for the next frame's deadline. Returns (item, index, deadline, silence_request)."""
        with self._lock:
            paused_silenced = False
            while True:
                if self._stopping:
                    return None, 0, 0.0, False
                if self._state == PAUSED:
                    if not paused_silenced and self._any_open_notes():
                        return None, 0, 0.0, True
                    paused_silenced = True
                    clock.wait(self._lock, None, "scheduler")
                    continue
                if self._reanchor_from_now:
                    # the first frame after start or resume: one start delay from now (later if the
                    # latency offset is negative, so that its send deadline is not already past)
                    self._anchor_index = self._next_index
                    self._anchor_time = clock.now() + self._start_delay + max(0.0, -self._latency_offset)
                    self._reanchor_from_now = False
                    self._last_sent = None
                if not self._queue:
                    clock.wait(self._lock, None, "scheduler")
                    continue
                index = self._next_index
                deadline = self._nominal_locked(index) + self._latency_offset
                # a port that sends at given times itself is handed each frame that much earlier
                hand_over = deadline - getattr(self._port, "lead_time", 0.0)
                now = clock.now()
                if now < hand_over:
                    clock.wait(self._lock, hand_over, "scheduler")
                    continue
                item = self._queue.popleft()
                nominal = deadline - self._latency_offset
                if now - deadline > max(self._dt, 0.05):
                    # the generator fell behind: play this frame now and count on from here,
                    # rather than rush the frames after it out in a burst
                    self._underruns += 1
                    nominal = now - self._latency_offset
                    self._anchor_index, self._anchor_time = index, nominal
                self._played_state = item.state
                self._last_sent = (index, nominal)
                self._next_index = index + 1
                self._lock.notify_all()  # room in the queue
                return item, index, deadline, False

    def _any_open_notes(self) -> bool:
        with self._port_lock:
            return bool(self._open_notes.any())

    def _nominal_locked(self, index: int) -> float:
        return self._anchor_time + (index - self._anchor_index) * self._dt

    def _play(self, item: _Queued, index: int, deadline: float, clock: Clock) -> None:
        """Send a frame's difference: note-offs for released keys, then note-ons for new ones."""
        keys = item.keys
        pressed = keys.astype(bool)
        with self._port_lock:
            sent_at = clock.now()
            open_notes = self._open_notes
            releases = open_notes.copy() if self._restrike else open_notes & ~pressed
            strikes = pressed.copy() if self._restrike else pressed & ~open_notes
            messages = ([self._message("note_off", key, 0) for key in np.flatnonzero(releases)]
                        + [self._message("note_on", key, self._velocity) for key in np.flatnonzero(strikes)])
            # counted as sounding before it is sent: if sending fails, a note-off too many is harmless
            open_notes &= ~releases
            open_notes |= strikes
            failure = self._send_locked(messages, deadline, index)
        frame = PlayedFrame(index=index, keys=keys, onsets=strikes, deadline=deadline, sent_at=sent_at)
        with self._record_lock:
            self._recorded.append(keys)
            if len(self._played) == self._played.maxlen:
                self._played_dropped += 1
            self._played.append(frame)
        if failure:
            self._fail(failure)

    def _message(self, kind: str, key: int, velocity: int) -> mido.Message:
        note = self._lowest_pitch + int(key)
        cache_key = (kind, self._channel, note, velocity)
        message = self._messages.get(cache_key)
        if message is None:  # building a mido.Message validates every field: cache them
            message = mido.Message(kind, channel=self._channel, note=note, velocity=velocity)
            self._messages[cache_key] = message
        return message

    def _send_locked(self, messages: mido.Message | list[mido.Message], deadline: float = 0.0,
                     tag: int | None = None) -> str | None:
        """Send on the port (with _port_lock held): now, or at `deadline` if the port sends at given
        times itself (send_at; 0 = after what it already holds). A one-line failure reason, or None."""
        if isinstance(messages, mido.Message):
            messages = [messages]
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

    def _silence_locked(self, all_notes_off: bool) -> str | None:
        """Note-offs for the open notes (then All Notes Off if asked); best effort on a dead port."""
        messages = [self._message("note_off", key, 0) for key in np.flatnonzero(self._open_notes)]
        if all_notes_off:
            messages.append(mido.Message("control_change", channel=self._channel, control=ALL_NOTES_OFF, value=0))
        self._open_notes[:] = False
        return self._send_locked(messages) if messages else None

    def _finish(self) -> None:
        with self._port_lock:
            failure = self._silence_locked(all_notes_off=True)
        if failure:
            log.warning("while stopping: %s", failure)
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            generator = next((t for t in self._threads if t.name == "rnnrbm-player-generator"), None)
        if generator is not None and generator is not threading.current_thread() and generator.ident:
            generator.join(5.0)
        _running_players.discard(self)
        gil_switching.release(self._gil_switch_interval)
        with self._lock:  # from here on only the callbacks remain: start() may run again
            self._state = STOPPED
            reason, error = self._stop_reason, self._error
        if reason == STOP_ERROR and error:
            # whoever listens says it to the user (the CLI's one line); a second copy would only clutter
            (log.info if self.on_error is not None else log.warning)("playback stopped: %s", error)
            self._call(self.on_error, error)
        self._call(self.on_stopped, reason)

    @staticmethod
    def _call(callback, *args) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("a player callback failed")


def _use_one_torch_thread_here() -> None:
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


# --------------------------------------------------------------- process-wide concerns
_running_players: "weakref.WeakSet[LivePlayer]" = weakref.WeakSet()


def stop_all_players(reason: str = STOP_EXIT) -> None:
    """Stop every running player (note-offs and All Notes Off). Registered with atexit."""
    for player in list(_running_players):
        try:
            player.stop(timeout=2.0, reason=reason)
        except Exception:
            log.exception("stopping a player at exit")


atexit.register(stop_all_players)

__all__ = ["LivePlayer", "PlayedFrame", "stop_all_players", "STOPPED", "PLAYING", "PAUSED",
           "STOP_REQUESTED", "STOP_ERROR", "STOP_EXIT"]
