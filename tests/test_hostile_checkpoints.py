"""Edited-but-loadable model files: every reader refuses a bad model in one line, never a traceback.

A real small checkpoint (a finished run with the full training state: Adam, persistent chains, the
averaged weights) is edited one field at a time and torch.save-d, as a user or another program
might, then opened by every command that reads model files, and by the window's loader. The rules
(checkpoint_checks.py): a bad model part refuses the file; a bad training state leaves the model
usable but refuses --resume; a bad description is dropped. The same edits in the layout of version 1
(migrated when read) have the same outcomes.
"""
from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnrbm_studio import limits, model as model_module
from rnnrbm_studio.assets import default_model_path
from rnnrbm_studio.training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from rnnrbm_studio.training.config import EpochRecord
from rnnrbm_studio.cli import main
from rnnrbm_studio.music.corpus import load_corpus
from rnnrbm_studio.model import RnnRbmConfig
from rnnrbm_studio.music.pianoroll import RollSettings
from rnnrbm_studio.training.recipes import configs
from rnnrbm_studio.training.trainer import TrainConfig, Trainer, build_model

from midi_fixtures import write_arpeggio_corpus

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(data folder, the raw payload of a finished 2-epoch run on it, its file)."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "songs"
    write_arpeggio_corpus(data, 5, n_frames=24)
    corpus = load_corpus(data, RollSettings())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(epochs=2, seq_len=12, batch_seqs=2, optimizer="adam", learning_rate=0.01,
                             cd_start="persistent", average=0.9, seed=2)
        trainer = Trainer(build_model(RnnRbmConfig(n_hidden=8, n_hidden_recurrent=6, cd_k=2), 2),
                          [p.roll for p in corpus.train], [p.roll for p in corpus.valid], config, root / "base.pt",
                          RollSettings(), data_description=str(data))
        assert trainer.run().status == "finished"
    finally:
        torch.set_num_threads(threads)
    payload = torch.load(root / "base.pt", weights_only=True)
    assert payload["training"]["optimizer_state"]["state"] and payload["training"]["chain_states"] is not None
    return data, payload, root / "base.pt"


def _set(path: str, value):
    """An edit setting payload[a][b]... = value (path "a.b"); value DELETE removes the key."""
    def edit(payload):
        *parents, last = path.split(".")
        target = payload
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value(target[last]) if callable(value) else value
    edit.path, edit.value = path, value
    return edit


DELETE = object()


def _nan(tensor):
    tensor = tensor.clone()
    tensor.view(-1)[0] = float("nan")
    return tensor


def _adam_wrong_shape(state):
    state = copy.deepcopy(state)
    first = next(iter(state["state"].values()))
    first["exp_avg"] = torch.zeros(3, 3)
    return state


