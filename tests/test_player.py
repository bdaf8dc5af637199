"""The live player with a fake port and a fake clock: no real time passes, nothing sleeps.

The tests move the fake clock from one deadline to the next; FakeClock.wait_until_waiting tells
when the scheduler has sent everything due and waits for its next deadline.
"""
from __future__ import annotations

import threading
from dataclasses import replace

import mido
import numpy as np
import pytest

from jack_synth import FakePort, ScriptedModel, heard_roll, scale_model, unbalanced_notes
from rnnrbm_studio.live import player as player_module
from rnnrbm_studio.live.clock import FakeClock
from rnnrbm_studio.music.midi_files import read_midi
from rnnrbm_studio.music.pianoroll import RollSettings
from rnnrbm_studio.live.player import PAUSED, PLAYING, STOPPED, LivePlayer
from rnnrbm_studio.live.ports import PortError


class Session:
    """A player on a fake port and a fake clock, with its callbacks recorded."""

    def __init__(self, model, **options):
        self.clock = FakeClock()
        self.port = FakePort(self.clock)
        self.errors: list[str] = []
        self.stopped = threading.Event()
        self.reasons: list[str] = []
        options.setdefault("start_delay", 0.05)
        self.player = LivePlayer(model, self.port, clock=self.clock, on_error=self.errors.append,
                                 on_stopped=self._on_stopped, **options)
        self.frames = []

    def _on_stopped(self, reason: str) -> None:
        self.reasons.append(reason)
        self.stopped.set()

    def next_deadline(self, newer_than: int | None = None) -> float:
        return self.clock.wait_until_waiting("scheduler", after=self.clock.now(), newer_than=newer_than)

    def play(self, n: int, newer_than: int | None = None) -> list[float]:
        """Advance to each of the next n deadlines; return when those frames went out. After a change
        that moves deadlines, pass the clock's serial() from before it."""
        deadlines = []
        for i in range(n):
            deadline = self.next_deadline(newer_than if i == 0 else None)
            self.clock.advance_to(deadline)
            deadlines.append(deadline)
        self.next_deadline()
        self.frames += self.player.drain_played_frames()
        return deadlines


@pytest.fixture
def session_factory():
    sessions = []

    def make(model, **options) -> Session:
        session = Session(model, **options)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.player.stop()


def played_keys(frames) -> list[list[int]]:
    return [np.flatnonzero(frame.keys).tolist() for frame in frames]


# ---------------------------------------------------------------------------- timing
def test_frames_go_out_at_absolute_deadlines_and_never_early(session_factory):
    s = session_factory(scale_model(), bpm=120, steps_per_beat=4)  # dt = 0.125 s
    start = s.clock.now()
    s.player.start()
    first = s.next_deadline()
    assert first == pytest.approx(start + 0.05)
    # just before the deadline nothing is sent: the scheduler is still waiting for the same deadline
    s.clock.advance_to(first - 1e-6)
    assert s.clock.wait_until_waiting("scheduler", after=first - 1e-3) == first
    assert s.port.messages("note_on") == []
    deadlines = s.play(12)
    assert deadlines == pytest.approx([first + n * 0.125 for n in range(12)], abs=1e-9)
    assert [f.sent_at for f in s.frames] == deadlines
    assert [f.deadline for f in s.frames] == deadlines
    assert [f.index for f in s.frames] == list(range(12))
    note_on_times = [t for t, m in s.port.sent if m.type == "note_on"]
    assert note_on_times == deadlines  # one key per frame, each struck at its deadline


