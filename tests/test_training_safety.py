"""Training that survives its interruptions: exact resume after a stop anywhere, stop signals, one
writer per model file, output paths checked before training, failed checkpoint writes, orphan files."""
from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnrbm_studio.training import checkpoint as checkpoint_module
from rnnrbm_studio.training.checkpoint import CheckpointWriteError, load_checkpoint, load_model
from rnnrbm_studio.cli import main
from rnnrbm_studio.model import RnnRbmConfig
from rnnrbm_studio.training.run_lock import OutputBusy, lock_path_of, output_lock
from rnnrbm_studio.training.trainer import TrainConfig, Trainer, build_model

from midi_fixtures import write_arpeggio_corpus

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SMALL = RnnRbmConfig(n_hidden=8, n_hidden_recurrent=6, cd_k=2)


def rolls(n: int, frames: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((frames, 88)) < 0.06).astype(np.uint8) for _ in range(n)]


TRAIN, VALID = rolls(5, 40, 0), rolls(2, 20, 1)
TUTORIAL = dict(seq_len=8, seed=1)
QUALITY = dict(seq_len=8, seed=1, optimizer="adam", learning_rate=0.01, batch_seqs=3, cd_start="persistent",
               weight_decay=0.01, rnn_weight_decay=0.1, rnn_pretrain_epochs=2, rbm_pretrain_epochs=1, select_by="ll",
               select_frames=30, lr_schedule="cosine", average=0.9, key_shift=2)


def _stopping_at(points: list[tuple[int, int]]):
    """A progress callback asking its trainer (set later as .trainer) to stop after update (epoch, step)."""
    def progress(p):
        if p.event == "step" and (p.epoch, p.step) in points:
            progress.trainer.request_stop()
    return progress


def _assert_same_run(straight: Trainer, resumed: Trainer) -> None:
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), f"{name} differs"
    for name, value in (straight.best.state or {}).items():
        assert torch.equal(resumed.best.state[name], value), f"kept {name} differs"
    for name, value in (straight.averaged_state or {}).items():
        assert torch.equal(resumed.averaged_state[name], value), f"averaged {name} differs"
    for key in ("epoch", "loss", "monitor", "valid_monitor"):
        assert [getattr(h, key) for h in resumed.history] == [getattr(h, key) for h in straight.history], key
    for state, expected in zip(resumed.chains.states if resumed.chains else [],
                               straight.chains.states if straight.chains else []):
        np.testing.assert_array_equal(state, expected)


@pytest.mark.parametrize("recipe,stops", [
    (TUTORIAL, [(2, 3)]),
    (TUTORIAL, [(1, 1), (3, 7)]),  # twice, the first after a single update
    (QUALITY, [(2, 1)]),
    (QUALITY, [(1, 2), (3, 1)]),
], ids=["tutorial", "tutorial-twice", "quality", "quality-twice"])
def test_a_run_stopped_mid_epoch_and_resumed_equals_an_uninterrupted_run_bitwise(tmp_path, recipe, stops):
    straight = Trainer(build_model(SMALL, 1), TRAIN, VALID, TrainConfig(epochs=3, **recipe), tmp_path / "full.pt")
    assert straight.run().status == "finished"

    path = tmp_path / "stopped.pt"
    progress = _stopping_at(stops)
    trainer = progress.trainer = Trainer(build_model(SMALL, 1), TRAIN, VALID, TrainConfig(epochs=3, **recipe), path,
                                         progress=progress, progress_interval=0)
    for epoch, step in stops:
        result = trainer.run()
        assert result.status == "stopped" and f"epoch {epoch} after update {step}" in result.message
        saved = load_checkpoint(path).training.epoch_in_progress
        assert (saved.epoch, saved.step) == (epoch, step)
        trainer = progress.trainer = Trainer.resume(path, TRAIN, VALID, progress=progress, progress_interval=0)
        assert trainer.resume_epoch.step == step and trainer.epochs_completed == epoch - 1
    assert trainer.run().status == "finished"
    _assert_same_run(straight, trainer)
    assert load_checkpoint(path).training.epoch_in_progress is None


def test_a_stop_during_pretraining_resumes_by_pretraining_again_from_the_start(tmp_path):
    config = TrainConfig(epochs=2, **{**QUALITY, "rnn_pretrain_epochs": 3})
    straight = Trainer(build_model(SMALL, 1), TRAIN, VALID, config, tmp_path / "full.pt")
    straight.run()

    path = tmp_path / "stopped.pt"
    trainer = Trainer(build_model(SMALL, 1), TRAIN, VALID, config, path)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    batches, calls = trainer._epoch_batches, []

    def second_rnn_pretraining_epoch_stops():
        calls.append(1)
        if len(calls) == 2:
            trainer.request_stop()
        return batches()

    trainer._epoch_batches = second_rnn_pretraining_epoch_stops
    result = trainer.run()
    assert result.status == "stopped" and "pretraining" in result.message
    saved = load_checkpoint(path)
    assert saved.training.pretraining == {} and saved.training.progress.epochs_completed == 0
    for name, value in initial.items():  # the run's start, not the half-pretrained weights
        assert torch.equal(saved.model_state[name], value), name
    resumed = Trainer.resume(path, TRAIN, VALID)
    assert resumed.run().status == "finished"
    _assert_same_run(straight, resumed)
    assert set(resumed.pretraining) == {"rbm", "rnn"}


