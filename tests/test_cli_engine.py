"""The engine's commands end to end, as a user runs them: train -> info -> generate -> export-params -> resume.

Each command is a real subprocess of the installed entry point, on tiny generated MIDI data.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from rnnrbm_studio.training.checkpoint import load_checkpoint, load_model, model_checkpoint, save_checkpoint
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig
from rnnrbm_studio.music.midi_files import read_midi

from midi_fixtures import write_arpeggio_corpus, write_notes

REPO = Path(__file__).resolve().parent.parent
ENTRY_POINT = Path(sys.executable).parent / "rnnrbm-studio"
# One torch thread: the tiny model gains nothing from a second one, and on a busy machine waits for it.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def command(*args) -> list[str]:
    if ENTRY_POINT.exists():
        return [str(ENTRY_POINT), *map(str, args)]
    return [sys.executable, "-m", "rnnrbm_studio", *map(str, args)]


def run(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder of arpeggios (plus one broken file) and a model trained on it for 2 epochs by the CLI."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "songs"
    write_arpeggio_corpus(data, 6, n_frames=32)
    (data / "broken.mid").write_bytes(b"this is not MIDI")
    model = root / "model.pt"
    result = run("train", data, "--out", model, "--epochs", 2, "--hidden", 16, "--recurrent", 8, "--cd-k", 2,
                 "--seq-len", 16, "--batch-seqs", 2, "--lr", 0.01, "--seed", 5,
                 "--cd-start", "persistent", "--weight-decay", 0.01, "--average", 0.9, "--rnn-weight-decay", 0.02)
    return root, data, model, result


def test_train_writes_a_checkpoint_and_reports_progress(trained):
    _, _, model, result = trained
    assert_ok(result)
    assert "epoch 1/2" in result.stderr and "epoch 2/2" in result.stderr
    assert "skipped broken.mid: not a readable MIDI file" in result.stderr
    assert "finished: 2 epochs trained" in result.stderr
    checkpoint = load_checkpoint(model)
    training, config = checkpoint.training, checkpoint.training.train_config
    assert training.progress.epochs_completed == 2 and len(checkpoint.history) == 2
    assert checkpoint.model_config.n_hidden == 16 and checkpoint.model_config.n_hidden_recurrent == 8
    assert config.batch_seqs == 2 and config.seed == 5
    assert config.cd_start == "persistent" and config.weight_decay == 0.01
    assert config.average == 0.9 and training.averaged_state["W"].shape == (88, 16)
    assert config.rnn_weight_decay == 0.02
    # a bit per key (88 -> 11 bytes) of each training frame: 5 pieces of 32 frames (one of 6 is held out)
    assert training.chain_states.shape == (5 * 32, 11)
    assert checkpoint.data.description.endswith("songs")


def test_info_describes_the_model(trained):
    _, _, model, _ = trained
    result = run("info", model)
    assert_ok(result)
    out = result.stdout
    assert f"model: {model}" in out
    assert "n_hidden 16" in out and "n_hidden_recurrent 8" in out and "cd_k 2" in out
    n_params = 88 * 16 + 88 + 16 + 8 * 16 + 8 * 88 + 88 * 8 + 8 * 8 + 8
    assert f"parameters: {n_params:,}" in out
    assert "training: 2 of 2 epochs" in out and "time grid: 2 steps per beat" in out
    assert "last epoch (2): monitor" in out and "the best validation monitor (the tutorial's measure)" in out


def test_info_describes_the_bundled_model():
    """The bundled model's history has no training readings (resources/default_model.md): info says why."""
    result = run("info")
    assert_ok(result)
    assert "default_model.pt" in result.stdout and "gibbs_steps 1000" in result.stdout
    assert "last epoch (60): valid monitor -4.187" in result.stdout and "history: The training monitor" in result.stdout