def test_program_change_first_then_note_differences_with_sustain(session_factory):
    script = [[0, 4], [0, 4, 7], [4, 7], [], [12]]
    s = session_factory(ScriptedModel(script), channel=3, program=19, velocity=90, dynamics=False)
    s.player.start()
    s.play(5)
    s.player.stop()
    sent = s.port.messages()
    assert sent[0] == mido.Message("program_change", channel=3, program=19)
    notes = [(m.type, m.note) for m in sent if m.type.startswith("note")]
    on, off = "note_on", "note_off"
    expected = [(on, 21), (on, 25),  # frame 0
                (on, 28),  # frame 1: 21 and 25 held, sustain without a message
                (off, 21),  # frame 2
                (off, 25), (off, 28),  # frame 3: silence
                (on, 33),  # frame 4
                (off, 33)]  # stop
    assert notes == expected
    assert all(m.channel == 3 for m in sent)
    assert {m.velocity for m in sent if m.type == "note_on"} == {90}
    assert sent[-1] == mido.Message("control_change", channel=3, control=123, value=0)
    assert [f.onsets.nonzero()[0].tolist() for f in s.frames] == [[0, 4], [7], [], [], [12]]


def test_restrike_strikes_held_keys_again(session_factory):
    s = session_factory(ScriptedModel([[0, 4], [0, 4]]), restrike=True)
    s.player.start()
    s.play(2)
    notes = [(m.type, m.note) for m in s.port.messages("note_on", "note_off")]
    assert notes == [("note_on", 21), ("note_on", 25),
                     ("note_off", 21), ("note_off", 25), ("note_on", 21), ("note_on", 25)]
    assert s.frames[1].onsets.nonzero()[0].tolist() == [0, 4]


def test_latency_offset_shifts_every_send(session_factory):
    s = session_factory(scale_model(), bpm=60, steps_per_beat=1, latency_offset=0.2)
    start = s.clock.now()
    s.player.start()
    deadlines = s.play(3)
    assert deadlines == pytest.approx([start + 0.05 + 0.2 + n for n in range(3)])
    s.player.update(replace(s.player.settings, latency_offset=-0.1))
    s.clock.wait_until_waiting("scheduler", deadline=deadlines[-1] + 1.0 - 0.3)
    assert s.play(1) == pytest.approx([deadlines[-1] + 0.7])


def test_tempo_change_reanchors_from_the_last_frame(session_factory):
    s = session_factory(scale_model(), bpm=120, steps_per_beat=2)  # 0.25 s
    s.player.start()
    before = s.play(4)
    s.clock.advance_to(before[-1] + 0.1)  # in the middle of a period
    mark = s.clock.serial()
    s.player.update(replace(s.player.settings, bpm=60, steps_per_beat=2))  # 0.5 s
    after = s.play(3, newer_than=mark)
    assert after == pytest.approx([before[-1] + 0.5 * n for n in (1, 2, 3)])
    assert s.player.frame_period == 0.5 and s.player.bpm == 60 and s.player.steps_per_beat == 2
    assert played_keys(s.frames) == [[39 + k % 8] for k in range(7)]  # no frame lost or repeated


def test_pause_releases_notes_and_resume_continues_the_music(session_factory):
    s = session_factory(ScriptedModel([[0], [0, 2], [2], [5]]))
    s.player.start()
    s.play(2)
    s.player.pause()
    assert s.player.state == PAUSED
    s.port.wait_for(lambda port: not unbalanced_notes(port.messages()))
    count = len(s.port.sent)
    mark = s.clock.serial()
    s.clock.advance(60.0)  # a minute of pause: nothing is played
    assert s.clock.wait_until_waiting("scheduler", without_deadline=True, newer_than=mark) is None
    assert len(s.port.sent) == count and s.player.frames_played == 2
    s.player.resume()
    resumed_at = s.clock.now()
    deadlines = s.play(2)
    assert deadlines[0] == pytest.approx(resumed_at + 0.05)
    assert played_keys(s.frames) == [[0], [0, 2], [2], [5]]
    ons = [m.note for m in s.port.messages("note_on")]
    assert ons == [21, 23, 23, 26]  # key 2 (note 23) was released by the pause and struck again