# (name, edit, kind, what the message must name); kind: model (refused), training (the model plays,
# --resume refused), description (dropped, everything works)
CASES = [
    ("no model_state", _set("model_state", DELETE), "model", "model_state"),
    ("model_state a list", _set("model_state", [1, 2]), "model", "model_state"),
    ("model_config text", _set("model_config", "n_hidden=8"), "model", "model_config"),
    ("no model_config", _set("model_config", DELETE), "model", "model_config"),
    ("no n_hidden", _set("model_config.n_hidden", DELETE), "model", "n_hidden"),
    ("n_hidden 0", _set("model_config.n_hidden", 0), "model", "n_hidden"),
    ("n_hidden text", _set("model_config.n_hidden", "8"), "model", "n_hidden"),
    ("n_hidden mismatch", _set("model_config.n_hidden", 9), "model", "shape"),
    ("gibbs_steps 1e9", _set("model_config.gibbs_steps", 10**9), "model", "gibbs_steps"),
    ("gibbs_steps float", _set("model_config.gibbs_steps", 2.5), "model", "gibbs_steps"),
    ("cd_k negative", _set("model_config.cd_k", -1), "model", "cd_k"),
    ("12 keys", _set("model_config.n_visible", 12), "model", "n_visible"),
    ("lowest_pitch 200", _set("model_config.lowest_pitch", 200), "model", "lowest_pitch"),
    ("learned_u0 text", _set("model_config.learned_u0", "yes"), "model", "learned_u0"),
    ("NaN weight", _set("model_state.W", _nan), "model", "NaN"),
    ("infinite bias", _set("model_state.bv", lambda t: torch.full_like(t, float("inf"))), "model", "bv"),
    ("W transposed", _set("model_state.W", lambda t: t.t().contiguous()), "model", "model_state.W"),
    ("no Wuu", _set("model_state.Wuu", DELETE), "model", "Wuu"),
    ("extra weight", _set("model_state.extra", torch.zeros(2)), "model", "extra"),
    ("integer W", _set("model_state.W", lambda t: t.long()), "model", "model_state.W"),
    ("W a list", _set("model_state.W", [[0.0]]), "model", "model_state.W"),
    ("NaN best weights", _set("best_model_state", lambda s: {**s, "bh": _nan(s["bh"])}), "model",
     "best_model_state"),
    ("roll_settings a list", _set("data.roll_settings", [2]), "model", "data.roll_settings"),
    ("steps_per_beat 0", _set("data.roll_settings.steps_per_beat", 0), "model", "steps_per_beat"),
    ("seconds_per_step text", _set("data.roll_settings.seconds_per_step", "fast"), "model", "seconds_per_step"),
    ("data a number", _set("data", 5), "model", "data"),  # it holds the time grid
    ("version text", _set("version", "1"), "model", "version"),
    ("training text", _set("training", "lots"), "training", "training"),
    ("progress text", _set("training.progress", "lots"), "training", "training.progress"),
    ("epochs_completed text", _set("training.progress.epochs_completed", "two"), "training", "epochs_completed"),
    ("elapsed NaN", _set("training.progress.elapsed_seconds", float("nan")), "training", "elapsed_seconds"),
    ("learning_rate text", _set("training.train_config.learning_rate", "fast"), "training", "learning_rate"),
    ("epochs negative", _set("training.train_config.epochs", -1), "training", "train_config.epochs"),
    ("optimizer unknown", _set("training.train_config.optimizer", "rmsprop"), "training", "optimizer"),
    ("optimizer_state text", _set("training.optimizer_state", "adam"), "training", "optimizer_state"),
    ("Adam state of another shape", _set("training.optimizer_state", _adam_wrong_shape), "resume", "optimiser state"),
    ("sampler state garbage", _set("training.rng.sampler", {"state": 5}), "training", "rng.sampler"),
    ("chain_states of 12 keys", _set("training.chain_states", lambda t: t[:, :2].contiguous()), "training",
     "chain_states"),
    ("NaN averaged weights", _set("training.averaged_state", lambda s: {**s, "W": _nan(s["W"])}), "training",
     "averaged_state"),
    ("epoch_in_progress text", _set("training.epoch_in_progress", "half"), "training", "epoch_in_progress"),
    ("history text", _set("history", "long"), "description", ""),
    ("history reading text", _set("history", lambda h: [{**h[0], "monitor": "good"}]), "description", ""),
    ("evaluation a tensor", _set("evaluation", torch.zeros(2)), "description", ""),
    ("description a number", _set("data.description", 5), "description", ""),
]


def _edited(base, tmp_path, edit) -> Path:
    payload = copy.deepcopy(base[1])
    edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    return path


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_refused(result, *expected):
    code, out, err = result
    errors = [line for line in err.splitlines() if line.startswith("rnnrbm-studio: error: ")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in out + err, (code, out, err)
    for text in expected:
        assert text in errors[0], (text, errors[0])
    assert "weights_only" not in err
    return errors[0]


def _assert_ok(result):
    code, out, err = result
    assert code == 0 and "Traceback" not in out + err, (code, out, err)
    return out


@pytest.mark.parametrize("name,edit,kind,field", CASES, ids=[c[0] for c in CASES])
def test_every_reader_handles_an_edited_checkpoint(base, tmp_path, capsys, name, edit, kind, field):
    data = base[0]
    path = _edited(base, tmp_path, edit)
    commands = {
        "info": ["info", path],
        "generate": ["generate", path, "--out", tmp_path / "g.mid", "--frames", 4, "--seed", 1],
        "eval": ["eval", path, data, "--split", "train", "--pieces", 1, "--chains", 2, "--betas", 3,
                 "--acc-samples", 1, "--gibbs-steps", 2],
        "export-params": ["export-params", path, tmp_path / "p.npz"],
        "resume": ["train", data, "--out", path, "--resume"],
    }
    for command, args in commands.items():
        result = _run(capsys, *args)
        if kind == "model":
            line = _assert_refused(result, "damaged", field)
            assert str(path) in line, (command, line)
        elif command == "resume" and kind in ("training", "resume"):
            _assert_refused(result, "cannot be resumed", field)
        else:
            out = _assert_ok(result)
            if command == "info" and kind == "training":
                assert "training state: damaged, ignored" in out and field in out
    # the window's loader: load_checkpoint then model_from_checkpoint (ui/main_window.py open_model)
    _assert_loader_outcome(path, kind, field)


def _assert_loader_outcome(path: Path, kind: str, field: str) -> None:
    if kind == "model":
        with pytest.raises(CheckpointError) as error:
            model_from_checkpoint(load_checkpoint(path))
        assert "\n" not in str(error.value) and field in str(error.value)
        return
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint)
    assert model.config.n_hidden == 8
    if kind == "training":
        assert checkpoint.training is None and field in checkpoint.training_problem
    else:  # the training state is whole (a state for another model is found out by --resume)
        assert checkpoint.training is not None and checkpoint.training_problem is None
    assert all(isinstance(h, EpochRecord) for h in checkpoint.history)