def test_recipe_sets_the_defaults_and_given_options_win():
    from rnnrbm_studio.cli import build_parser
    from rnnrbm_studio.cli.training import settings_from_args
    from rnnrbm_studio.training.recipes import configs
    from rnnrbm_studio.training.trainer import TrainConfig

    def parse(*options):
        return settings_from_args(build_parser().parse_args(["train", "DATA", "--out", "model.pt", *options]))

    assert parse()[:2] == (RnnRbmConfig(), TrainConfig())  # the tutorial's model and training by default
    assert parse()[0].gibbs_steps == 25
    assert parse("--recipe", "quality")[:2] == configs("quality")
    assert parse("--recipe", "quality")[0].gibbs_steps == 1000
    mixed = parse("--recipe", "quality", "--epochs", "5", "--lr", "0.01", "--cd-start", "data", "--hidden", "20")
    # --epochs given alone wins over the recipe's minimum number of updates (README: given options win)
    assert mixed[:2] == configs("quality", epochs=5, min_updates=0, learning_rate=0.01, cd_start="data", n_hidden=20)
    assert parse("--optimizer", "adam")[1] == TrainConfig(optimizer="adam")


def test_train_with_the_quality_recipe(tmp_path):
    data = tmp_path / "songs"
    write_arpeggio_corpus(data, 5, n_frames=32)
    out = tmp_path / "model.pt"
    result = run("train", data, "--out", out, "--recipe", "quality", "--epochs", 1, "--hidden", 16, "--recurrent", 8,
                 "--cd-k", 2, "--rnn-pretrain-epochs", 2, "--rbm-pretrain-epochs", 1, "--select-frames", 40,
                 "--min-updates", 0)
    assert_ok(result)
    checkpoint = load_checkpoint(out)
    config = checkpoint.training.train_config
    assert (config.cd_start, config.select_by, config.optimizer, config.rnn_weight_decay) == (
        "persistent", "ll", "adam", 0.1)
    assert (config.epochs, config.rnn_pretrain_epochs, config.min_updates) == (1, 2, 0)  # given options win
    assert checkpoint.model_config.gibbs_steps == 1000  # composes as the bundled model does
    assert set(checkpoint.training.pretraining) == {"rbm", "rnn"}

def test_generate_with_a_primer_writes_a_midi_file(trained):
    root, data, model, _ = trained
    out = root / "generated.mid"
    result = run("generate", model, "--out", out, "--frames", 40, "--primer", data / "piece_000.mid", "--seed", 3,
                 "--bpm", 100)
    assert_ok(result)
    assert f"wrote {out}: 40 steps" in result.stdout
    midi = mido.MidiFile(str(out))  # mido reads it back
    assert midi.type == 0 and midi.ticks_per_beat == 480
    assert any(m.type == "set_tempo" and round(mido.tempo2bpm(m.tempo)) == 100 for m in midi.tracks[0])
    notes_on = [m for m in midi.tracks[0] if m.type == "note_on" and m.velocity > 0]
    assert notes_on and all(21 <= m.note <= 108 for m in notes_on)
    total_ticks = sum(m.time for m in midi.tracks[0])
    assert total_ticks == 40 * 240  # 40 eighth-note steps, the model's grid
    assert read_midi(out).n_frames <= 40
    # the same seed writes the same music
    again = root / "again.mid"
    assert_ok(run("generate", model, "--out", again, "--frames", 40, "--primer", data / "piece_000.mid",
                  "--seed", 3, "--bpm", 100))
    assert again.read_bytes() == out.read_bytes()


def test_export_params_writes_the_eight_float64_arrays(trained):
    root, _, model, _ = trained
    out = root / "params.npz"
    result = run("export-params", model, out)
    assert_ok(result)
    arrays = np.load(out)
    shapes = {"W": (88, 16), "bv": (88,), "bh": (16,), "Wuh": (8, 16), "Wuv": (8, 88), "Wvu": (88, 8),
              "Wuu": (8, 8), "bu": (8,)}
    assert sorted(arrays.files) == sorted(shapes)
    weights, _ = load_model(model)  # the best-on-validation weights, as generate uses
    for name, shape in shapes.items():
        assert arrays[name].dtype == np.float64 and arrays[name].shape == shape, name
        np.testing.assert_array_equal(arrays[name], getattr(weights, name).detach().double().numpy())