# ----------------------------------------------------------------- generation settings
def test_temperature_and_gibbs_steps_apply_from_the_next_frame(session_factory):
    model = ScriptedModel([], echo_settings=True)
    s = session_factory(model, gibbs_steps=5, temperature=1.0, lookahead=4)
    s.player.start()
    s.play(2)
    s.player.update(replace(s.player.settings, temperature=2.0, gibbs_steps=7))
    s.play(2)
    # the frames queued before the change were dropped: the very next frame was made with the new settings
    assert played_keys(s.frames) == [[5, 50], [5, 50], [7, 45], [7, 45]]
    assert s.player.temperature == 2.0 and s.player.gibbs_steps == 7
    with pytest.raises(ValueError):
        s.player.update(replace(s.player.settings, temperature=0))
    with pytest.raises(ValueError):
        s.player.update(replace(s.player.settings, gibbs_steps=0))


def test_changes_leave_the_frames_due_within_the_horizon_alone(session_factory):
    model = ScriptedModel([], echo_settings=True)
    s = session_factory(model, bpm=600, steps_per_beat=2, lookahead=4, regenerate_horizon=0.12,
                        gibbs_steps=5)  # dt = 0.05 s
    s.player.start()
    s.play(2)
    s.clock.wait_until_waiting("generator")  # the queue is full: four frames ahead
    # due in 0.05 and 0.10 s: kept; 0.15 and 0.20 s: made again
    s.player.update(replace(s.player.settings, gibbs_steps=7))
    s.play(4)
    assert [keys[0] for keys in played_keys(s.frames)] == [5, 5, 5, 5, 7, 7]


def test_a_port_that_sends_at_deadlines_itself_gets_frames_early(session_factory):
    class TimedPort(FakePort):
        lead_time = 0.03

        def send_at(self, deadline, messages, tag=None):
            with self._changed:
                self.handed.append((self.clock.now(), deadline, tag, [m.type for m in messages]))
            for message in messages:
                self.send(message)

    s = session_factory(ScriptedModel([[0], [1]]), bpm=120, steps_per_beat=2)
    port = TimedPort(s.clock)
    port.handed = []
    s.player.set_port(port)
    s.player.start()
    first = s.clock.wait_until_waiting("scheduler", after=s.clock.now())
    s.clock.advance_to(first)
    second = s.clock.wait_until_waiting("scheduler", after=first)
    assert second == pytest.approx(first + 0.25)
    s.player.stop()
    handed = port.handed
    assert handed[0] == (pytest.approx(handed[0][0]), 0.0, None, ["program_change"])
    assert handed[1][0] == first and handed[1][1] == pytest.approx(first + 0.03) and handed[1][2] == 0
    assert handed[-1][1:3] == (0.0, None) and handed[-1][3][-1] == "control_change"  # stop: after what it holds


def test_swapping_weights_keeps_the_rnn_state(session_factory):
    up, down = scale_model(step=1), scale_model(step=-1)
    s = session_factory(up, lookahead=3)
    s.player.start()
    s.play(5)  # keys 39..43
    s.player.swap_weights(down)
    s.play(4)
    keys = [k[0] - 39 for k in played_keys(s.frames)]
    # a reset would restart from the initial state; kept, it turns round where it was
    assert keys == [0, 1, 2, 3, 4, 3, 2, 1, 0]


def test_swapping_weights_of_another_shape_is_refused_and_playback_goes_on(session_factory):
    s = session_factory(scale_model())
    s.player.start()
    s.play(2)
    with pytest.raises(ValueError, match="do not fit"):
        s.player.swap_weights(scale_model(span=6))
    s.play(2)
    assert [k[0] - 39 for k in played_keys(s.frames)] == [0, 1, 2, 3]
    assert s.player.state == PLAYING


