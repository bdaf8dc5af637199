"""Checkpoints: round trips, damaged files, and atomic writes that survive SIGKILL at any moment."""
from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnrbm_studio.training.checkpoint import (
    CheckpointError, load_checkpoint, load_model, model_checkpoint, model_from_checkpoint, save_checkpoint,
)
from rnnrbm_studio.training.checkpoint_types import FORMAT, SCHEMA_VERSION
from rnnrbm_studio.errors import StudioError
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig
from rnnrbm_studio.music.pianoroll import RollSettings
from rnnrbm_studio.training.run_lock import output_lock

REPO = Path(__file__).resolve().parent.parent


def small_model(**config) -> RnnRbm:
    torch.manual_seed(0)
    return RnnRbm(RnnRbmConfig(n_hidden=6, n_hidden_recurrent=5, **config))


def test_save_and_load_round_trip(tmp_path):
    model = small_model(learned_u0=True)
    path = tmp_path / "deep" / "folder" / "model.pt"
    save_checkpoint(path, model_checkpoint(model, RollSettings(steps_per_beat=4), description="songs/"))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == SCHEMA_VERSION
    checkpoint = load_checkpoint(path)
    assert checkpoint.saved_at == raw["saved_at"] and checkpoint.saved_at
    assert checkpoint.data.description == "songs/"
    assert checkpoint.data.roll_settings == RollSettings(steps_per_beat=4)
    assert checkpoint.training is None and checkpoint.model_config == model.config
    loaded, _ = load_model(path)
    assert not loaded.training
    for name, parameter in model.state_dict().items():
        assert torch.equal(parameter, loaded.state_dict()[name]), name
    assert [p.name for p in tmp_path.joinpath("deep", "folder").iterdir()] == ["model.pt"]  # no temp files


def test_best_weights_are_used_unless_the_last_ones_are_asked_for(tmp_path):
    model = small_model()
    best = {k: v + 1.0 for k, v in model.state_dict().items()}
    checkpoint = replace(model_checkpoint(model), best_model_state=best)
    assert torch.equal(model_from_checkpoint(checkpoint).W, best["W"])
    assert torch.equal(model_from_checkpoint(checkpoint, which="last").W, model.W)
    assert torch.equal(model_from_checkpoint(replace(checkpoint, best_model_state=None)).W, model.W)


@pytest.mark.parametrize("content", [
    b"",
    b"\x00" * 100,
    b"this is not a checkpoint at all",
    b"PK\x03\x04" + os.urandom(200),  # a zip header (torch's format) with garbage behind it
])
def test_damaged_checkpoints_raise_checkpoint_error_with_one_line(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and "not a readable RNN-RBM Studio model" in message
    assert isinstance(error.value, StudioError)


def test_truncated_foreign_and_future_checkpoints_are_refused(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, model_checkpoint(small_model()))
    data = good.read_bytes()
    for cut in (len(data) // 3, len(data) - 30):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable"):
            load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an RNN-RBM Studio model file"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": FORMAT, "version": SCHEMA_VERSION + 1}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="no such model file"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)  # a folder
    # a readable file whose weights do not fit its configuration
    checkpoint = model_checkpoint(small_model())
    checkpoint.model_config = replace(checkpoint.model_config, n_hidden=7)
    save_checkpoint(tmp_path / "mismatch.pt", checkpoint)
    with pytest.raises(CheckpointError, match="damaged or incompatible"):
        load_model(tmp_path / "mismatch.pt")


def test_arbitrary_pickles_are_not_executed(tmp_path):
    """weights_only loading: a checkpoint cannot run code when opened."""
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"format": FORMAT, "version": SCHEMA_VERSION, "x": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