def test_resume_continues_the_run(trained, tmp_path):
    _, data, model, _ = trained
    copy = tmp_path / "model.pt"
    shutil.copy(model, copy)
    result = run("train", data, "--out", copy, "--epochs", 3, "--resume")
    assert_ok(result)
    assert "resuming after epoch 2" in result.stderr and "epoch 3/3" in result.stderr
    assert "epoch 1/" not in result.stderr
    checkpoint = load_checkpoint(copy)
    assert checkpoint.training.progress.epochs_completed == 3 and [h.epoch for h in checkpoint.history] == [1, 2, 3]
    assert checkpoint.model_config.n_hidden == 16  # the run's own settings, not the defaults
    again = run("train", data, "--out", copy, "--resume")  # no --epochs: to the run's own 3, done already
    assert_ok(again)
    assert "finished: 3 epochs trained" in again.stderr
    assert load_checkpoint(copy).training.progress.epochs_completed == 3


# ----------------------------------------------------------------------------------- errors
def test_user_errors_are_one_line_and_exit_code_2(tmp_path):
    """The real entry point, in fresh processes: exit status 2, one line on stderr, no traceback."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no music here")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mid").write_bytes(b"")
    (broken / "b.mid").write_bytes(b"MThd\x00\x00")
    write_notes(broken / "drums.mid", [(36, 0, 240, 9)])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a model")
    cases = {
        # each its own --out: they run at once, and one model file has one writer at a time
        "no such path": (["train", tmp_path / "nowhere", "--out", tmp_path / "m1.pt"], "no such file or folder"),
        "empty folder": (["train", empty, "--out", tmp_path / "m2.pt"], "no MIDI files"),
        "no readable MIDI": (["train", broken, "--out", tmp_path / "m3.pt"], "no readable MIDI"),
        "corrupt checkpoint": (["generate", corrupt, "--out", tmp_path / "g.mid"],
                               "is not a readable RNN-RBM Studio model"),
    }
    # all at once: each is a fresh interpreter importing torch, and they are independent
    processes = {name: subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=ENV, cwd=REPO) for name, (args, _) in cases.items()}
    failures = []
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=180)
        expected = cases[name][1]
        lines = stderr.strip().splitlines()
        if (process.returncode != 2 or len(lines) != 1 or not lines[0].startswith("rnnrbm-studio: error: ")
                or expected not in lines[0] or "Traceback" in stdout + stderr):
            failures.append(f"{name}: exit {process.returncode}, stderr {stderr!r}, stdout {stdout!r}")
    assert not failures, "\n".join(failures)
    assert not any((tmp_path / f"m{i}.pt").exists() for i in (1, 2, 3)) and not (tmp_path / "g.mid").exists()


def test_more_user_errors_in_process(tmp_path, capsys):
    """The same contract for more cases, through cli.main in this process (a fresh interpreter each is slow)."""
    from rnnrbm_studio.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as ENV does for the subprocesses
    try:
        _check_error_cases(tmp_path, capsys, main)
    finally:
        torch.set_num_threads(threads)


def _check_error_cases(tmp_path, capsys, main):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(300))
    model_only = tmp_path / "model_only.pt"
    torch.manual_seed(0)
    save_checkpoint(model_only, model_checkpoint(RnnRbm(RnnRbmConfig(n_hidden=4, n_hidden_recurrent=3))))
    not_midi = tmp_path / "primer.mid"
    not_midi.write_text("hello")
    good = tmp_path / "good"
    write_arpeggio_corpus(good, 2, n_frames=16)
    cases = [
        (["info", corrupt], "is not a readable RNN-RBM Studio model"),
        (["export-params", corrupt, tmp_path / "p.npz"], "is not a readable"),
        (["info", tmp_path / "missing.pt"], "no such model file"),
        (["train", good, "--out", corrupt, "--resume"], "is not a readable"),
        (["train", good, "--out", model_only, "--resume"], "holds a model but no training state to resume"),
        (["train", good, "--out", tmp_path / "absent.pt", "--resume"], "no such model file"),
        (["generate", model_only, "--out", tmp_path / "g.mid", "--primer", not_midi], "not a readable MIDI file"),
        (["generate", model_only, "--out", tmp_path / "no" / "dir" / "g.mid", "--frames", "3"], "cannot write"),
        (["generate", model_only, "--out", tmp_path, "--frames", "3"], "it is a folder"),
        (["export-params", model_only, tmp_path / "no" / "such" / "p.npz"], "cannot write"),
        (["export-params", model_only, tmp_path], "it is a folder"),
    ]
    for args, expected in cases:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 2, (args, captured.err)
        # resume reads its file before the data, so nothing else is printed before the error
        assert len(lines) == 1 and lines[0].startswith("rnnrbm-studio: error: "), (args, captured.err)
        assert expected in lines[0], (args, lines[0])


def test_generate_keeps_the_pace_of_a_seconds_grid_model(tmp_path, capsys):
    """A model trained on the tutorial's 0.3 s grid writes 0.3 s steps (one per beat at 200 bpm)."""
    from rnnrbm_studio.cli import main
    from rnnrbm_studio.music.pianoroll import RollSettings

    torch.manual_seed(0)
    model = RnnRbm(RnnRbmConfig(n_hidden=6, n_hidden_recurrent=4))
    with torch.no_grad():
        model.bv.fill_(1.0)  # keys down often, so the written file has notes to time
    path = tmp_path / "seconds.pt"
    save_checkpoint(path, model_checkpoint(model, RollSettings(seconds_per_step=0.3)))
    out = tmp_path / "g.mid"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["generate", str(path), "--out", str(out), "--frames", "12", "--seed", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    midi = mido.MidiFile(str(out))
    assert midi.length == pytest.approx(12 * 0.3)
    generated = read_midi(out, RollSettings(seconds_per_step=0.3))
    assert generated.n_frames == 12 and generated.roll.sum() > 0


def test_the_documented_recipe_command_is_the_app_s_quality_recipe():
    """benchmarks/quality.py's RECIPE (the command line in docs and resources/default_model.md) and the
    window's Train (training/recipes.py's configs) must be one recipe."""
    import importlib.util
    import shlex

    from rnnrbm_studio.cli import build_parser
    from rnnrbm_studio.cli.training import settings_from_args
    from rnnrbm_studio.training.recipes import configs

    spec = importlib.util.spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    args = build_parser().parse_args(["train", "DATA", "--out", "model.pt", *shlex.split(benchmark.RECIPE)])
    model, train, _ = settings_from_args(args)
    assert train == configs("quality", threads=1)[1]
    assert (model.n_hidden, model.n_hidden_recurrent, model.cd_k) == (150, 100, 15)  # the tutorial's model
    assert model == configs("quality")[0]  # 1,000 Gibbs steps: what the window's Train stores in its model too
    documented = " ".join((REPO / "resources" / "default_model.md").read_text().replace("\\\n", " ").split())
    tokens = shlex.split(benchmark.RECIPE)
    for flag, value in zip(tokens, tokens[1:] + [""]):
        if flag.startswith("--"):
            shown = flag if value.startswith("--") or not value else f"{flag} {value}"
            assert shown in documented, f"resources/default_model.md does not show {shown}"


def test_a_key_shift_candidate_is_trained_and_the_better_run_by_valid_ll_is_kept(tmp_path):
    data = tmp_path / "songs"
    write_arpeggio_corpus(data, 6, n_frames=32)
    out = tmp_path / "model.pt"
    result = run("train", data, "--out", out, "--epochs", 2, "--hidden", 16, "--recurrent", 8, "--cd-k", 2,
                 "--seq-len", 16, "--batch-seqs", 2, "--lr", 0.01, "--key-shift-candidate", 2, "--threads", 1)
    assert_ok(result)
    runner_up = tmp_path / "model.runner-up.pt"
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["model.pt", "model.runner-up.pt"]
    kept, other = load_checkpoint(out), load_checkpoint(runner_up)
    choice = kept.candidates
    assert choice == other.candidates and choice["key_shift"] == [0, 2]
    better = int(choice["valid_ll"][1] > choice["valid_ll"][0])
    assert kept.training.train_config.key_shift == choice["key_shift"][better]
    assert other.training.train_config.key_shift == choice["key_shift"][1 - better]
    assert choice["kept"] == f"key_shift {choice['key_shift'][better]}" and choice["kept"] in result.stderr
    assert kept.training.progress.epochs_completed == other.training.progress.epochs_completed == 2
    assert_ok(run("generate", out, "--out", tmp_path / "piece.mid", "--frames", 8))
    info = run("info", out)
    assert_ok(info)
    assert "candidates:" in info.stdout and choice["kept"] in info.stdout