def test_reset_and_prime_set_the_state_from_the_next_frame(session_factory):
    s = session_factory(scale_model(first=2))
    s.player.start()
    s.play(3)  # 2, 3, 4
    s.player.reset_state()
    s.play(2)  # 2, 3 again
    primer = np.zeros((3, 88), dtype=np.uint8)
    primer[2, 39 + 6] = 1  # the primer ends on key 6: the music continues with 7
    s.player.prime(primer)
    s.play(2)
    assert [k[0] - 39 for k in played_keys(s.frames)] == [2, 3, 4, 2, 3, 7, 0]
    with pytest.raises(ValueError):
        s.player.prime(np.zeros((3, 12)))


def test_prime_from_a_midi_file(session_factory, tmp_path):
    primer = np.zeros((4, 88), dtype=np.uint8)
    primer[:, 39 + 3] = 1
    from rnnrbm_studio.music.midi_files import roll_to_midi

    roll_to_midi(primer, tmp_path / "primer.mid", steps_per_beat=2)
    s = session_factory(scale_model())
    assert s.player.prime_from_midi(tmp_path / "primer.mid", RollSettings(steps_per_beat=2)) == 4
    s.player.start()
    s.play(2)
    assert [k[0] - 39 for k in played_keys(s.frames)] == [4, 5]


# ---------------------------------------------------------------------- stuck notes
def test_stop_releases_every_note_then_sends_all_notes_off(session_factory):
    s = session_factory(ScriptedModel([[0, 4, 7], [0, 4, 7, 12]]), channel=2)
    s.player.start()
    s.play(2)
    assert s.player.open_notes == [21, 25, 28, 33]
    s.player.stop()
    assert s.player.state == STOPPED and s.reasons == [player_module.STOP_REQUESTED]
    tail = s.port.messages()[-5:]
    assert sorted(m.note for m in tail[:4] if m.type == "note_off") == [21, 25, 28, 33]
    assert tail[-1] == mido.Message("control_change", channel=2, control=123, value=0)
    assert unbalanced_notes(s.port.messages()) == {}
    assert s.player.open_notes == []
    s.player.stop()  # twice is harmless
    assert s.reasons == [player_module.STOP_REQUESTED]


def test_panic_silences_all_channels(session_factory):
    s = session_factory(ScriptedModel([[0, 1]]))
    s.player.start()
    s.play(1)
    before = len(s.port.sent)
    s.player.panic()
    panic = s.port.messages()[before:]
    assert len(panic) == 16 + 16 * 128
    assert [m.channel for m in panic[:16]] == list(range(16))
    assert all(m.type == "control_change" and m.control == 123 for m in panic[:16])
    assert {(m.channel, m.note) for m in panic[16:] if m.type == "note_off"} == {
        (c, n) for c in range(16) for n in range(128)}
    assert s.player.open_notes == []
    s.play(1)  # the held keys are struck again: the player knows they were silenced
    assert [m.note for m in s.port.messages("note_on")] == [21, 22, 21, 22]


def test_atexit_hook_stops_running_players_with_note_offs(session_factory):
    s = session_factory(ScriptedModel([[3]]))
    s.player.start()
    s.play(1)
    player_module.stop_all_players()
    assert s.reasons == [player_module.STOP_EXIT]
    assert unbalanced_notes(s.port.messages()) == {}


def test_changing_port_silences_the_old_one(session_factory):
    s = session_factory(ScriptedModel([[0], [0], [5]]), program=7)
    s.player.start()
    s.play(1)
    new_port = FakePort(s.clock, "other synth")
    assert s.player.set_port(new_port) is s.port
    assert unbalanced_notes(s.port.messages()) == {}
    assert s.port.messages()[-1].is_cc(123)
    s.play(2)
    assert new_port.messages()[0] == mido.Message("program_change", program=7)
    assert [(m.type, m.note) for m in new_port.messages("note_on", "note_off")] == [
        ("note_on", 21), ("note_off", 21), ("note_on", 26)]


