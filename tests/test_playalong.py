"""Play along on a fake clock: the frame folding, accompany and answer through the real LivePlayer
(a fake port), the clock follower, the knobs map and the two-track recording. No real time passes."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import mido
import numpy as np
import pytest
import torch

from jack_synth import FakePort, unbalanced_notes
from rnnrbm_studio.live.cc_map import CcChange, CcListener, CcMap, CcMapError, apply_change
from rnnrbm_studio.live.clock import FakeClock
from rnnrbm_studio.live.frame_folding import FrameFolder
from rnnrbm_studio.live.midi_clock import ClockFollower
from rnnrbm_studio.live.player import LivePlayer
from rnnrbm_studio.live.playalong import PlayAlongSettings
from rnnrbm_studio.live.settings import PlaybackSettings
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig


def keys_of(array) -> list[int]:
    return (np.flatnonzero(array) + 21).tolist()


# --------------------------------------------------------------------------- folding
def test_a_key_held_across_frames_is_on_in_each_until_its_note_off():
    folder = FrameFolder()
    folder.message(10.1, [0x90, 60, 100])
    folder.message(10.75, [0x80, 60, 0])
    assert keys_of(folder.fold(9.75, 10.0)) == []
    assert keys_of(folder.fold(10.0, 10.25)) == [60]  # struck inside
    assert keys_of(folder.fold(10.25, 10.5)) == [60]  # held across
    assert keys_of(folder.fold(10.5, 10.75)) == [60]  # released exactly at the end: still on
    assert keys_of(folder.fold(10.75, 11.0)) == []  # released exactly at the start: not in it
    assert keys_of(folder.held_at(10.5)) == [60] and keys_of(folder.held_at(10.75)) == []


def test_a_key_struck_and_released_inside_one_frame_counts_for_that_frame_only():
    folder = FrameFolder()
    folder.note_on(5.01, 64)
    folder.note_off(5.02, 64)
    folder.note_on(5.1, 67)
    folder.note_off(5.1, 67)  # same stamp: both read in one poll
    assert keys_of(folder.fold(5.0, 5.25)) == [64, 67]
    assert keys_of(folder.fold(5.25, 5.5)) == []
    assert keys_of(folder.held_at(5.25)) == []


def test_frame_boundaries_belong_to_the_frame_they_start():
    folder = FrameFolder()
    folder.note_on(2.0, 62)  # exactly at a boundary
    assert keys_of(folder.fold(1.75, 2.0)) == []
    assert keys_of(folder.fold(2.0, 2.25)) == [62]
    assert keys_of(folder.held_at(2.0)) == [62]


def test_velocity_zero_is_a_note_off_and_keys_outside_the_model_are_ignored():
    folder = FrameFolder()
    folder.message(1.0, [0x93, 72, 90])  # any channel is the musician
    folder.message(1.3, [0x93, 72, 0])
    folder.message(1.0, [0x90, 10, 90])  # below the model's lowest key
    assert keys_of(folder.fold(1.0, 1.25)) == [72] and keys_of(folder.fold(1.3, 1.5)) == []
    assert folder.onsets == 2 and folder.quiet_since() == 1.3


def test_the_sustain_pedal_keeps_released_keys_sounding_until_it_rises():
    folder = FrameFolder()
    folder.message(1.0, [0xB0, 64, 127])
    folder.note_on(1.1, 48)
    folder.note_off(1.2, 48)
    assert keys_of(folder.fold(1.5, 1.75)) == [48] and folder.sounding()
    folder.message(2.0, [0xB0, 64, 0])
    assert keys_of(folder.fold(2.0, 2.25)) == [] and folder.quiet_since() == 2.0


def test_a_key_struck_again_while_sustained_starts_a_new_note():
    folder = FrameFolder()
    folder.pedal(0.0, True)
    folder.note_on(1.0, 60)
    folder.note_off(1.1, 60)
    folder.note_on(1.5, 60)
    folder.pedal(1.6, False)  # the key is still down: it sounds on
    assert keys_of(folder.held_at(1.7)) == [60]
    folder.note_off(1.8, 60)
    assert keys_of(folder.held_at(1.9)) == [] and folder.first_onset_since(1.2) == 1.5


# --------------------------------------------------------------------- the engine
def eager_model(seed: int = 0) -> RnnRbm:
    """A small RNN-RBM that wants to play many keys (positive visible biases), so that a doubled key
    or a note above a split would show."""
    torch.manual_seed(seed)
    model = RnnRbm(RnnRbmConfig(n_hidden=16, n_hidden_recurrent=8, gibbs_steps=5))
    with torch.no_grad():
        model.bv.fill_(2.0)
        model.W.mul_(0.1)
    return model.eval()


class Along:
    """A playing-along LivePlayer on a fake clock and a fake port, at 120 BPM, 2 steps per beat."""

    def __init__(self, model, playalong: PlayAlongSettings, **options):
        self.clock = FakeClock()
        self.port = FakePort(self.clock)
        self.errors: list[str] = []
        self.player = LivePlayer(model, self.port, PlaybackSettings(bpm=120, steps_per_beat=2, dynamics=False),
                                 clock=self.clock, playalong=playalong, probe_interval=1e6,
                                 on_error=self.errors.append, **options)
        self.frames = []

    def frame(self) -> float:
        """Advance to the next deadline; return it once that frame went out."""
        deadline = self.clock.wait_until_waiting("generator", after=self.clock.now())
        while deadline > self.clock.now() + 100:  # its wait for the next probe, before the frame was taken
            deadline = self.clock.wait_until_waiting("generator", after=self.clock.now(),
                                                     newer_than=self.clock.serial() - 1)
        expected = len(self.frames) + 1
        self.clock.advance_to(deadline)
        give_up = time.monotonic() + 30  # real seconds: a frame that never comes fails, never hangs
        while True:  # until the scheduler has played and recorded it, and waits for the next one
            if time.monotonic() > give_up:
                raise TimeoutError(f"frame {expected} never went out; waiting now: {self.clock.waiting()}")
            mark = self.clock.serial()
            self.frames += self.player.drain_played_frames()
            if len(self.frames) >= expected:
                return deadline
            self.clock.wait_until_waiting("scheduler", without_deadline=True, newer_than=mark)


@pytest.fixture
def along():
    made = []

    def make(model, playalong, **options):
        made.append(Along(model, playalong, **options))
        return made[-1]

    yield make
    for session in made:
        session.player.stop()


def test_accompany_never_doubles_a_held_key_and_the_rnn_hears_the_whole_frame(along):
    s = along(eager_model(), PlayAlongSettings(mode="accompany"))
    s.player.start()
    held = {60, 64, 67}
    for note in held:
        s.player.folder.note_on(s.clock.now(), note)
    for _ in range(12):
        s.frame()
    s.player.stop()
    played = [set(keys_of(f.keys)) for f in s.frames]
    assert all(p and not (p & held) for p in played), played  # non-empty, never the musician's keys
    assert all(set(keys_of(f.musician)) == held for f in s.frames)
    note_ons = {m.note for m in s.port.messages("note_on")}
    assert note_ons and not (note_ons & held)
    assert unbalanced_notes(s.port.messages()) == {}
    np.testing.assert_array_equal(s.player.musician_roll()[:11].astype(bool).any(axis=0),
                                  np.isin(np.arange(21, 109), list(held)))


def test_accompany_below_a_split_with_at_most_n_notes(along):
    s = along(eager_model(1), PlayAlongSettings(mode="accompany", split=60, max_notes=3))
    s.player.start()
    s.player.folder.note_on(s.clock.now(), 72)
    for _ in range(10):
        s.frame()
    s.player.stop()
    played = [keys_of(f.keys) for f in s.frames]
    assert all(0 < len(p) <= 3 and max(p) < 60 for p in played), played


def test_the_decision_is_made_at_the_deadline_from_the_keys_held_then(along):
    s = along(eager_model(2), PlayAlongSettings(mode="accompany"))
    s.player.start()
    first = s.frame()
    s.clock.advance_to(first + 0.2)  # inside the next frame
    s.player.folder.note_on(s.clock.now(), 70)
    second = s.frame()
    assert second == pytest.approx(first + 0.25)
    assert keys_of(s.frames[0].musician) == [] and keys_of(s.frames[1].musician) == [70]
    assert 70 not in keys_of(s.frames[1].keys)
    assert s.frames[1].sent_at == second  # just in time: sent at its own deadline, not ahead


def test_answer_listens_during_the_call_then_answers_after_the_silence_and_stops_when_interrupted(along):
    s = along(eager_model(3), PlayAlongSettings(mode="answer", answer_after_beats=2))
    s.player.start()
    start = s.frame()
    folder = s.player.folder
    for beat in range(4):  # one bar at 120 BPM: a call of four quarter notes, the last ending at +1.9 s
        folder.note_on(start + 0.01 + beat * 0.5, 60 + beat)
        folder.note_off(start + 0.4 + beat * 0.5, 60 + beat)
    quiet = start + 1.9
    while s.clock.now() + 0.25 < quiet + 1.0:  # the call, and (almost) two beats of silence
        s.frame()
    assert len(s.frames) == 12 and folder.quiet_since() == quiet
    assert all(not f.keys.any() for f in s.frames) and s.port.messages("note_on") == []
    answer_start = s.frame()
    assert answer_start - (quiet + 1.0) < 0.5  # within a beat of the two beats of silence
    assert s.frames[-1].keys.any() and s.player.answering
    for _ in range(3):
        s.frame()
    assert all(f.keys.any() for f in s.frames[-4:])
    folder.note_on(s.clock.now() + 0.01, 65)  # the musician plays again
    s.frame()
    interrupted = s.frame()
    assert not s.frames[-1].keys.any() and not s.player.answering and s.player.open_notes == []
    assert interrupted > answer_start
    s.player.stop()
    assert unbalanced_notes(s.port.messages()) == {}


def test_an_answer_lasts_as_long_as_the_call_in_whole_bars(along):
    s = along(eager_model(4), PlayAlongSettings(mode="answer", answer_after_beats=1))
    s.player.start()
    start = s.frame()
    s.player.folder.note_on(start + 0.01, 60)
    s.player.folder.note_off(start + 0.3, 60)  # a short call: one bar of answer (8 frames)
    while not s.player.answering:
        s.frame()
    answering = 1
    while True:
        s.frame()
        if not s.frames[-1].keys.any() and not s.player.answering:
            break
        answering += 1
    assert answering == 8
    for _ in range(4):  # then it listens again, and says nothing new without a new call
        s.frame()
    assert not any(f.keys.any() for f in s.frames[-4:])


def test_solo_is_unchanged_and_a_mode_change_applies_from_the_next_frame(along):
    s = along(eager_model(5), PlayAlongSettings(mode="solo"))
    s.player.start()
    s.player.folder.note_on(s.clock.now(), 60)
    deadline = s.clock.wait_until_waiting("scheduler", after=s.clock.now())  # solo: frames made ahead
    s.clock.advance_to(deadline)
    s.player.set_playalong(PlayAlongSettings(mode="accompany"))
    for _ in range(3):
        s.frame()
    assert all(60 not in keys_of(f.keys) for f in s.frames[-2:])
    assert s.player.playalong.mode == "accompany"


# ------------------------------------------------------------------------ recording
def test_the_recording_has_the_musician_and_the_model_on_two_tracks_and_keeps_tempo_changes(along, tmp_path):
    s = along(eager_model(6), PlayAlongSettings(mode="accompany"))
    s.player.start()
    s.player.folder.note_on(s.clock.now(), 62)
    for _ in range(4):
        s.frame()
    mark = s.clock.serial()
    s.player.update(PlaybackSettings(bpm=60, steps_per_beat=2, dynamics=False))
    # the generator, woken by the tempo change, waits for the next frame's new deadline (not the old one)
    s.clock.wait_until_waiting("generator", after=s.clock.now(), newer_than=mark)
    for _ in range(4):
        s.frame()
    s.player.stop()
    midi = s.player.export_midi(tmp_path / "session.mid")
    reread = mido.MidiFile(tmp_path / "session.mid")
    assert reread.type == 1 and [t.name for t in reread.tracks] == ["model", "musician"]
    tempos = [(sum(m.time for m in reread.tracks[0][:i + 1]), round(mido.tempo2bpm(m.tempo)))
              for i, m in enumerate(reread.tracks[0]) if m.type == "set_tempo"]
    assert tempos == [(0, 120), (4 * 240, 60)]  # 240 ticks a frame: the change at frame 4
    assert {m.note for m in reread.tracks[1] if m.type == "note_on"} == {62}
    model_notes = {m.note for m in reread.tracks[0] if m.type == "note_on"}
    assert model_notes and 62 not in model_notes
    assert midi.length == pytest.approx(4 * 0.25 + 4 * 0.5)  # as long as it was played


# ------------------------------------------------------------------------------ clock
@pytest.mark.parametrize("bpm", [80, 120, 160])
def test_the_clock_follower_is_within_two_percent_after_one_beat(bpm):
    """Ticks arrive in steps of a JACK period of 256 frames at 48 kHz (5.3 ms), read up to 1 ms late."""
    rng = np.random.default_rng(bpm)
    period = 256 / 48000
    heard = []
    follower = ClockFollower(on_tempo=heard.append)
    t0 = 100.0 + rng.uniform(0, period)
    follower.message(t0, [0xFA])
    for tick in range(25):
        exact = t0 + tick * 60 / bpm / 24
        follower.message(np.ceil(exact / period) * period + rng.uniform(0, 0.001), [0xF8])
    assert follower.running and heard and abs(follower.bpm / bpm - 1) < 0.02


def test_the_clock_follower_follows_a_tempo_change_and_the_transport():
    words = []
    follower = ClockFollower(on_transport=words.append)
    now = 0.0
    for bpm, beats in ((120, 4), (90, 3)):
        for _ in range(beats * 24):
            now += 60 / bpm / 24
            follower.message(now, [0xF8])
    assert follower.bpm == pytest.approx(90, rel=0.02)
    follower.message(now, [0xFC])
    follower.message(now + 5, [0xFB])
    assert words == ["stop", "continue"] and follower.running
    assert follower.message(now, [0x90, 60, 1]) is False


# ------------------------------------------------------------------------------ knobs
def test_a_cc_map_parses_formats_and_turns_controllers_into_settings():
    knobs = CcMap.parse(["temperature=74", "tempo=75,mode=20", "play=21", "gibbs=22"])
    assert knobs.format() == "bpm=75,gibbs_steps=22,mode=20,play=21,temperature=74"
    assert CcMap.parse([knobs.format()]) == knobs
    assert knobs.apply(74, 0) == CcChange("temperature", 0.25) and knobs.apply(74, 127).value == 4.0
    assert knobs.apply(74, 64).value == pytest.approx(1.0, abs=0.05)
    assert knobs.apply(75, 127) == CcChange("bpm", 240.0) and knobs.apply(22, 0).value == 1
    assert [knobs.apply(20, v).value for v in (0, 50, 127)] == ["solo", "accompany", "answer"]
    assert knobs.apply(21, 127, previous=0).value is True and knobs.apply(21, 0, previous=127) is None
    assert knobs.apply(1, 64) is None
    settings, playalong = apply_change(knobs.apply(75, 127), PlaybackSettings(), PlayAlongSettings())
    assert settings.bpm == 240 and playalong.mode == "solo"
    _, playalong = apply_change(knobs.apply(20, 127), PlaybackSettings(), PlayAlongSettings())
    assert playalong.mode == "answer"
    learned = knobs.with_binding(74, "bpm")
    assert learned.controller_of("bpm") == 74 and learned.controller_of("temperature") is None


@pytest.mark.parametrize("items, problem", [(["speed=3"], "no parameter 'speed'"), (["temperature"], "PARAMETER="),
                                            (["temperature=128"], "from 0 to 119"), (["bpm=x"], "a number"),
                                            (["bpm=3", "temperature=3"], "mapped twice")])
def test_a_bad_cc_map_is_one_line(items, problem):
    with pytest.raises(CcMapError, match=problem) as caught:
        CcMap.parse(items)
    assert "\n" not in str(caught.value)


def test_the_cc_listener_sees_presses_and_learns():
    changes, learned = [], []
    listener = CcListener(CcMap.parse(["play=21"]), changes.append, on_learn=learned.append)
    for value in (127, 0, 127):
        listener.message(0.0, [0xB0, 21, value])
    listener.message(0.0, [0x90, 21, 100])
    assert changes == [CcChange("play", True)] * 2 and learned == [21, 21, 21]


def test_playalong_settings_are_checked():
    for wrong in (dict(mode="duet"), dict(split=0), dict(max_notes=0), dict(answer_after_beats=0),
                  dict(answer_bars=65), dict(beats_per_bar=0)):
        with pytest.raises(ValueError):
            PlayAlongSettings(**wrong)


def test_a_player_stopped_while_listening_leaves_nothing_sounding(along):
    s = along(eager_model(7), PlayAlongSettings(mode="accompany"))
    s.player.start()
    s.player.folder.note_on(s.clock.now(), 50)
    for _ in range(3):
        s.frame()
    assert s.player.open_notes
    done = threading.Event()
    threading.Thread(target=lambda: (s.player.stop(), done.set())).start()
    assert done.wait(5)
    assert s.player.open_notes == [] and unbalanced_notes(s.port.messages()) == {}


CHAINS_ASKED: list[tuple[int, object]] = []  # module-level: the player plays a deep copy of the model


class ChainRecordingModel(RnnRbm):
    def step(self, state, sampler=None, gibbs_steps=None, inverse_temperature=1.0, clamp_mask=None,
             clamp_values=None, start=None):
        CHAINS_ASKED.append((gibbs_steps, start))
        return super().step(state, sampler, gibbs_steps, inverse_temperature, clamp_mask, clamp_values, start)


@pytest.mark.parametrize("chain_start,expected", [("prediction", (25, "prediction")), ("silence", (5, None))])
def test_playing_along_uses_the_players_sampler(along, chain_start, expected):
    """The fast sampler (the default) starts each clamped chain at the RNN's guess and runs 25 steps; the
    exact one starts from silence with the model's own steps (at most 100 when playing along)."""
    model = ChainRecordingModel(RnnRbmConfig(n_hidden=16, n_hidden_recurrent=8, gibbs_steps=5))
    model.load_state_dict(eager_model().state_dict())
    s = along(model.eval(), PlayAlongSettings(mode="accompany"))
    s.player.update(replace(s.player.settings, chain_start=chain_start))
    CHAINS_ASKED.clear()
    s.player.start()
    s.player.folder.note_on(s.clock.now(), 60)
    for _ in range(4):
        s.frame()
    s.player.stop()
    assert CHAINS_ASKED and set(CHAINS_ASKED) == {expected}
    assert all(60 not in keys_of(f.keys) for f in s.frames)
