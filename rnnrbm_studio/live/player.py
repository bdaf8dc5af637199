"""The live player: the RNN-RBM composes frame by frame and a MIDI port plays each frame on time.

LivePlayer is the face the window, the command line and the tests use; the work is in its parts:

- generator.py: the model, its RNN state and the frames generated ahead (a thread);
- scheduler.py: the deadlines `t0 + n * period` on an injected clock, and the thread that meets them;
- note_output.py: the port and the open notes (no note is ever left sounding);
- recorder.py: what was played, and its export to MIDI;
- transport.py: playing, paused or stopped, the two threads, and the condition they wait on;
- settings.py: PlaybackSettings, checked once;
- playalong.py and frame_folding.py: playing along with a musician (accompany, answer), whose MIDI
  input (midi_input.py) the player listens to (listen_to()).

Timing, measured (benchmarks/bench_playback.py): the scheduler shares the GIL with the rest of the
process, so while it runs the GIL switch interval is lowered to 1 ms; it asks for real-time priority
where the system allows; torch runs one thread in the generator. With training in the same process,
only a port in a separate process keeps sends within a millisecond on a loaded machine.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any, Callable, Mapping

import mido
import numpy as np
import torch

from ..music.pianoroll import RollSettings
from ..music.primer import read_primer
from .clock import Clock, MonotonicClock
from .frame_folding import FrameFolder
from .generator import Generator
from .note_output import NoteOutput
from .output_port import PortError
from .playalong import PlayAlong, PlayAlongSettings
from .recorder import PlayedFrame, Recorder
from .scheduler import Schedule, Scheduler
from .settings import PlaybackSettings
from .transport import (PAUSED, PLAYING, STOP_ERROR, STOP_EXIT, STOP_REQUESTED, STOPPED, Transport,
                        stop_all_players)

log = logging.getLogger(__name__)


class LivePlayer:
    """Plays a model live on a MIDI output port, with PlaybackSettings.

    `port` needs `send(mido.Message)`; output_port.BaseOutputPort says what else a port may offer
    (problem(), asked every probe_interval; send_at() with lead_time). The player never closes the
    port: whoever opened it does. Keyword arguments named after PlaybackSettings fields (bpm=96...)
    are applied over `settings`.

    The model is copied, so a trainer may keep changing the original; push its weights with
    swap_weights(). Every method may be called from any thread; on_error(message) and
    on_stopped(reason) are called from a player thread, with no lock held.
    """

    def __init__(self, model, port, settings: PlaybackSettings | None = None, *, lookahead: int = 4,
                 start_delay: float = 0.05, regenerate_horizon: float = 0.15, played_buffer_size: int = 1024,
                 probe_interval: float = 0.25, gil_switch_interval: float | None = 0.001,
                 realtime_priority: bool = True, clock: Clock | None = None,
                 on_error: Callable[[str], Any] | None = None, on_stopped: Callable[[str], Any] | None = None,
                 playalong: PlayAlongSettings | None = None, **setting_changes):
        settings = replace(settings or PlaybackSettings(), **setting_changes)
        self._clock: Clock = clock or MonotonicClock()
        self.on_error = on_error
        self.on_stopped = on_stopped
        self._regenerate_horizon = float(regenerate_horizon)
        self._updating = threading.Lock()  # one update() at a time: the port applies them in order
        self._transport = Transport(gil_switch_interval)
        self._lock = self._transport.lock
        self._settings = settings  # under _lock, as the parts' state (see transport.py)
        self._schedule = Schedule(settings.frame_period, settings.latency_offset, start_delay)
        self._recorder = Recorder(int(model.config.n_visible), played_buffer_size)
        self._generator = Generator(model, self._transport, settings, self._clock, self._imminent_locked,
                                    lookahead=lookahead, probe_interval=probe_interval, due=self._schedule.next_due,
                                    on_musician_frame=self._recorder.add_musician)
        self._output = NoteOutput(port, settings, self._generator.lowest_pitch, self._generator.n_keys)
        # the musician's notes, folded on the frame grid; fed by a MIDI input (listen_to) or directly
        self.folder = FrameFolder(self._generator.n_keys, self._generator.lowest_pitch)
        self._inputs: list = []
        self.set_playalong(playalong or PlayAlongSettings())
        self._scheduler = Scheduler(self._transport, self._schedule, self._generator, self._output,
                                    self._recorder, self._clock, self._finish, realtime_priority)

    # ---------------------------------------------------------------------- properties
    @property
    def state(self) -> str:
        """'playing', 'paused' or 'stopped'."""
        with self._lock:
            return self._transport.state

    @property
    def error(self) -> str | None:
        """The message of the error that stopped the player last, if any."""
        with self._lock:
            return self._transport.error

    @property
    def settings(self) -> PlaybackSettings:
        with self._lock:
            return self._settings

    port = property(lambda self: self._output.port)
    bpm = property(lambda self: self.settings.bpm)
    steps_per_beat = property(lambda self: self.settings.steps_per_beat)
    frame_period = property(lambda self: self.settings.frame_period)
    temperature = property(lambda self: self.settings.temperature)
    gibbs_steps = property(lambda self: self.settings.gibbs_steps)
    open_notes = property(lambda self: self._output.open_notes, doc="MIDI notes sounding now.")

    @property
    def frames_played(self) -> int:
        with self._lock:
            return self._schedule.next_index

    @property
    def underruns(self) -> int:
        """Frames that were not generated by their deadline and went out late."""
        with self._lock:
            return self._schedule.underruns

    @property
    def generation_time_per_frame(self) -> float | None:
        """Mean seconds model.step took per frame so far (compare with frame_period)."""
        return self._generator.generation_time_per_frame()

    @property
    def realtime_scheduling(self) -> bool | None:
        """Whether the scheduler thread runs at real-time priority (None: not started yet)."""
        with self._lock:
            return self._scheduler.realtime

    @property
    def rnn_state(self) -> torch.Tensor:
        """The RNN state after the last frame played (or primed)."""
        with self._lock:
            return self._generator.played_state

    # ---------------------------------------------------------------------- transport
    def start(self) -> None:
        """Start playing (again): from the current RNN state; the recording continues."""
        if self._output.port is None:
            raise PortError("no MIDI output chosen to play on")
        self._transport.start(lambda: self._generator.run(self._problem), self._scheduler.run,
                              on_begin_locked=self._schedule.restart)

    def _problem(self) -> str | None:
        """The output's word on its destination, then each input's (a keyboard unplugged, JACK gone)."""
        problem = self._output.problem()
        for midi_input in list(self._inputs):
            problem = problem or midi_input.problem()
        return problem

    # ------------------------------------------------------------------ playing along
    def listen_to(self, midi_input) -> None:
        """Hear the musician on `midi_input` (a midi_input.MidiInput, or anything with
        add_listener(callable(time, message_bytes)) and problem()). Its events must be stamped with
        this player's clock. The player never closes it: whoever opened it does."""
        midi_input.add_listener(self.folder.message)
        self._inputs.append(midi_input)

    def set_playalong(self, settings: PlayAlongSettings) -> None:
        """Play alone (mode solo), accompany or answer the musician, from the next frame on."""
        if not isinstance(settings, PlayAlongSettings):
            raise TypeError(f"set_playalong() takes PlayAlongSettings, not {type(settings).__name__}")
        with self._lock:
            current = self._generator.playalong
            if current is not None and settings.mode == current.settings.mode:
                current.set_settings(settings)  # split, notes, answer lengths: no new start needed
                return
            self._generator.set_playalong_locked(PlayAlong(self.folder, settings))

    @property
    def playalong(self) -> PlayAlongSettings:
        with self._lock:
            return self._generator.playalong.settings

    @property
    def answering(self) -> bool:
        """In answer mode: whether the model is answering now (else it listens)."""
        with self._lock:
            return self._generator.playalong.answering

    def musician_roll(self) -> np.ndarray:
        """The musician's frames beside recorded_roll()'s, (T, n_keys) uint8."""
        return self._recorder.musician_roll()

    def stop(self, timeout: float = 5.0, reason: str = STOP_REQUESTED) -> None:
        """Stop: note-offs for open notes, then All Notes Off on the channel. Returns when done
        (unless called from a player callback, which returns at once). Stopping twice is harmless."""
        self._transport.stop(timeout, reason)

    def pause(self) -> None:
        """Hold the music: open notes are released; frames already generated wait."""
        self._transport.pause()

    def resume(self) -> None:
        """Continue after pause(): the next frame comes after the start delay."""
        with self._lock:
            if self._transport.resume_locked():
                self._schedule.restart()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the player threads have ended (for instance after an error). True if they have."""
        return self._transport.wait_stopped(timeout)

    # ------------------------------------------------------------------------ settings
    def update(self, settings: PlaybackSettings) -> None:
        """Play with these settings from now on. A new tempo keeps the beat (the next frame comes one
        new period after the last one); new Gibbs steps, temperature or seed apply from the first
        frame due after regenerate_horizon; a new channel releases the notes open on the old one."""
        if not isinstance(settings, PlaybackSettings):
            raise TypeError(f"update() takes PlaybackSettings, not {type(settings).__name__}")
        with self._updating:
            with self._lock:
                old, self._settings = self._settings, settings
                running = self._transport.state != STOPPED
                if settings.frame_period != old.frame_period:
                    self._schedule.set_period(settings.frame_period)
                self._schedule.latency_offset = settings.latency_offset
                self._generator.apply_locked(settings)
                self._lock.notify_all()
            failure = self._output.apply(settings, running)
        if failure:
            self._fail_or_raise(failure)

    def set_port(self, port):
        """Play on another port from the next frame; the old one gets note-offs and All Notes Off
        first. Returns the old port (the caller closes it)."""
        with self._lock:
            running = self._transport.state != STOPPED
        old, failure = self._output.set_port(port, running)
        if failure:
            self._transport.fail(failure)
        return old

    # ------------------------------------------------------------------ the RNN state
    def reset_state(self) -> None:
        """Forget what was played: the next frame starts from the model's initial state."""
        self._generator.reset()

    def prime(self, roll, continue_state: bool = False) -> None:
        """Set the RNN state by running it over a piano-roll (T, n_keys): the music continues it.
        From the initial state, or from the current one if continue_state."""
        self._generator.prime(roll, continue_state)

    def prime_from_midi(self, path, settings: RollSettings | None = None) -> int:
        """prime() from a MIDI file read on `settings` (the model's grid; default: the player's steps
        per beat); returns its number of frames. Raises MidiReadError (a StudioError)."""
        grid = settings or RollSettings(steps_per_beat=self.steps_per_beat, lowest_pitch=self._generator.lowest_pitch,
                                        n_keys=self._generator.n_keys)
        roll = read_primer(path, grid)
        self.prime(roll)
        return int(roll.shape[0])

    def swap_weights(self, source: Mapping[str, torch.Tensor] | torch.nn.Module) -> None:
        """Play with new weights from the first frame due after regenerate_horizon, keeping the RNN state.

        `source` is a model or a state dict; it is copied here, on the caller's thread, so pass it
        where it is consistent (e.g. from the trainer's progress callback between updates).
        Raises ValueError if the weights do not fit the playing model.
        """
        self._generator.swap_weights(source)

    def _imminent_locked(self, queued: int) -> int:
        """How many of the `queued` frames next in line are due within regenerate_horizon."""
        if self._transport.state != PLAYING:
            return 0
        return self._schedule.due_by(self._clock.now() + self._regenerate_horizon, queued)

    # ------------------------------------------------------------------- what was played
    def drain_played_frames(self) -> list[PlayedFrame]:
        """The frames played since the last call, oldest first (at most played_buffer_size: when the
        UI falls behind, the oldest are dropped; see played_frames_dropped)."""
        return self._recorder.drain()

    @property
    def played_frames_dropped(self) -> int:
        return self._recorder.dropped

    def recorded_roll(self) -> np.ndarray:
        """Every frame played in this session, (T, n_keys) uint8."""
        return self._recorder.roll()

    def clear_recording(self) -> None:
        self._recorder.clear()

    def export_midi(self, path, bpm: float | None = None, steps_per_beat: int | None = None) -> mido.MidiFile:
        """Write the recording as a .mid file: the same frames, each as long as it was played (tempo
        changes kept), or all at `bpm` if given; the musician on a second track if they played.
        Pauses and re-strikes during the session are not in the file."""
        settings = self.settings
        settings = replace(settings, bpm=bpm or settings.bpm, steps_per_beat=steps_per_beat or settings.steps_per_beat)
        return self._recorder.export_midi(path, settings, self._generator.lowest_pitch, one_tempo=bpm is not None)

    # ------------------------------------------------------------------------- panic
    def panic(self) -> None:
        """All Notes Off and note-offs for every key on all 16 channels, now."""
        failure = self._output.panic()
        if failure:
            self._fail_or_raise(failure)

    # ----------------------------------------------------------------------- ending
    def _fail_or_raise(self, message: str) -> None:
        """A failure on the caller's thread: stops a running player (reported through the callbacks),
        or raises PortError when nothing is playing."""
        if not self._transport.running():
            raise PortError(message)
        self._transport.fail(message)

    def _finish(self) -> None:
        """The scheduler's last act: silence, let the generator end, then tell the callbacks."""
        failure = self._output.silence(all_notes_off=True)
        if failure:
            log.warning("while stopping: %s", failure)
        reason, error = self._transport.finish()  # from here on start() may run again
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


__all__ = ["LivePlayer", "PlayedFrame", "stop_all_players", "STOPPED", "PLAYING", "PAUSED",
           "STOP_REQUESTED", "STOP_ERROR", "STOP_EXIT"]
