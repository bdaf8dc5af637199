"""A Trainer's whole state in a checkpoint, and a Trainer rebuilt from one.

A run stopped anywhere and resumed trains bitwise the same weights as a run never stopped (same seed,
same data): besides the weights, the optimiser and the random generators, the checkpoint holds
* `epoch_in_progress` when it was stopped inside an epoch: the updates done, the shuffle generator's
  state at the epoch's start (the same batches are rebuilt and the done ones skipped), and the
  epoch's running sums (its loss and monitor readings come out the same);
* the persistent chains' states.
A run stopped during pretraining saves its state from before pretraining (see Trainer._run), so a
resumed run pretrains again from the start, exactly as the uninterrupted run did.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint, model_from_payload
from .rng_state import rng_state_as_tuples, rng_state_from_lists, rng_state_to_lists
from ..music.pianoroll import RollSettings
from .config import TrainConfig


def trainer_payload(trainer) -> dict[str, Any]:
    """Everything to continue `trainer`'s run exactly (the tensors are the trainer's own, not copies)."""
    partial = trainer.epoch_in_progress
    elapsed = (sum(h["seconds"] for h in trainer.history)
               + sum(p.get("seconds") or 0.0 for p in trainer.pretraining.values())
               + (partial["seconds"] if partial else 0.0))
    return {
        "model_config": trainer.model.config.to_dict(),
        "model_state": trainer.model.state_dict(),
        "best_model_state": trainer.best_state,
        "averaged_state": trainer.averaged_state,
        "optimizer_state": trainer.optimizer.state_dict(),
        "train_config": asdict(trainer.config),
        "roll_settings": trainer.roll_settings.to_dict(),
        "data": trainer.data_description,
        "progress": {"epochs_completed": trainer.epochs_completed, "best_valid_monitor": trainer.best_valid_monitor,
                     "best_valid_ll": trainer.best_valid_ll, "epochs_since_best": trainer.epochs_since_best,
                     "elapsed_seconds": elapsed},
        "epoch_in_progress": partial,
        "pretraining": trainer.pretraining,
        "history": trainer.history,
        "rng": {"sampler": rng_state_to_lists(trainer.sampler.get_state()),
                "monitor": rng_state_to_lists(trainer.monitor_sampler.get_state()),
                "shuffle": rng_state_to_lists(trainer.shuffle_rng.getstate()), "torch": torch.get_rng_state()},
        # persistent chains, one bit per key and frame (a resumed run continues them exactly)
        "chain_states": (torch.from_numpy(np.packbits(np.concatenate(trainer._chain_states) > 0, axis=-1))
                         if trainer._chain_states else None),
    }


def resume_trainer(cls, checkpoint_path: str | Path, train_rolls, valid_rolls=(), epochs: int | None = None,
                   progress=None, **kwargs):
    """A `cls` (Trainer) continuing the run saved in checkpoint_path; raises CheckpointError (one line)
    if the file holds no usable training state or was trained on other data."""
    payload = load_checkpoint(checkpoint_path)
    check_resumable(payload, checkpoint_path)
    model = model_from_payload(payload, which="last")
    model.train()
    config = TrainConfig.from_dict(payload.get("train_config"))
    if epochs is not None:
        config.epochs = epochs
    trainer = cls(model, train_rolls, valid_rolls, config, checkpoint_path,
                  RollSettings.from_dict(payload.get("roll_settings")), progress, **kwargs)
    _load_optimizer_state(trainer.optimizer, payload["optimizer_state"], checkpoint_path)
    state = payload.get("progress") or {}
    trainer.epochs_completed = state.get("epochs_completed", 0)
    trainer.best_valid_monitor = state.get("best_valid_monitor")
    trainer.best_valid_ll = state.get("best_valid_ll")
    trainer.epochs_since_best = state.get("epochs_since_best", 0)
    trainer.elapsed_before = state.get("elapsed_seconds", 0.0)
    trainer.history = list(payload.get("history") or [])
    trainer.pretraining = dict(payload.get("pretraining") or {})
    trainer.best_state = payload.get("best_model_state")
    trainer.averaged_state = payload.get("averaged_state")
    rng = payload.get("rng") or {}
    if "sampler" in rng:
        trainer.sampler.set_state(rng_state_from_lists(rng["sampler"]))
    if "monitor" in rng:
        trainer.monitor_sampler.set_state(rng_state_from_lists(rng["monitor"]))
    if "shuffle" in rng:
        trainer.shuffle_rng.setstate(rng_state_as_tuples(rng["shuffle"]))
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    partial = payload.get("epoch_in_progress")
    if partial is not None:
        if partial["epoch"] != trainer.epochs_completed + 1 or partial["step"] > trainer.updates_per_epoch():
            raise CheckpointError(f"{checkpoint_path} cannot be resumed: its epoch in progress ({partial['epoch']}, "
                                  f"update {partial['step']}) does not follow its progress or this data")
        # the epoch is rebuilt from its start: the same shuffle, then the updates done are skipped
        trainer.shuffle_rng.setstate(rng_state_as_tuples(partial["shuffle"]))
        trainer.resume_epoch = dict(partial)
    _restore_chains(trainer, payload.get("chain_states"), checkpoint_path)
    return trainer


def check_resumable(payload: dict[str, Any], path) -> None:
    if payload.get("training_state_problem"):
        raise CheckpointError(f"{path} cannot be resumed: its training state is damaged "
                              f"({payload['training_state_problem']})")
    if "optimizer_state" not in payload:
        # a StudioError: the CLI and the app show it as one line (a ValueError was a traceback)
        raise CheckpointError(f"{path} holds a model but no training state to resume")


def _load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict, path) -> None:
    """Load `saved` after checking it against the optimiser's own parameters: a tensor of another
    shape would only fail at the first update, as a traceback."""
    fresh = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    problem = None
    if [len(g["params"]) for g in saved["param_groups"]] != [len(g["params"]) for g in fresh["param_groups"]]:
        problem = "its optimiser state is for another model or optimiser"
    for index, values in saved["state"].items():
        if problem:
            break
        if not 0 <= index < len(params):
            problem = f"its optimiser state names parameter {index}, which the model lacks"
            break
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and name != "step" and value.shape != params[index].shape:
                problem = f"its optimiser state {name} of parameter {index} has shape {tuple(value.shape)}"
                break
    if problem:
        raise CheckpointError(f"{path} cannot be resumed: {problem}")
    groups = []
    for template, group in zip(fresh["param_groups"], saved["param_groups"]):
        # settings a newer or older torch lacks come from a fresh optimiser; the file's own must be sane
        merged = {**template, **group}
        for key, value in template.items():
            if key != "params" and not _same_kind(value, merged[key]):
                raise CheckpointError(f"{path} cannot be resumed: its optimiser setting {key} is {merged[key]!r:.40}")
        groups.append(merged)
    try:
        optimizer.load_state_dict({"state": saved["state"], "param_groups": groups})
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} cannot be resumed: its optimiser state does not fit "
                              f"({type(error).__name__})") from None


def _same_kind(template: Any, value: Any) -> bool:
    if isinstance(template, bool) or template is None:
        return value is None or isinstance(value, bool)
    if isinstance(template, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if isinstance(template, (tuple, list)):
        return (isinstance(value, (tuple, list)) and len(value) == len(template)
                and all(_same_kind(t, v) for t, v in zip(template, value)))
    return isinstance(value, type(template))


def _restore_chains(trainer, packed: torch.Tensor | None, path) -> None:
    if packed is None or not trainer._chain_states:
        return
    states = np.unpackbits(packed.numpy(), axis=-1, count=trainer.model.config.n_visible).astype(np.float32)
    if len(states) != sum(len(s) for s in trainer._chain_states):
        raise CheckpointError(f"{path} was trained on other data: its persistent chains do not fit")
    ends = np.cumsum([len(s) for s in trainer._chain_states])[:-1]
    trainer._chain_states = [part.copy() for part in np.split(states, ends)]