# ------------------------------------------------------------------------- the schema
def _same(a, b, where="checkpoint") -> None:
    """a and b are equal, tensors bit for bit (a Checkpoint's dict, as to_dict gives it)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory):
    """A finished run with every part of the training state: Adam, persistent chains, the average, an
    LL-selected best epoch, pretraining, and a key shift."""
    from rnnrbm_studio.training.trainer import TrainConfig, Trainer, build_model

    rng = np.random.default_rng(0)
    rolls = [(rng.random((40, 88)) < 0.06).astype(np.uint8) for _ in range(4)]
    path = tmp_path_factory.mktemp("schema") / "run.pt"
    config = TrainConfig(epochs=2, seq_len=10, batch_seqs=2, optimizer="adam", learning_rate=0.01, seed=4,
                         cd_start="persistent", average=0.9, select_by="ll", select_frames=20, rbm_pretrain_epochs=1,
                         key_shift=1)
    trainer = Trainer(build_model(RnnRbmConfig(n_hidden=6, n_hidden_recurrent=5, cd_k=1), 4), rolls[:3], rolls[3:],
                      config, path, RollSettings(steps_per_beat=3), data_description="songs/")
    assert trainer.run().status == "finished"
    return path, trainer


def test_a_training_checkpoint_reads_back_as_the_trainer_wrote_it(trained_file):
    path, trainer = trained_file
    written, read = trainer.checkpoint(), load_checkpoint(path)
    _same(read.to_dict() | {"saved_at": None}, written.to_dict())
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == SCHEMA_VERSION and set(raw["training"]) >= {"optimizer_state", "rng", "chain_states"}
    training = read.training
    assert training.train_config == trainer.config and training.progress.epochs_completed == 2
    assert training.progress.best_valid_ll == trainer.best.valid_ll and training.epoch_in_progress is None
    assert read.history == trainer.history and read.history[0].valid_ll is not None
    assert read.data.roll_settings == RollSettings(steps_per_beat=3) and read.data.description == "songs/"
    assert set(training.pretraining) == {"rbm"} and training.rng.shuffle is not None


def test_a_version_1_file_migrates_to_the_checkpoint_of_its_version_2_twin(trained_file, tmp_path):
    """The layout before the schema: one flat dict. It reads as the same Checkpoint, and is written back
    in the current layout."""
    path, _ = trained_file
    raw = torch.load(path, weights_only=True)
    flat = {k: v for k, v in raw.items() if k not in ("data", "training")}
    flat.update(raw["training"], version=1, roll_settings=raw["data"]["roll_settings"],
                data=raw["data"]["description"], saved_at_original="kept as it is")
    old = tmp_path / "old.pt"
    torch.save(flat, old)
    migrated = load_checkpoint(old)
    assert migrated.extras == {"saved_at_original": "kept as it is"}
    _same(migrated.to_dict(), load_checkpoint(path).to_dict() | {"saved_at_original": "kept as it is"})
    save_checkpoint(tmp_path / "new.pt", migrated)
    rewritten = torch.load(tmp_path / "new.pt", weights_only=True)
    assert rewritten["version"] == SCHEMA_VERSION and "train_config" not in rewritten
    assert rewritten["saved_at_original"] == "kept as it is"
    _same(load_checkpoint(tmp_path / "new.pt").to_dict() | {"saved_at": None}, migrated.to_dict() | {"saved_at": None})


def test_the_bundled_model_s_weights_are_bitwise_those_the_version_1_loader_gave():
    """The version-1 loader returned the file's own tensors (torch.load, then checks that change nothing),
    as plain torch.load reads them; the bundled file itself is never rewritten."""
    from rnnrbm_studio.assets import default_model_path

    path = default_model_path()
    before = path.stat().st_mtime_ns
    raw = torch.load(path, map_location="cpu", weights_only=True)
    model, checkpoint = load_model(path)
    assert raw["version"] == 1 and raw.get("best_model_state") is None  # what plays is the last weights
    for name, value in raw["model_state"].items():
        assert checkpoint.model_state[name].dtype == value.dtype and torch.equal(checkpoint.model_state[name], value)
        assert torch.equal(model.state_dict()[name], value), name
    # the file predates the recurrence option and names none: the paper's tanh RNN
    assert model.config.to_dict() == {**raw["model_config"], "recurrence": "tanh"}
    assert path.stat().st_mtime_ns == before


# ------------------------------------------------------------------- atomic writes vs SIGKILL
# A server process imports torch once, then forks one writer per round (a fresh interpreter per
# kill would cost ~1.5 s each). A writer saves versions v, v+1, ... of a checkpoint carrying a large
# blob (a key the schema does not know is written as it is) whose every element equals its version,
# announcing each on stdout once save_checkpoint has returned.
WRITER_SERVER = textwrap.dedent(r"""
    import os, signal, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from rnnrbm_studio.model import RnnRbmConfig
    from rnnrbm_studio.music import atomic_files
    from rnnrbm_studio.training import checkpoint
    from rnnrbm_studio.training.checkpoint_types import Checkpoint

    path = sys.argv[1]
    N = int(sys.argv[2])

    def payload(version):
        blob = torch.from_numpy(np.full(N, float(version), dtype=np.float32))
        return Checkpoint(RnnRbmConfig(n_hidden=1, n_hidden_recurrent=1), {},
                          extras={"written_version": version, "blob": blob})

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    for line in sys.stdin:
        mode, version = line.split()
        version = int(version)
        pid = os.fork()
        if pid == 0:
            if mode == "loop":
                while True:
                    checkpoint.save_checkpoint(path, payload(version))
                    print("saved", version, flush=True)
                    version += 1
            real_save = torch.save
            if mode == "mid-write":  # half of the bytes reach the temporary file, then death
                def partial_save(obj, stream):
                    import io
                    buffer = io.BytesIO()
                    real_save(obj, buffer)
                    stream.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                    stream.flush()
                    die()
                checkpoint.torch.save = partial_save
            elif mode == "before-fsync":
                atomic_files.os.fsync = die
            elif mode == "before-rename":
                atomic_files.os.replace = die
            elif mode == "after-rename":
                atomic_files._fsync_folder = die
            checkpoint.save_checkpoint(path, payload(version))
            os._exit(3)  # not reached: every mode dies on the way
        print("pid", pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print("exited", -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
""")


class WriterServer:
    def __init__(self, tmp_path: Path, path: Path, n_floats: int):
        script = tmp_path / "writer_server.py"
        script.write_text(WRITER_SERVER)
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(path), str(n_floats)], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
        self.fd = self.process.stdout.fileno()
        self.buffer = ""

    def readline(self, timeout: float) -> str | None:
        """The next line, or None if none arrives within timeout seconds (select: no polling sleeps)."""
        deadline = time.monotonic() + timeout
        while "\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self.fd, 65536).decode()
            if not chunk:
                raise AssertionError(f"writer server ended: {self.process.wait()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split("\n", 1)
        return line

    def expect(self, prefix: str, timeout: float = 60.0) -> str:
        line = self.readline(timeout)
        assert line is not None and line.startswith(prefix), f"expected {prefix!r}, got {line!r}"
        return line

    def start(self, mode: str, version: int) -> int:
        self.process.stdin.write(f"{mode} {version}\n")
        self.process.stdin.flush()
        return int(self.expect("pid").split()[1])

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def check_complete_version(path: Path, allowed: set[int]) -> int:
    # the writer's payloads are not models, which load_checkpoint would refuse: the bytes are checked here
    payload = torch.load(path, map_location="cpu", weights_only=True)
    version = payload["written_version"]
    assert version in allowed, (version, sorted(allowed))
    blob = payload["blob"]
    assert blob.shape == (N_FLOATS,) and bool((blob == float(version)).all()), "a torn checkpoint"
    return version


N_FLOATS = 8_000_000  # 32 MB: a write takes long enough that random kills land inside it


@pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"), reason="needs fork and SIGKILL (POSIX)")
def test_checkpoint_survives_sigkill_at_random_moments_and_at_every_step(tmp_path):
    path = tmp_path / "run.pt"
    server = WriterServer(tmp_path, path, N_FLOATS)
    rng = random.Random(1234)
    try:
        # Deterministic kill points inside save_checkpoint: before the rename the old version must
        # survive; after it, the new one is complete.
        pid = server.start("loop", 0)
        announced = [int(server.expect("saved", 120).split()[1])]
        os.kill(pid, signal.SIGKILL)  # this first writer only establishes a complete version
        while not (line := server.expect("", 60)).startswith("exited"):
            announced.append(int(line.split()[1]))
        current = check_complete_version(path, {announced[-1], announced[-1] + 1})
        for mode, version, survivor in [("mid-write", 100, "old"), ("before-fsync", 200, "old"),
                                        ("before-rename", 300, "old"), ("after-rename", 400, "new")]:
            server.start(mode, version)
            assert server.expect("exited") == f"exited {-signal.SIGKILL}"
            expected = current if survivor == "old" else version
            assert check_complete_version(path, {expected}) == expected, mode
            current = expected

        # Random moments: let a writer loop for a random while, SIGKILL it, and check the file.
        kills_inside_a_write = 0
        for round_number in range(1, 7):
            base = 1000 * round_number
            pid = server.start("loop", base)
            announced = [current]
            deadline = time.monotonic() + rng.uniform(0.0, 0.25)
            while (line := server.readline(max(0.0, deadline - time.monotonic()))) is not None:
                announced.append(int(line.split()[1]))
            os.kill(pid, signal.SIGKILL)
            while not (line := server.expect("", 60)).startswith("exited"):
                announced.append(int(line.split()[1]))
            # the last announced version, or the next one if it was renamed before the announcement
            next_version = base if len(announced) == 1 else announced[-1] + 1
            found = check_complete_version(path, {announced[-1], next_version})
            kills_inside_a_write += found == announced[-1]
            current = found
        assert kills_inside_a_write >= 1  # at least one kill interrupted a write in progress
    finally:
        server.close()
    # Killed writers leave their temporary files (hidden, *.tmp); they are never the checkpoint.
    strays = [p for p in tmp_path.iterdir() if p.name not in ("run.pt", "writer_server.py")]
    assert strays and all(p.name.startswith(".run.pt.") and p.name.endswith(".tmp") for p in strays), strays
    check_complete_version(path, {current})
    # the next writer to lock the file removes them: their writers (pids in their names) are dead
    with output_lock(path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".run.pt.lock", "run.pt", "writer_server.py"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt", "writer_server.py"]
    check_complete_version(path, {current})
