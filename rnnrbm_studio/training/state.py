"""A Trainer's whole state as a Checkpoint, a Trainer rebuilt from one, and the trainer's writes.

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

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, CheckpointWriteError, load_checkpoint, model_from_checkpoint, save_checkpoint
from .checkpoint_types import Checkpoint, DataSettings, Progress, RandomStates, TrainingState
from .rng_state import rng_state_as_tuples, rng_state_from_lists, rng_state_to_lists

log = logging.getLogger(__name__)


def training_checkpoint(trainer) -> Checkpoint:
    """Everything to continue `trainer`'s run exactly (the tensors are the trainer's own, not copies)."""
    partial = trainer.epoch_in_progress
    elapsed = (sum(record.seconds or 0.0 for record in trainer.history)
               + sum(p.get("seconds") or 0.0 for p in trainer.pretraining.values())
               + (partial.seconds if partial else 0.0))
    best = trainer.best
    training = TrainingState(
        train_config=replace(trainer.config), optimizer_state=trainer.optimizer.state_dict(),
        progress=Progress(trainer.epochs_completed, best.valid_monitor, best.valid_ll, best.epochs_since, elapsed),
        averaged_state=trainer.averaged_state,
        rng=RandomStates(sampler=rng_state_to_lists(trainer.sampler.get_state()),
                         monitor=rng_state_to_lists(trainer.monitor_sampler.get_state()),
                         shuffle=rng_state_to_lists(trainer.shuffle_rng.getstate()), torch=torch.get_rng_state()),
        # persistent chains, one bit per key and frame (a resumed run continues them exactly)
        chain_states=trainer.chains.packed() if trainer.chains else None,
        pretraining=trainer.pretraining, epoch_in_progress=partial)
    return Checkpoint(model_config=trainer.model.config, model_state=trainer.model.state_dict(),
                      best_model_state=best.state, data=DataSettings(trainer.roll_settings, trainer.data_description),
                      training=training, history=trainer.history)


def save_trainer(trainer, checkpoint: Checkpoint) -> None:
    """Write the trainer's checkpoint, unless its weights are not finite (the last good one is kept); a
    failed write (a full disk) ends the run: hours more training that cannot be kept would be lost, and
    the previous checkpoint is still whole."""
    if not all(torch.isfinite(p).all() for p in checkpoint.model_state.values()):
        log.warning("not saving non-finite weights; the last good checkpoint is kept")
        return
    path = trainer.checkpoint_path
    try:
        save_checkpoint(path, checkpoint)
    except OSError as error:
        kept = f"{path} still holds the previous checkpoint" if path.exists() else "nothing was saved"
        raise CheckpointWriteError(f"cannot write the checkpoint {path}: {error.strerror or error}; "
                                   f"training stopped and {kept}") from None


def resume_trainer(cls, checkpoint_path: str | Path, train_rolls, valid_rolls=(), epochs: int | None = None,
                   progress=None, **kwargs):
    """A `cls` (Trainer) continuing the run saved in checkpoint_path; raises CheckpointError (one line)
    if the file holds no usable training state or was trained on other data."""
    checkpoint = load_checkpoint(checkpoint_path)
    check_resumable(checkpoint, checkpoint_path)
    training = checkpoint.training
    model = model_from_checkpoint(checkpoint, which="last")
    model.train()
    config = replace(training.train_config)
    if epochs is not None:
        config.epochs = epochs
        config.min_updates = 0  # epochs given win over the run's minimum number of updates
    trainer = cls(model, train_rolls, valid_rolls, config, checkpoint_path, checkpoint.data.roll_settings, progress,
                  **kwargs)
    _load_optimizer_state(trainer.optimizer, training.optimizer_state, checkpoint_path)
    state = training.progress
    trainer.epochs_completed = state.epochs_completed
    trainer.best.valid_monitor = state.best_valid_monitor
    trainer.best.valid_ll = state.best_valid_ll
    trainer.best.epochs_since = state.epochs_since_best
    trainer.best.state = checkpoint.best_model_state
    trainer.best.epoch = kept_epoch(checkpoint)
    trainer.elapsed_before = state.elapsed_seconds
    trainer.history = list(checkpoint.history)
    trainer.pretraining = dict(training.pretraining)
    trainer.averaged_state = training.averaged_state
    rng = training.rng
    if rng.sampler is not None:
        trainer.sampler.set_state(rng_state_from_lists(rng.sampler))
    if rng.monitor is not None:
        trainer.monitor_sampler.set_state(rng_state_from_lists(rng.monitor))
    if rng.shuffle is not None:
        trainer.shuffle_rng.setstate(rng_state_as_tuples(rng.shuffle))
    if rng.torch is not None:
        torch.set_rng_state(rng.torch)
    partial = training.epoch_in_progress
    if partial is not None:
        if partial.epoch != trainer.epochs_completed + 1 or partial.step > trainer.updates_per_epoch():
            raise CheckpointError(f"{checkpoint_path} cannot be resumed: its epoch in progress ({partial.epoch}, "
                                  f"update {partial.step}) does not follow its progress or this data")
        # the epoch is rebuilt from its start: the same shuffle, then the updates done are skipped
        trainer.shuffle_rng.setstate(rng_state_as_tuples(partial.shuffle))
        trainer.resume_epoch = replace(partial)
    if training.chain_states is not None and trainer.chains is not None:
        if not trainer.chains.unpack(training.chain_states, trainer.model.config.n_visible):
            raise CheckpointError(f"{checkpoint_path} was trained on other data: its persistent chains do not fit")
    return trainer


def check_resumable(checkpoint: Checkpoint, path) -> None:
    if checkpoint.training_problem:
        raise CheckpointError(f"{path} cannot be resumed: its training state is damaged "
                              f"({checkpoint.training_problem})")
    if checkpoint.training is None or checkpoint.training.optimizer_state is None:
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


def kept_epoch(checkpoint: Checkpoint) -> int | None:
    """The epoch whose weights play: the best one kept (best_model_state), else the last; None before any.
    Files from before EpochRecord.kept_epoch: the epochs since the best count back from the last."""
    if checkpoint.history and checkpoint.history[-1].kept_epoch is not None:
        return checkpoint.history[-1].kept_epoch
    if checkpoint.training is None or not checkpoint.training.progress.epochs_completed:
        return checkpoint.history[-1].epoch if checkpoint.history else None
    progress = checkpoint.training.progress
    if checkpoint.best_model_state is None:
        return progress.epochs_completed  # the last weights play
    return progress.epochs_completed - progress.epochs_since_best
