"""The parts of the live player, each on its own: settings, schedule, note output, recorder, generator,
transport, and the port base class. Fake clocks and fake ports; nothing sleeps.

tests/test_player.py tests the parts together through LivePlayer.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading

import mido
import numpy as np
import pytest

from jack_synth import FakePort, ScriptedModel, scale_model, unbalanced_notes
from rnnrbm_studio.live.clock import FakeClock
from rnnrbm_studio.live.generator import Generator
from rnnrbm_studio.live.note_output import NoteOutput
from rnnrbm_studio.live.output_port import BaseOutputPort, PortError
from rnnrbm_studio.live.recorder import PlayedFrame, Recorder
from rnnrbm_studio.live.scheduler import Schedule
from rnnrbm_studio.live.settings import PlaybackSettings
from rnnrbm_studio.live.transport import PAUSED, PLAYING, STOP_ERROR, STOP_REQUESTED, Transport
from rnnrbm_studio.music.midi_files import read_midi
from rnnrbm_studio.music.pianoroll import RollSettings, own_tempo, playback_grid


def keys(*indices: int, n: int = 88) -> np.ndarray:
    frame = np.zeros(n, dtype=np.uint8)
    frame[list(indices)] = 1
    return frame


# ------------------------------------------------------------------------------ settings
def test_settings_defaults_and_frame_period():
    settings = PlaybackSettings()
    assert (settings.bpm, settings.steps_per_beat, settings.temperature, settings.gibbs_steps) == (120.0, 2, 1.0, None)
    assert settings.frame_period == 0.25
    assert PlaybackSettings(bpm=60, steps_per_beat=4).frame_period == 0.25


@pytest.mark.parametrize("field, value, words", [
    ("bpm", 0, "tempo must be between 0 and 1000 BPM"), ("bpm", 1001, "tempo"), ("bpm", float("nan"), "tempo"),
    ("steps_per_beat", 0, "steps per beat"), ("steps_per_beat", 2.5, "steps per beat"),
    ("steps_per_beat", 97, "steps per beat"), ("gibbs_steps", 0, "Gibbs steps"), ("gibbs_steps", 1.5, "Gibbs"),
    ("temperature", 0, "temperature must be positive"), ("temperature", -1, "temperature"),
    ("velocity", 0, "MIDI velocity"), ("velocity", 128, "velocity"), ("channel", 16, "MIDI channel"),
    ("channel", -1, "channel"), ("program", 128, "MIDI program"), ("latency_offset", float("inf"), "latency"),
    ("seed", -1, "seed"), ("seed", 0.5, "seed")])
def test_settings_refuse_values_out_of_range_once_where_they_are_made(field, value, words):
    with pytest.raises(ValueError, match=words):
        PlaybackSettings(**{field: value})
    with pytest.raises(ValueError, match=words):  # a change is checked the same way
        dataclasses.replace(PlaybackSettings(), **{field: value})


def test_settings_are_frozen_and_of_one_type_per_field():
    settings = PlaybackSettings(bpm=96, steps_per_beat=np.int64(4), velocity=100.0, gibbs_steps=np.int32(7))
    assert type(settings.bpm) is float and type(settings.steps_per_beat) is int
    assert type(settings.velocity) is int and type(settings.gibbs_steps) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.bpm = 100


def test_the_time_grid_comes_with_the_model():
    seconds, beats = RollSettings(seconds_per_step=0.3), RollSettings(steps_per_beat=4)
    assert own_tempo(seconds) == pytest.approx(200) and own_tempo(beats) is None
    assert playback_grid(seconds) == (pytest.approx(200), 1)
    assert playback_grid(seconds, bpm=100) == (100, 1)  # asked for: slower than it learned
    assert playback_grid(beats) == (120.0, 4) and playback_grid(beats, 90) == (90.0, 4)
    assert PlaybackSettings.for_model(seconds).frame_period == pytest.approx(0.3)
    assert PlaybackSettings.for_model(beats, bpm=60).frame_period == pytest.approx(0.25)
    assert PlaybackSettings.for_model(beats, steps_per_beat=2, temperature=2).steps_per_beat == 2


# ------------------------------------------------------------------------------ schedule
def test_schedule_deadlines_are_absolute_from_the_anchor():
    schedule = Schedule(period=0.1, latency_offset=0.0, start_delay=0.05)
    assert schedule.due_by(1e9, 4) == 0  # not anchored yet
    schedule.anchor_if_restarting(10.0)
    schedule.anchor_if_restarting(99.0)  # anchored once per restart
    taken = [schedule.take(now=10.05 + n * 0.1) for n in range(1000)]
    assert [index for index, _ in taken] == list(range(1000))
    # n * period from the anchor, not a sum of 1000 periods: no drift
    assert taken[-1][1] == 10.05 + 999 * 0.1 and schedule.underruns == 0


def test_schedule_latency_offset_shifts_deadlines_and_a_negative_one_delays_the_start():
    schedule = Schedule(period=1.0, latency_offset=0.2, start_delay=0.05)
    schedule.anchor_if_restarting(0.0)
    assert schedule.deadline(0) == pytest.approx(0.25) and schedule.nominal(0) == pytest.approx(0.05)
    early = Schedule(period=1.0, latency_offset=-0.3, start_delay=0.05)
    early.anchor_if_restarting(0.0)
    assert early.deadline(0) == pytest.approx(0.05)  # never already past when the first frame is due


def test_schedule_tempo_change_keeps_the_beat_from_the_last_frame_sent():
    schedule = Schedule(period=0.25, latency_offset=0.0, start_delay=0.0)
    schedule.anchor_if_restarting(0.0)
    for n in range(4):
        schedule.take(now=n * 0.25)
    schedule.set_period(0.5)
    assert schedule.deadline(schedule.next_index) == pytest.approx(0.75 + 0.5)


def test_schedule_underrun_restarts_the_grid_from_the_late_frame():
    schedule = Schedule(period=0.1, latency_offset=0.0, start_delay=0.0)
    schedule.anchor_if_restarting(0.0)
    assert schedule.take(now=0.0) == (0, 0.0)
    index, deadline = schedule.take(now=3.0)  # frame 1 was due at 0.1
    assert (index, deadline) == (1, pytest.approx(0.1)) and schedule.underruns == 1
    assert schedule.deadline(2) == pytest.approx(3.1)  # not rushed out after the late one
    schedule.take(now=3.1 + 0.04)  # a little late is not an underrun
    assert schedule.underruns == 1


def test_schedule_counts_the_frames_due_within_a_horizon():
    schedule = Schedule(period=0.05, latency_offset=0.0, start_delay=0.0)
    schedule.anchor_if_restarting(0.0)
    schedule.take(now=0.0)
    assert schedule.due_by(horizon=0.12, queued=4) == 2  # due at 0.05 and 0.10
    assert schedule.due_by(horizon=0.12, queued=1) == 1
    schedule.restart()
    assert schedule.due_by(horizon=100.0, queued=4) == 0  # a restart re-anchors first


# --------------------------------------------------------------------------- note output
def output_on(port, **settings) -> NoteOutput:
    """Without dynamics unless asked: these tests watch the messages, test_dynamics.py the velocities."""
    return NoteOutput(port, PlaybackSettings(**{"dynamics": False, **settings}), lowest_pitch=21, n_keys=88)


def test_note_output_sends_differences_and_holds_sustained_keys():
    clock = FakeClock()
    port = FakePort(clock)
    output = output_on(port, velocity=90, channel=3)
    for frame in (keys(0, 4), keys(0, 4, 7), keys(4, 7), keys()):
        sent_at, onsets, failure = output.play_frame(frame, clock.now(), None, clock)
        assert failure is None and sent_at == clock.now()
    assert [(m.type, m.note) for m in port.messages()] == [
        ("note_on", 21), ("note_on", 25), ("note_on", 28), ("note_off", 21), ("note_off", 25), ("note_off", 28)]
    assert {m.velocity for m in port.messages("note_on")} == {90} and {m.channel for m in port.messages()} == {3}
    assert output.open_notes == [] and not output.any_open()


def test_note_output_restrike_strikes_held_keys_again_and_reports_the_onsets():
    clock = FakeClock()
    port = FakePort(clock)
    output = output_on(port, restrike=True)
    output.play_frame(keys(2), 0.0, None, clock)
    _, onsets, _ = output.play_frame(keys(2), 0.0, None, clock)
    assert np.flatnonzero(onsets).tolist() == [2]
    assert [(m.type, m.note) for m in port.messages()] == [("note_on", 23), ("note_off", 23), ("note_on", 23)]


def test_note_output_silence_releases_every_open_note_then_all_notes_off():
    clock = FakeClock()
    port = FakePort(clock)
    output = output_on(port, channel=2)
    output.play_frame(keys(0, 12, 30), 0.0, None, clock)
    assert output.open_notes == [21, 33, 51]
    assert output.silence(all_notes_off=True) is None
    assert unbalanced_notes(port.messages()) == {} and port.messages()[-1].is_cc(123)
    assert port.messages()[-1].channel == 2 and output.open_notes == []


def test_note_output_a_new_channel_releases_the_old_one_and_a_playing_port_hears_the_program():
    clock = FakeClock()
    port = FakePort(clock)
    output = output_on(port, channel=0, program=0)
    output.play_frame(keys(5), 0.0, None, clock)
    assert output.apply(PlaybackSettings(channel=4, program=19), running=True) is None
    tail = port.messages()[-3:]
    assert [(m.type, m.channel) for m in tail] == [("note_off", 0), ("control_change", 0), ("program_change", 4)]
    assert tail[-1].program == 19
    before = len(port.sent)
    assert output.apply(PlaybackSettings(channel=4, program=19, velocity=30, dynamics=False), running=True) is None
    assert len(port.sent) == before  # a new velocity sends nothing by itself
    output.play_frame(keys(1), 0.0, None, clock)
    assert port.messages()[-1] == mido.Message("note_on", channel=4, note=22, velocity=30)


def test_note_output_changing_port_silences_the_old_one():
    clock = FakeClock()
    old, new = FakePort(clock, "old"), FakePort(clock, "new")
    output = output_on(old, program=7)
    output.play_frame(keys(3), 0.0, None, clock)
    returned, failure = output.set_port(new, running=True)
    assert returned is old and failure is None and output.port is new
    assert unbalanced_notes(old.messages()) == {} and old.messages()[-1].is_cc(123)
    assert new.messages() == [mido.Message("program_change", program=7)]


def test_note_output_failures_are_one_line_reasons_naming_the_port():
    clock = FakeClock()
    port = FakePort(clock, "flaky synth")
    port.fail_after = 0
    output = output_on(port)
    _, _, failure = output.play_frame(keys(1), 0.0, None, clock)
    assert failure == "sending to the MIDI output 'flaky synth' failed (the port went away)"
    assert output.open_notes == [22]  # counted as sounding: a note-off too many is harmless, one too few is not
    assert output.panic() is not None and output.open_notes == []
    assert output_on(None).panic() is None  # no port, nothing to silence


def test_note_output_asks_the_port_about_its_destination_and_its_lead_time():
    clock = FakeClock()
    port = FakePort(clock)
    output = output_on(port)
    assert output.problem() is None and output.lead_time == 0.0
    port.gone = "the MIDI output 'fake synth' is gone (did the synth quit?)"
    assert output.problem() == port.gone

    class Broken(FakePort):
        lead_time = 0.03

        def problem(self):
            raise RuntimeError("no answer")

    broken = output_on(Broken(clock))
    assert broken.problem() == "cannot check the MIDI output (no answer)" and broken.lead_time == 0.03


def test_note_output_hands_a_timed_port_its_messages_with_the_deadline():
    handed = []

    class TimedPort(BaseOutputPort):
        lead_time = 0.03

        def send(self, message):
            raise AssertionError("a timed port gets send_at")

        def send_at(self, deadline, messages, tag=None):
            handed.append((deadline, [m.type for m in messages], tag))

    clock = FakeClock()
    output = output_on(TimedPort("timed"))
    output.play_frame(keys(0, 1), 12.5, 7, clock)
    output.silence()
    assert handed == [(12.5, ["note_on", "note_on"], 7), (0.0, ["note_off", "note_off", "control_change"], None)]


# ------------------------------------------------------------------------------ recorder
def played(index: int, *indices: int) -> PlayedFrame:
    frame = keys(*indices)
    return PlayedFrame(index=index, keys=frame, onsets=frame.astype(bool), deadline=float(index),
                       sent_at=float(index))


def test_recorder_keeps_everything_and_the_display_buffer_keeps_the_newest():
    recorder = Recorder(n_keys=88, buffer_size=3)
    assert recorder.roll().shape == (0, 88)
    for index in range(5):
        recorder.add(played(index, index))
    assert [f.index for f in recorder.drain()] == [2, 3, 4] and recorder.dropped == 2
    assert recorder.drain() == []
    np.testing.assert_array_equal(recorder.roll(), np.stack([keys(i) for i in range(5)]))
    recorder.clear()
    assert recorder.roll().shape == (0, 88)


@pytest.mark.parametrize("steps_per_beat, ticks_per_beat", [(4, 480), (7, 672)])
def test_recorder_exports_the_frames_at_the_settings_tempo_and_sound(tmp_path, steps_per_beat, ticks_per_beat):
    recorder = Recorder(n_keys=88)
    for index, frame in enumerate([(0,), (0, 5), (), (12,)]):
        recorder.add(played(index, *frame))
    settings = PlaybackSettings(bpm=90, steps_per_beat=steps_per_beat, velocity=64, channel=5, program=40,
                                dynamics=False)
    midi = recorder.export_midi(tmp_path / "take.mid", settings, lowest_pitch=21)
    assert midi.ticks_per_beat == ticks_per_beat
    assert mido.tempo2bpm(midi.tracks[0][0].tempo) == pytest.approx(90)
    messages = list(mido.MidiFile(tmp_path / "take.mid").tracks[0])
    assert [m.program for m in messages if m.type == "program_change"] == [40]
    assert {(m.channel, m.velocity) for m in messages if m.type == "note_on"} == {(5, 64)}
    reread = read_midi(tmp_path / "take.mid", RollSettings(steps_per_beat=steps_per_beat)).roll
    np.testing.assert_array_equal(reread, recorder.roll())


# ----------------------------------------------------------------------------- generator
class Running:
    """A Generator with its thread, on a fake clock; `imminent` answers what the schedule would."""

    def __init__(self, model, settings: PlaybackSettings | None = None, lookahead: int = 3, keep: int = 0):
        self.clock = FakeClock()
        self.transport = Transport()
        self.transport.begin_locked()
        self.keep, self.lookahead = keep, lookahead
        self.problems: list[str | None] = []
        self.generator = Generator(model, self.transport, settings or PlaybackSettings(), self.clock,
                                   imminent=lambda queued: min(self.keep, queued), lookahead=lookahead,
                                   probe_interval=0.25)
        self.thread = threading.Thread(target=self.generator.run, args=(self.probe,), daemon=True)
        self.thread.start()

    def probe(self):
        return self.problems.pop(0) if self.problems else None

    def full(self) -> None:
        """Return once the queue is full (the thread makes no frame then; it notifies each one)."""
        with self.transport.lock:
            assert self.transport.lock.wait_for(lambda: self.generator.queued_locked() >= self.lookahead, 5)

    def take(self, n: int) -> list[list[int]]:
        """Play the next n frames, each as soon as it is made (the generator notifies each one)."""
        frames = []
        lock = self.transport.lock
        for _ in range(n):
            with lock:
                assert lock.wait_for(self.generator.has_frame_locked, timeout=5), "no frame was made"
                frames.append(np.flatnonzero(self.generator.pop_locked().keys).tolist())
        return frames

    def change(self, settings: PlaybackSettings) -> None:
        """New settings; returns once the generator has filled its queue again."""
        with self.transport.lock:
            self.generator.apply_locked(settings)
        self.full()

    def stop(self) -> None:
        self.transport.request_stop()
        self.thread.join(5)
        assert not self.thread.is_alive()


def test_generator_makes_frames_ahead_and_the_state_follows_what_is_played():
    running = Running(scale_model(), lookahead=3)
    try:
        assert [k[0] - 39 for k in running.take(4)] == [0, 1, 2, 3]
        running.generator.reset()
        assert [k[0] - 39 for k in running.take(2)] == [0, 1]  # from the initial state again
    finally:
        running.stop()


def test_generator_new_settings_remake_all_but_the_imminent_frames_and_temperature_becomes_beta():
    model = ScriptedModel([], echo_settings=True)
    running = Running(model, PlaybackSettings(gibbs_steps=5, temperature=1.0), lookahead=4, keep=1)
    try:
        running.full()
        running.change(PlaybackSettings(gibbs_steps=7, temperature=2.0))
        # the first queued frame was due too soon to make again; the other three were made again
        assert running.take(4) == [[5, 50], [7, 45], [7, 45], [7, 45]]
        assert (7, 0.5) in model.calls  # temperature 2 reaches the model as inverse temperature 0.5
        running.full()
        calls = len(model.calls)
        with running.transport.lock:
            running.generator.apply_locked(PlaybackSettings(gibbs_steps=7, temperature=2.0, velocity=10))
        assert len(model.calls) == calls  # nothing about making frames changed: nothing made again
    finally:
        running.stop()


def test_generator_a_new_seed_remakes_the_frames_with_its_own_sampler():
    model = ScriptedModel([[0]])
    running = Running(model, PlaybackSettings(seed=1), lookahead=3)
    try:
        running.full()
        sampler, made = running.generator._sampler, len(model.calls)
        running.change(PlaybackSettings(seed=2))
        assert running.generator._sampler is not sampler and len(model.calls) == made + 3
    finally:
        running.stop()


def test_generator_prime_and_weights_are_checked():
    running = Running(scale_model())
    try:
        with pytest.raises(ValueError, match="shape"):
            running.generator.prime(np.zeros((3, 12)))
        with pytest.raises(ValueError, match="do not fit"):
            running.generator.swap_weights(scale_model(span=6))
        primer = np.zeros((2, 88), dtype=np.uint8)
        primer[-1, 39 + 5] = 1
        running.generator.prime(primer)
        assert [k[0] - 39 for k in running.take(2)] == [6, 7]
    finally:
        running.stop()


def test_generator_refuses_a_model_whose_keys_are_not_midi_notes():
    with pytest.raises(ValueError, match="do not fit MIDI notes"):
        Generator(ScriptedModel([[0]], lowest_pitch=100), Transport(), PlaybackSettings(), FakeClock(),
                  imminent=lambda queued: 0)


def test_generator_a_port_problem_or_a_broken_model_stops_with_the_reason():
    running = Running(scale_model())
    running.problems.append("the MIDI output 'x' is gone")
    running.full()
    running.clock.advance(0.3)  # the probe is due
    running.thread.join(5)
    assert not running.thread.is_alive()
    assert running.transport.error == "the MIDI output 'x' is gone" and running.transport.stop_reason == STOP_ERROR
    model = ScriptedModel([[0]])
    model.fail_at = 1
    broken = Running(model)
    broken.thread.join(5)
    assert "generating music failed (RuntimeError: the model broke)" == broken.transport.error


# ----------------------------------------------------------------------------- transport
def test_transport_keeps_the_first_reason_and_the_first_error():
    transport = Transport()
    transport.begin_locked()
    assert transport.running()
    transport.pause()
    assert transport.state == PAUSED
    with transport.lock:
        assert transport.resume_locked() and transport.state == PLAYING
        assert not transport.resume_locked()
    transport.request_stop(STOP_REQUESTED)
    transport.fail("too late")  # the user stopped first: no error to report
    assert transport.stop_reason == STOP_REQUESTED and transport.error is None and not transport.running()
    transport.begin_locked()
    transport.fail("first")
    transport.fail("second")
    assert transport.stop_reason == STOP_ERROR and transport.error == "first"


# ---------------------------------------------------------------------------- port base
def test_every_port_is_a_base_output_port():
    from rnnrbm_studio.live.ports import OutputPort
    from rnnrbm_studio.live.sender import SenderProcessPort, _RecordingPort
    from ui_helpers import FakePort as WindowFakePort

    for kind in (OutputPort, SenderProcessPort, _RecordingPort, FakePort, WindowFakePort):
        assert issubclass(kind, BaseOutputPort), kind
    assert issubclass(PortError, Exception)


def test_base_output_port_closes_once_and_as_a_context_manager():
    closed = []

    class Port(BaseOutputPort):
        system = "test"

        def send(self, message):
            pass

        def _close(self):
            closed.append(self.name)

    with Port("one") as port:
        assert not port.closed and port.problem() is None
    port.close()
    assert port.closed and closed == ["one"]
    assert repr(port) == "<MIDI output 'one' (test)>"
    with pytest.raises(NotImplementedError):
        BaseOutputPort("abstract").send(mido.Message("note_on"))


def test_ports_and_the_sender_import_without_a_circle():
    """ports.py no longer needs the sender; the sender opens its port through ports.py."""
    code = ("import sys; import rnnrbm_studio.live.ports; "
            "print('rnnrbm_studio.live.sender' in sys.modules, 'rnnrbm_studio.live.outputs' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
