"""Dynamics: the velocity rule (music/dynamics.py), the same live (NoteOutput) and in exported files."""
from __future__ import annotations

import mido
import numpy as np
import pytest

from jack_synth import FakePort
from rnnrbm_studio.live.clock import FakeClock
from rnnrbm_studio.live.note_output import NoteOutput
from rnnrbm_studio.live.settings import PlaybackSettings
from rnnrbm_studio.music.dynamics import step_velocities, velocities
from rnnrbm_studio.music.midi_files import roll_to_midi


def frame(*keys: int) -> np.ndarray:
    row = np.zeros(88, dtype=np.uint8)
    row[list(keys)] = 1
    return row


def test_downbeats_beats_and_off_beats_and_the_top_voice():
    # two steps per beat: step 0 opens the bar, 2, 4, 6 are beats, odd steps fall between beats
    roll = np.stack([frame(40, 44, 47)] * 9)
    v = velocities(roll, steps_per_beat=2, base=80)
    assert v[0, 47] == 98 and v[0, 40] == v[0, 44] == 86  # downbeat: melody 80+12+6, chord 80+12-6
    assert v[2, 47] == 92 and v[2, 40] == 80  # another beat
    assert v[1, 47] == 78 and v[1, 44] == 66  # off the beat
    assert v[8, 47] == 98  # the next bar (4 beats of 2 steps)
    assert (v[3] == v[1]).all()


def test_off_gives_every_note_the_base_velocity_and_results_stay_in_midi_range():
    roll = np.stack([frame(10, 20)] * 4)
    assert (velocities(roll, 2, base=64, dynamics=False) == 64).all()
    assert velocities(roll, 2, base=127).max() == 127 and velocities(roll, 2, base=1).min() == 1
    assert step_velocities(frame(5, 9), step=4, steps_per_beat=4, base=80).tolist()[5] == 80 + 6 - 6
    # an empty step has no top voice: no error
    assert velocities(np.zeros((2, 88)), 2).shape == (2, 88)


def test_playback_settings_switch_is_a_checked_bool_default_on():
    assert PlaybackSettings().dynamics is True
    assert PlaybackSettings(dynamics=0).dynamics is False


def live_note_ons(roll: np.ndarray, **settings) -> list[tuple[int, int, int]]:
    """(step, note, velocity) of every note-on NoteOutput sends for `roll`, step numbers 0, 1, ..."""
    clock = FakeClock()
    port = FakePort(clock)
    output = NoteOutput(port, PlaybackSettings(**settings), lowest_pitch=21, n_keys=88)
    played = []
    for step, keys in enumerate(roll):
        before = len(port.messages("note_on"))
        output.play_frame(keys, clock.now(), step, clock)
        played += [(step, m.note, m.velocity) for m in port.messages("note_on")[before:]]
    return played


def file_note_ons(midi: mido.MidiFile, ticks_per_step: int) -> list[tuple[int, int, int]]:
    tick, found = 0, []
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "note_on" and message.velocity > 0:
            found.append((tick // ticks_per_step, message.note, message.velocity))
    return sorted(found)


@pytest.mark.parametrize("dynamics", [True, False])
def test_a_roll_played_live_and_exported_has_the_same_velocities(tmp_path, dynamics):
    rng = np.random.default_rng(3)
    roll = (rng.random((24, 88)) < 0.04).astype(np.uint8)
    roll[:, 60] = np.arange(24) % 3 > 0  # a melody held over steps: struck once, at its onset
    live = sorted(live_note_ons(roll, steps_per_beat=4, velocity=70, dynamics=dynamics))
    midi = roll_to_midi(roll, tmp_path / "take.mid", steps_per_beat=4, velocity=70, dynamics=dynamics)
    exported = file_note_ons(mido.MidiFile(tmp_path / "take.mid"), 480 // 4)
    assert live == exported == file_note_ons(midi, 480 // 4)
    heard = {velocity for _, _, velocity in live}
    if dynamics:
        assert len(heard) >= 4 and max(heard) == 70 + 12 + 6  # accents: not one flat velocity
    else:
        assert heard == {70}


def test_changing_the_switch_while_playing_applies_from_the_next_note():
    clock = FakeClock()
    port = FakePort(clock)
    output = NoteOutput(port, PlaybackSettings(velocity=80), lowest_pitch=21, n_keys=88)
    output.play_frame(frame(30), clock.now(), 0, clock)
    assert output.apply(PlaybackSettings(velocity=80, dynamics=False), running=True) is None
    output.play_frame(frame(31), clock.now(), 1, clock)
    assert [m.velocity for m in port.messages("note_on")] == [98, 80]


@pytest.mark.parametrize("flag", [[], ["--no-dynamics"]])
def test_generate_writes_the_rule_s_velocities_unless_told_not_to(tmp_path, capsys, flag):
    import torch

    from rnnrbm_studio.cli import main
    from rnnrbm_studio.model import RnnRbm, RnnRbmConfig
    from rnnrbm_studio.music.pianoroll import RollSettings
    from rnnrbm_studio.music.midi_files import read_midi
    from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = RnnRbm(RnnRbmConfig(n_hidden=6, n_hidden_recurrent=4))
    with torch.no_grad():
        model.bv.fill_(-2.0)  # a few keys per step: chords with a top voice
    save_checkpoint(tmp_path / "m.pt", model_checkpoint(model))
    out = tmp_path / "g.mid"
    assert main(["generate", str(tmp_path / "m.pt"), "--out", str(out), "--frames", "16", "--seed", "1", *flag]) == 0
    capsys.readouterr()
    roll = read_midi(out, RollSettings()).roll  # 2 steps per beat, the model's grid
    written = file_note_ons(mido.MidiFile(out), 480 // 2)
    assert written, "the model wrote no notes to check"
    expected = velocities(roll, 2, 80, dynamics=not flag)
    assert [v for _, note, v in written] == [int(expected[step, note - 21]) for step, note, _ in written]
    heard = {v for _, _, v in written}
    assert heard == {80} if flag else len(heard) > 1


@pytest.mark.parametrize("flag, expected", [([], True), (["--dynamics"], True), (["--no-dynamics"], False)])
def test_play_s_switch_reaches_the_playback_settings(flag, expected):
    from rnnrbm_studio.cli import build_parser
    from rnnrbm_studio.cli.live import playback_settings
    from rnnrbm_studio.music.pianoroll import RollSettings

    args = build_parser().parse_args(["play", *flag])
    assert playback_settings(args, RollSettings()).dynamics is expected
