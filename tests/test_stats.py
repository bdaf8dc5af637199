"""Listening statistics on hand-made rolls, and the `stats` command."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from rnnrbm_studio.cli import main
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig
from rnnrbm_studio.quality import stats
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint

LOW = 21  # key 0 is A0 (MIDI 21): key 39 is middle C (60)
C4 = 60 - LOW


def roll_of(frames: list[list[int]], keys: int = 88) -> np.ndarray:
    """A roll from lists of MIDI pitches, one list per frame."""
    roll = np.zeros((len(frames), keys), dtype=np.uint8)
    for t, pitches in enumerate(frames):
        for pitch in pitches:
            roll[t, pitch - LOW] = 1
    return roll


# a C held two frames, then E and G struck together, G held, then silence, then a high C
PIECE = roll_of([[60], [60], [64, 67], [67], [], [72]])


def test_notes_and_onsets_per_frame():
    np.testing.assert_array_equal(stats.notes_per_frame(PIECE), [1, 1, 2, 1, 0, 1])
    np.testing.assert_array_equal(stats.onsets_per_frame(PIECE), [1, 0, 2, 0, 0, 1])
    # a key down in the first frame starts a note; a key struck again after a gap is a new note
    np.testing.assert_array_equal(stats.onsets_per_frame(roll_of([[60], [], [60], [60]])), [1, 0, 1, 0])


def test_pitch_range_and_classes_used():
    assert stats.pitch_range(PIECE, LOW) == 12  # 60..72
    assert stats.pitch_classes_used(PIECE, LOW) == 3  # C, E, G (the two Cs are one class)
    assert np.isnan(stats.pitch_range(roll_of([[], []]), LOW))
    assert stats.pitch_classes_used(roll_of([[], []]), LOW) == 0


def test_pitch_class_counts_count_notes_not_frames():
    counts = stats.pitch_class_counts(PIECE, LOW)
    assert counts[0] == 2 and counts[4] == 1 and counts[7] == 1  # C twice (60 and 72), E, G once each
    assert counts.sum() == 4


def test_note_lengths():
    assert sorted(stats.note_lengths(PIECE).tolist()) == [1, 1, 2, 2]  # E 1, C5 1, C4 2, G 2
    assert stats.note_lengths(roll_of([[60], [60], [60]])).tolist() == [3]  # held to the end
    assert stats.note_lengths(roll_of([[], []])).tolist() == []


def test_melodic_intervals_follow_the_top_voice_where_notes_start():
    # frames with an onset: 0 (top C4), 2 (top G4), 5 (top C5): +7, +5
    assert stats.melodic_intervals(PIECE, LOW).tolist() == [7, 5]
    falling = roll_of([[72], [71], [67, 60]])
    assert stats.melodic_intervals(falling, LOW).tolist() == [-1, -4]


def test_key_estimate_and_in_key_fraction():
    c_major = roll_of([[p] for p in (60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60)])
    assert stats.estimate_key(stats.pitch_class_counts(c_major, LOW)) == (0, "major")
    assert stats.in_key_fraction(c_major, LOW) == 1.0
    a_minor = roll_of([[p] for p in (57, 60, 64, 57, 59, 60, 62, 64, 65, 64, 57)])
    assert stats.estimate_key(stats.pitch_class_counts(a_minor, LOW)) == (9, "minor")
    # one F# among ten C-major notes: 10 of 11 in key
    with_f_sharp = roll_of([[p] for p in (60, 62, 64, 65, 67, 69, 71, 72, 67, 60, 66)])
    assert stats.in_key_fraction(with_f_sharp, LOW) == pytest.approx(10 / 11)
    assert np.isnan(stats.in_key_fraction(roll_of([[]]), LOW))


def test_longest_repeat_and_repeated_fraction():
    phrase = [[60], [62], [64], [65], [67], [65], [64], [62]]  # 8 distinct-ish frames
    tune = roll_of(phrase + phrase + [[72]])  # the phrase twice, then an ending
    assert stats.longest_repeat(tune) == 8  # frames 8..15 repeat 0..7 at lag 8
    # a chord held for 10 frames repeats itself at lag 4 for 6 frames: counted as what it is
    assert stats.longest_repeat(roll_of([[60, 64]] * 10)) == 6
    assert stats.longest_repeat(roll_of([[60], [62], [64]])) == 0
    long_tune = roll_of(phrase * 2 + phrase * 2 + [[72]] * 0)  # 32 frames: 0..15 repeated at lag 16
    assert stats.longest_repeat(long_tune) == 24  # at lag 8 frames 8..31 repeat frames 0..23
    assert stats.repeated_fraction(long_tune, span=16) == pytest.approx(24 / 32)
    assert stats.repeated_fraction(tune, span=16) == 0.0


def test_overlapping_area():
    assert stats.overlapping_area([1, 1, 0], [2, 2, 0]) == pytest.approx(1.0)  # normalised first
    assert stats.overlapping_area([1, 0], [0, 1]) == 0.0
    assert stats.overlapping_area([3, 1], [1, 1]) == pytest.approx(0.5 + 0.25)
    assert np.isnan(stats.overlapping_area([0, 0], [1, 1]))


def test_compare_a_set_with_itself_and_with_something_else():
    same = stats.compare([PIECE, PIECE], [PIECE])
    names = [s.name for s in same]
    assert len(names) == 10 and len(set(names)) == 10
    for statistic in same:
        assert statistic.overlap == pytest.approx(1.0), statistic.name
        assert statistic.data == pytest.approx(statistic.model, nan_ok=True), statistic.name
        assert len(statistic.bins) == len(statistic.data_histogram) == len(statistic.model_histogram)
    busy = roll_of([[p for p in range(40, 90, 3)]] * 6)  # 17 keys held together
    other = {s.name: s for s in stats.compare([PIECE], [busy])}
    assert other["notes per frame (polyphony)"].overlap == 0.0
    assert other["notes per frame (polyphony)"].model == 17 and other["notes per frame (polyphony)"].data == 1.0
    assert other["pitch range, semitones"].model == 48


# ------------------------------------------------------------------------------------ CLI
@pytest.fixture
def model_and_pickle(tmp_path):
    torch.manual_seed(2)
    model = RnnRbm(RnnRbmConfig(n_hidden=8, n_hidden_recurrent=6, cd_k=1, gibbs_steps=3))
    with torch.no_grad():  # sparse music, weights that matter (so that the temperature does too)
        model.bv.fill_(-3.0)
        model.W.normal_(0, 1.0)
    model_file = tmp_path / "tiny.pt"
    save_checkpoint(model_file, model_checkpoint(model))
    rng = np.random.default_rng(4)

    def piece(length):
        return [tuple(sorted(int(n) for n in rng.choice(np.arange(55, 70), size=rng.integers(1, 4), replace=False)))
                for _ in range(length)]

    data_file = tmp_path / "tiny.pickle"
    data_file.write_bytes(pickle.dumps({"train": [piece(30)], "valid": [piece(20)], "test": [piece(40), piece(30)]}))
    return model_file, data_file


def test_stats_command_json(model_and_pickle, capsys):
    model_file, data_file = model_and_pickle
    assert main(["stats", str(model_file), str(data_file), "--json", "--frames", "50", "--pieces", "2",
                 "--seed", "3"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert values["data_pieces"] == 2 and values["model_pieces"] == 2 and values["frames_per_piece"] == 50
    assert values["temperature"] == 1.0 and values["split"] == "test"
    assert (values["sampler"], values["gibbs_steps"]) == ("fast", 25)  # what live playback runs
    rows = {row["name"]: row for row in values["statistics"]}
    assert rows["pitch range, semitones"]["data"] == pytest.approx(np.mean([
        max(n for f in p for n in f) - min(n for f in p for n in f)
        for p in pickle.loads(data_file.read_bytes())["test"]]))
    assert all(0 <= row["overlap"] <= 1 for row in rows.values() if row["overlap"] is not None)
    # the model's music is what live playback's fast chain makes with the same seed
    from rnnrbm_studio.training.checkpoint import load_model
    model, _ = load_model(model_file)
    fast = [model.generate(50, seed=seed, gibbs_steps=25, start="prediction") for seed in (3, 4)]
    assert rows["notes per frame (polyphony)"]["model"] == pytest.approx(np.mean(np.concatenate([f.sum(1) for f in fast])))
    # --sampler exact: what `generate` writes with the same seed (the model's own steps from silence)
    assert main(["stats", str(model_file), str(data_file), "--json", "--frames", "50", "--pieces", "2",
                 "--seed", "3", "--sampler", "exact"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert (exact["sampler"], exact["gibbs_steps"]) == ("exact", 3)
    exact_rows = {row["name"]: row for row in exact["statistics"]}
    assert exact_rows["notes per frame (polyphony)"]["model"] == pytest.approx(
        np.mean(np.concatenate([model.generate(50, seed=seed).sum(1) for seed in (3, 4)])))
    # a hotter sampler changes the music
    assert main(["stats", str(model_file), str(data_file), "--json", "--frames", "50", "--pieces", "2",
                 "--seed", "3", "--temperature", "3"]) == 0
    hot = {row["name"]: row for row in json.loads(capsys.readouterr().out)["statistics"]}
    assert hot["notes per frame (polyphony)"]["model"] != rows["notes per frame (polyphony)"]["model"]


def test_stats_command_table_and_plots(model_and_pickle, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plots' extra) is not installed")
    model_file, data_file = model_and_pickle
    out = tmp_path / "plots"
    out.mkdir()
    assert main(["stats", str(model_file), str(data_file), "--frames", "30", "--pieces", "1",
                 "--plots", str(out)]) == 0
    table = capsys.readouterr().out
    assert "statistic" in table and "overlap" in table and "longest exact repeat" in table
    pngs = list(out.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(pngs[0]) in table


def test_stats_command_without_matplotlib_says_so_in_one_line(model_and_pickle, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    model_file, data_file = model_and_pickle
    assert main(["stats", str(model_file), str(data_file), "--frames", "20", "--pieces", "1",
                 "--plots", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "matplotlib" in line]
    assert len(lines) == 1 and "pip install" in lines[0] and "plots" in lines[0]
    assert "statistic" in captured.out and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("args", [["--frames", "0"], ["--pieces", "0"], ["--temperature", "0"],
                                  ["--split", "nope"], ["--plots", "/nonexistent/folder"]])
def test_stats_command_errors_are_one_line(model_and_pickle, args, capsys):
    model_file, data_file = model_and_pickle
    assert main(["stats", str(model_file), str(data_file), "--frames", "10", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnrbm-studio: error: ") and "\n" not in err and "Traceback" not in err