# ---------------------------------------------------------------------------- errors
def test_a_port_that_fails_while_playing_stops_the_player_cleanly(session_factory):
    raised = []
    previous_hook = threading.excepthook
    threading.excepthook = raised.append
    try:
        s = session_factory(scale_model())
        s.player.start()
        s.play(2)
        s.port.fail_after = len(s.port.sent)
        deadline = s.next_deadline()
        s.clock.advance_to(deadline)
        assert s.stopped.wait(5)
        assert s.player.wait_stopped(5)
    finally:
        threading.excepthook = previous_hook
    assert raised == []
    assert s.reasons == ["error"] and len(s.errors) == 1
    assert "fake synth" in s.errors[0] and "went away" in s.errors[0]
    assert s.player.state == STOPPED and s.player.error == s.errors[0]


def test_the_player_can_start_again_right_after_an_error(session_factory):
    s = session_factory(ScriptedModel([[0], [1]]))
    s.player.start()
    s.play(1)
    s.port.fail_after = len(s.port.sent)
    s.clock.advance(1.0)
    assert s.stopped.wait(5)  # set inside on_stopped: the scheduler thread may still be finishing
    s.port.fail_after = None
    s.player.start()
    s.play(2)
    assert s.player.state == PLAYING and s.player.error is None
    assert [f.index for f in s.frames][-2:] == [2, 3]


def test_a_port_whose_synth_vanished_is_noticed_by_the_probe(session_factory):
    s = session_factory(scale_model(), probe_interval=0.5, bpm=60, steps_per_beat=1)
    s.player.start()
    s.play(1)
    s.port.gone = "the MIDI output 'fake synth' is gone (did the synth quit?)"
    s.clock.advance(0.6)  # the next probe is due; the next frame is not
    assert s.stopped.wait(5)
    assert s.errors == [s.port.gone] and s.reasons == ["error"]
    assert s.player.frames_played == 1
    # the port only says it is gone: what it still takes, it gets (a probe may be wrong)
    assert unbalanced_notes(s.port.messages()) == {}
    assert s.port.messages()[-1].is_cc(123)


def test_a_failing_model_stops_the_player_with_a_message(session_factory):
    model = ScriptedModel([[0]])
    model.fail_at = 2
    s = session_factory(model)
    s.player.start()
    s.clock.advance(1.0)
    assert s.stopped.wait(5)
    assert "generating music failed" in s.errors[0] and "the model broke" in s.errors[0]
    assert unbalanced_notes(s.port.messages()) == {}


def test_callbacks_may_call_back_into_the_player(session_factory):
    s = session_factory(ScriptedModel([[0], [1]]))
    seen = []
    s.player.on_error = lambda message: (s.player.stop(), seen.append((message, s.player.drain_played_frames())))
    s.player.start()
    s.play(1)
    s.port.fail_after = 0
    s.clock.advance(1.0)
    assert s.stopped.wait(5)  # no deadlock: callbacks run with no lock held
    assert len(seen) == 1


def test_panic_without_playing_raises_port_error_when_the_port_fails():
    clock = FakeClock()
    port = FakePort(clock)
    port.fail_after = 0
    player = LivePlayer(ScriptedModel([[0]]), port, clock=clock)
    with pytest.raises(PortError, match="went away"):
        player.panic()
    with pytest.raises(PortError):
        LivePlayer(ScriptedModel([[0]]), None, clock=clock).start()


def test_slow_generation_is_played_late_then_the_grid_restarts_from_it(session_factory):
    model = ScriptedModel([[0], [1], [2], [3]])
    model.gate = threading.Event()  # closed: the generator is stuck in model.step
    s = session_factory(model, lookahead=1, bpm=60, steps_per_beat=1)
    started = s.clock.now()
    s.player.start()
    s.clock.wait_until_waiting("scheduler", without_deadline=True)  # nothing to play yet
    late_at = s.clock.advance(3.0)  # far past the first deadline
    model.gate.set()
    s.play(2)
    first, second, third = s.frames
    assert first.deadline == pytest.approx(started + 0.05) and first.sent_at == late_at
    assert s.player.underruns == 1
    assert second.sent_at == pytest.approx(late_at + 1.0)  # not rushed out right after the late one
    assert third.sent_at == pytest.approx(late_at + 2.0)
    assert played_keys(s.frames) == [[0], [1], [2]]