def as_version_1(payload: dict) -> dict:
    """A checkpoint's dict in the layout of version 1: one flat dict, the time grid, the data's
    description and the training state's keys beside the model's."""
    old = {k: v for k, v in payload.items() if k not in ("data", "training")}
    old["version"] = 1
    old["roll_settings"] = payload["data"]["roll_settings"]
    old["data"] = payload["data"]["description"]
    old.update(payload["training"])
    return old


def _version_1_path(path: str) -> str:
    for prefix, old in (("training.", ""), ("data.roll_settings", "roll_settings"), ("data.description", "data")):
        if path.startswith(prefix):
            return old + path[len(prefix):]
    return path


# (the cases that edit a whole section of version 2 have no counterpart in version 1)
VERSION_1_CASES = [c for c in CASES if c[0] not in ("data a number", "training text")]


@pytest.mark.parametrize("name,edit,kind,field", VERSION_1_CASES, ids=[c[0] for c in VERSION_1_CASES])
def test_an_edited_version_1_file_has_the_same_outcome(base, tmp_path, name, edit, kind, field):
    """The bundled model and the files of earlier versions are version 1: migrated, then held to the same rules."""
    payload = as_version_1(copy.deepcopy(base[1]))
    _set(_version_1_path(edit.path), edit.value)(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    _assert_loader_outcome(path, kind, field)
    assert not (tmp_path / "g.mid").exists() or kind != "model"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files


def test_a_checkpoint_edited_in_memory_gets_the_same_one_line_error(base):
    checkpoint = load_checkpoint(base[2])
    checkpoint.model_state["W"] = _nan(checkpoint.model_state["W"])
    model_from_checkpoint(checkpoint)  # the best weights, intact, are what plays
    with pytest.raises(CheckpointError, match="model_state.W holds NaN"):
        model_from_checkpoint(checkpoint, which="last")
    checkpoint = load_checkpoint(base[2])
    checkpoint.model_config = "text"
    with pytest.raises(CheckpointError, match="model_config"):
        model_from_checkpoint(checkpoint, which="last")


class Foreign:
    """Not a tensor nor a plain value: weights_only loading refuses it."""


def test_a_newer_format_and_foreign_objects_are_refused_without_torch_s_advice(base, tmp_path, capsys):
    newer = _edited(base, tmp_path, _set("version", 99))
    _assert_refused(_run(capsys, "info", newer), "newer")
    foreign = tmp_path / "foreign.pt"
    torch.save({**base[1], "extra": Foreign()}, foreign)
    line = _assert_refused(_run(capsys, "generate", foreign, "--out", tmp_path / "g.mid"), "never loaded")
    assert "weights_only" not in line and "trust" not in line


def test_the_bundled_model_loads_unchanged():
    """The bundled file is version 1 (never rewritten): every field of it reaches the Checkpoint as it is
    in the file, which is what the version-1 loader gave (test_checkpoint.py has the weights' bits)."""
    path = default_model_path()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["version"] == 1
    checkpoint = load_checkpoint(path)
    assert checkpoint.training_problem is None and checkpoint.training is not None
    # written before the recurrence option: a file that names none holds the paper's tanh RNN
    assert "recurrence" not in raw["model_config"]
    assert checkpoint.model_config.to_dict() == {**raw["model_config"], "recurrence": "tanh"}
    assert checkpoint.data.roll_settings.to_dict() == raw["roll_settings"]
    assert checkpoint.data.description == raw["data"]
    assert [record.to_dict() for record in checkpoint.history] == raw["history"]
    assert (checkpoint.evaluation, checkpoint.candidates, checkpoint.recipe, checkpoint.history_note,
            checkpoint.saved_at) == (raw["evaluation"], raw["candidates"], raw["recipe"], raw["history_note"],
                                     raw["saved_at"])
    training = checkpoint.training
    # and before --rnn-input-dropout: its default, off, stands in
    assert "rnn_input_dropout" not in raw["train_config"]
    assert training.train_config.to_dict() == {**raw["train_config"], "rnn_input_dropout": 0.0}
    assert training.progress.to_dict() == raw["progress"]
    assert training.pretraining == raw["pretraining"] and training.optimizer_state is None  # (removed: see its recipe)
    assert checkpoint.extras == {"saved_at_original": raw["saved_at_original"]}  # a key of its own, kept
    for name, value in raw["model_state"].items():
        assert torch.equal(checkpoint.model_state[name], value), name
    assert model_from_checkpoint(checkpoint).config.gibbs_steps == 1000


def test_the_limits_agree_with_the_model_and_the_defaults_are_inside_them():
    assert (limits.N_PIANO_KEYS, limits.LOWEST_PIANO_KEY) == (model_module.N_PIANO_KEYS, model_module.LOWEST_PIANO_KEY)
    from dataclasses import asdict

    from rnnrbm_studio.training.checkpoint_checks import check_fields
    from rnnrbm_studio.training.recipes import RECIPES

    recipes = [configs(recipe) for recipe in RECIPES]
    for values, table, optional in ((asdict(RnnRbmConfig()), limits.MODEL_FIELDS, set()),
                                    (asdict(TrainConfig()), limits.TRAIN_FIELDS, limits.TRAIN_OPTIONAL),
                                    *((asdict(model), limits.MODEL_FIELDS, set()) for model, _ in recipes),
                                    *((asdict(train), limits.TRAIN_FIELDS, limits.TRAIN_OPTIONAL)
                                      for _, train in recipes),
                                    (asdict(RollSettings()), limits.ROLL_FIELDS, limits.ROLL_OPTIONAL)):
        assert set(table) == set(values), set(table) ^ set(values)  # every field has a rule
        assert check_fields(values, table, optional, "x") == values


SUBPROCESS_CASES = {  # the reported hang, MemoryError and silent NaN file, in fresh interpreters
    "gibbs_steps 1e9": ("info", "generate", "eval", "export-params", "resume"),
    "NaN weight": ("generate",),
    "progress text": ("resume",),
}


def test_real_processes_refuse_the_reported_files_in_one_line(base, tmp_path):
    data = base[0]
    processes = {}
    for name, commands in SUBPROCESS_CASES.items():
        edit = next(c[1] for c in CASES if c[0] == name)
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        path = _edited(base, folder, edit)
        args = {"info": ["info", path], "generate": ["generate", path, "--out", folder / "g.mid"],
                "eval": ["eval", path, data, "--split", "train"], "export-params": ["export-params", path, folder / "p.npz"],
                "resume": ["train", data, "--out", path, "--resume"]}
        for command in commands:
            processes[(name, command)] = subprocess.Popen(
                [sys.executable, "-m", "rnnrbm_studio", *map(str, args[command])], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    failures = []
    for (name, command), process in processes.items():
        try:
            out, err = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        lines = err.strip().splitlines()
        if process.returncode != 2 or len(lines) != 1 or not lines[0].startswith("rnnrbm-studio: error: ") \
                or "Traceback" in out + err:
            failures.append(f"{name} / {command}: exit {process.returncode}, stderr {err!r}")
    assert not failures, "\n".join(failures)
    assert not list(tmp_path.rglob("*.mid")) and not list(tmp_path.rglob("*.npz"))


def test_random_state_arrays_of_huge_dtypes_are_refused_before_allocation(base, tmp_path):
    payload = copy.deepcopy(base[1])
    payload["training"]["rng"]["sampler"] = {"__ndarray__": [1], "dtype": "V1000000000000"}
    path = tmp_path / "m.pt"
    torch.save(payload, path)
    loaded = load_checkpoint(path)  # the model still loads; its training state is set aside
    assert "rng.sampler" in loaded.training_problem and loaded.training is None
    assert pickle.dumps(loaded.model_config.to_dict())  # plain values