def test_build_model_seeds_the_initial_weights():
    first, again, other = build_model(SMALL, 7), build_model(SMALL, 7), build_model(SMALL, 8)
    for name, value in first.state_dict().items():
        assert torch.equal(again.state_dict()[name], value)
    assert not torch.equal(first.W, other.W)


# --------------------------------------------------------------------------- failed writes
def test_a_checkpoint_that_cannot_be_written_stops_training_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    real_save, saves = torch.save, []

    def disk_fills_at_the_second_checkpoint(obj, stream):
        saves.append(1)
        if len(saves) == 2:
            stream.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, stream)

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_fills_at_the_second_checkpoint)
    trainer = Trainer(build_model(SMALL, 1), TRAIN, VALID, TrainConfig(epochs=5, **TUTORIAL), path)
    with pytest.raises(CheckpointWriteError) as error:
        trainer.run()
    message = str(error.value)
    assert "No space left on device" in message and "still holds the previous checkpoint" in message
    assert "\n" not in message and trainer.epochs_completed == 2
    assert load_checkpoint(path).training.progress.epochs_completed == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no temporary file, no lock file


def test_export_params_leaves_no_file_when_the_write_fails(tmp_path, monkeypatch, capsys):
    from rnnrbm_studio.cli import engine

    model = tmp_path / "m.pt"
    checkpoint_module.save_checkpoint(model, checkpoint_module.model_checkpoint(build_model(SMALL, 0)))

    def fails_midway(stream, **arrays):
        stream.write(b"PK\x03\x04 part of an archive")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(engine.np, "savez", fails_midway)
    assert main(["export-params", str(model), str(tmp_path / "p.npz")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


# ---------------------------------------------------------------------- paths and options
@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs") / "songs"
    write_arpeggio_corpus(folder, 5, n_frames=24)
    return folder


TINY = ["--hidden", "8", "--recurrent", "6", "--cd-k", "2", "--seq-len", "12"]


def _one_error_line(capsys, argv: list, *expected: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    # one line and nothing before it: refused before the data was loaded or anything trained
    assert code == 2 and len(lines) == 1 and lines[0].startswith("rnnrbm-studio: error: "), (argv, code, err)
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_unusable_outputs_are_refused_before_loading_or_training(songs, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    long_name = "m" * 240 + ".pt"  # fits in 255 bytes; its temporary name does not
    _one_error_line(capsys, ["train", songs, "--out", tmp_path / "folder"], "it is a folder")
    _one_error_line(capsys, ["train", songs, "--out", tmp_path / long_name], "name is too long")
    _one_error_line(capsys, ["train", songs, "--out", tmp_path / "a_file" / "m.pt"], "cannot write")
    _one_error_line(capsys, ["generate", "--out", tmp_path / ("g" * 250 + ".mid")], "name is too long")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder"]


def test_an_existing_model_is_only_replaced_with_force(songs, tmp_path, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"a model trained for days")
    _one_error_line(capsys, ["train", songs, "--out", out, "--epochs", "1", *TINY], "already exists", "--force")
    assert out.read_bytes() == b"a model trained for days"
    assert main(["train", str(songs), "--out", str(out), "--epochs", "1", "--force", *TINY]) == 0
    capsys.readouterr()
    assert load_checkpoint(out).training.progress.epochs_completed == 1


def test_resume_refuses_the_options_a_run_fixes(songs, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["train", str(songs), "--out", str(out), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    before = out.read_bytes()
    line = _one_error_line(capsys, ["train", songs, "--out", out, "--resume", "--hidden", "50", "--lr", "0.1",
                                    "--steps-per-beat", "4", "--transpose", "--recipe", "quality"],
                           "--resume", "cannot change")
    for flag in ("--hidden", "--lr", "--steps-per-beat", "--transpose", "--recipe"):
        assert flag in line
    assert out.read_bytes() == before
    assert main(["train", str(songs), "--out", str(out), "--resume", "--epochs", "2", "--threads", "1"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().err


def test_orphaned_temporary_files_of_killed_writers_are_removed(songs, tmp_path, capsys):
    out = tmp_path / "model.pt"
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=60)
    dead, alive = finished.pid, os.getppid()
    orphans = [tmp_path / f".model.pt.{dead}-abcdefgh.tmp", tmp_path / ".model.pt.k2j4h5g6.tmp"]  # (older naming)
    in_progress = tmp_path / f".model.pt.{alive}-ijklmnop.tmp"
    for path in (*orphans, in_progress):
        path.write_bytes(b"part of a checkpoint")
    assert main(["train", str(songs), "--out", str(out), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.pt", in_progress.name])


# ------------------------------------------------------------------- processes and signals
class TrainProcess:
    """`rnnrbm-studio train` in a subprocess whose stderr is read line by line with deadlines."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rnnrbm_studio", "train", *map(str, args)], cwd=REPO, env=ENV,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # a test run under nohup would hand down an ignored SIGHUP, which the command respects
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
        self.stderr = ""

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        fd = self.process.stderr.fileno()
        while text not in self.stderr:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r} within {timeout} s; stderr so far:\n{self.stderr}"
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 65536).decode()
                assert chunk, f"the process ended (exit {self.process.wait()}) before {text!r}:\n{self.stderr}"
                self.stderr += chunk

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        try:
            _, rest = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, rest = self.process.communicate()
            raise AssertionError(f"train did not end within {timeout} s:\n{self.stderr}")
        self.stderr += rest.decode()
        return self.process.returncode, self.stderr


def _cli(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnrbm_studio", *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_saves_and_the_resumed_run_equals_an_uninterrupted_one(songs, tmp_path, signum):
    out = tmp_path / "model.pt"
    run = TrainProcess(songs, "--out", out, "--epochs", 100000, *TINY)
    run.wait_for("epoch 2/")  # training, with a checkpoint written
    run.process.send_signal(signum)
    code, stderr = run.finish()
    name = signal.Signals(signum).name
    assert code == 128 + signum and "Traceback" not in stderr, stderr
    assert f"{name}: stopping after this update and saving" in stderr and "stopped: stopped during epoch" in stderr
    saved = load_checkpoint(out).training
    partial = saved.epoch_in_progress
    assert partial is not None and partial.epoch == saved.progress.epochs_completed + 1
    assert not lock_path_of(out).exists()

    epochs = partial.epoch
    resumed = _cli("train", songs, "--out", out, "--resume", "--epochs", epochs)
    assert resumed.returncode == 0 and f"update {partial.step} of epoch {epochs}" in resumed.stderr, resumed.stderr
    straight = _cli("train", songs, "--out", tmp_path / "straight.pt", "--epochs", epochs, *TINY)
    assert straight.returncode == 0, straight.stderr
    a, b = load_model(out, which="last")[0].state_dict(), load_model(tmp_path / "straight.pt", which="last")[0].state_dict()
    for key, value in b.items():
        assert torch.equal(a[key], value), key


def test_a_second_writer_of_the_same_model_is_refused_with_the_first_one_s_pid(songs, tmp_path):
    out = tmp_path / "model.pt"
    first = TrainProcess(songs, "--out", out, "--epochs", 100000, *TINY)
    try:
        first.wait_for("epoch 1/")
        second = _cli("train", songs, "--out", out, "--force", "--epochs", 1, *TINY)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert f"being written by process {first.process.pid}" in lines[0]
        evaluation = _cli("eval", out, songs, "--split", "train", "--chains", 2, "--betas", 3, "--acc-samples", 1,
                          "--record")
        assert evaluation.returncode == 2 and f"process {first.process.pid}" in evaluation.stderr
        # the window trains through the same Trainer, which takes the same lock
        trainer = Trainer(build_model(SMALL, 0), TRAIN, (), TrainConfig(epochs=1, seq_len=8), out)
        with pytest.raises(OutputBusy, match=str(first.process.pid)):
            trainer.run()
    finally:
        first.process.send_signal(signal.SIGTERM)
        code, stderr = first.finish()
    assert code == 128 + signal.SIGTERM, stderr
    assert load_checkpoint(out).model_config.n_hidden == 8
    with output_lock(out):  # free again, and its lock file gone
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="resource limits need POSIX")
def test_a_full_disk_at_a_checkpoint_ends_the_process_in_one_line_and_keeps_the_old_file(songs, tmp_path):
    import resource

    out = tmp_path / "model.pt"
    assert _cli("train", songs, "--out", out, "--epochs", 1, *TINY).returncode == 0
    before = out.read_bytes()

    def small_files_only():  # the next checkpoint cannot be written whole (EFBIG, as a full disk's ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, len(before) // 2))

    result = subprocess.run([sys.executable, "-m", "rnnrbm_studio", "train", str(songs), "--out", str(out),
                             "--resume", "--epochs", "3"], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=180, preexec_fn=small_files_only)
    errors = [line for line in result.stderr.splitlines() if line.startswith("rnnrbm-studio: error: ")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot write the checkpoint" in errors[0] and "still holds the previous checkpoint" in errors[0]
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