# ------------------------------------------------------------------------- recording
def test_recording_exports_exactly_the_frames_heard(session_factory, tmp_path):
    rng = np.random.default_rng(3)
    script = [sorted(rng.choice(88, size=rng.integers(0, 5), replace=False).tolist()) for _ in range(40)]
    s = session_factory(ScriptedModel(script), bpm=100, steps_per_beat=4, channel=5, program=40)
    s.player.start()
    s.play(40)
    s.player.stop()
    roll = s.player.recorded_roll()
    assert roll.shape == (40, 88) and roll.dtype == np.uint8
    expected = np.zeros((40, 88), dtype=np.uint8)
    for t, keys in enumerate(script):
        expected[t, keys] = 1
    np.testing.assert_array_equal(roll, expected)
    heard = heard_roll(s.port.sent, [f.sent_at for f in s.frames], channel=5)
    np.testing.assert_array_equal(heard, roll)
    midi = s.player.export_midi(tmp_path / "session.mid")
    assert mido.tempo2bpm(midi.tracks[0][0].tempo) == pytest.approx(100)
    reread = read_midi(tmp_path / "session.mid", RollSettings(steps_per_beat=4)).roll
    np.testing.assert_array_equal(reread, roll[:len(reread)])
    assert not roll[len(reread):].any()  # only silent frames at the end are missing from the file
    programs = [m for m in mido.MidiFile(tmp_path / "session.mid").tracks[0] if m.type == "program_change"]
    assert programs[0].program == 40 and programs[0].channel == 5


def test_played_frames_buffer_keeps_the_newest_when_the_ui_falls_behind(session_factory):
    s = session_factory(ScriptedModel([[k] for k in range(10)]), played_buffer_size=4)
    s.player.start()
    for _ in range(10):
        s.clock.advance_to(s.next_deadline())
    s.next_deadline()
    frames = s.player.drain_played_frames()
    assert [f.index for f in frames] == [6, 7, 8, 9]
    assert [np.flatnonzero(f.keys).tolist() for f in frames] == [[6], [7], [8], [9]]
    assert s.player.played_frames_dropped == 6
    assert s.player.drain_played_frames() == []
    assert s.player.recorded_roll().shape[0] == 10  # the recording keeps everything


def test_restart_continues_the_music_and_the_recording(session_factory):
    s = session_factory(scale_model())
    s.player.start()
    s.play(3)
    s.player.stop()
    s.stopped.clear()
    s.player.start()
    s.play(2)
    assert [k[0] - 39 for k in played_keys(s.frames)] == [0, 1, 2, 3, 4]
    assert [f.index for f in s.frames] == [0, 1, 2, 3, 4]
    assert s.player.recorded_roll().shape[0] == 5
    with pytest.raises(RuntimeError):
        s.player.start()


def test_invalid_settings_are_refused():
    clock = FakeClock()
    with pytest.raises(ValueError):
        LivePlayer(scale_model(), FakePort(clock), bpm=0, clock=clock)
    with pytest.raises(ValueError):
        LivePlayer(scale_model(), FakePort(clock), channel=16, clock=clock)
    with pytest.raises(ValueError):
        LivePlayer(scale_model(), FakePort(clock), velocity=0, clock=clock)
    with pytest.raises(ValueError):
        LivePlayer(scale_model(), FakePort(clock), temperature=-1, clock=clock)


def test_gil_switch_interval_is_lowered_while_playing_and_restored(session_factory):
    import sys

    original = sys.getswitchinterval()
    s = session_factory(ScriptedModel([[0]]), gil_switch_interval=0.0005)
    s.player.start()
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    s.player.stop()
    assert sys.getswitchinterval() == pytest.approx(original)
