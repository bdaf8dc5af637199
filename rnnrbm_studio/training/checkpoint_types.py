"""A checkpoint as typed data, the file's layout (schema version 2), and the migration of older files.

On disk a checkpoint is a dict of plain values and tensors, which torch.load(weights_only=True) reads
without running code; in memory it is a Checkpoint, whose fields the app reads. `to_dict` gives the
file's layout, one section per dataclass:

    format, version (2), saved_at,
    model_config {RnnRbmConfig}, model_state {weights}, best_model_state {weights} | None,
    data {roll_settings {RollSettings}, description},
    training {train_config, progress, optimizer_state, averaged_state, rng, chain_states, pretraining,
              epoch_in_progress} | absent (a model alone),
    history [{epoch, loss, monitor, valid_monitor, valid_ll, valid_ll_se, kept_epoch, seconds, frames_per_second}]
        (numbers only: a file without the newer readings loads with them None; no version change),
    history_note, evaluation, recipe, candidates, and any key a newer version wrote (kept as read).

`from_dict` reads a dict that checkpoint_checks.validate_payload has checked. Version 1 (one flat
dict: roll_settings, data and the training state's keys beside the model's) is moved into this layout
by `migrate`, before checking, so the bundled model and every older file load unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..model import RnnRbmConfig
from ..music.pianoroll import RollSettings
from .config import EpochRecord, TrainConfig

FORMAT = "rnnrbm-studio-checkpoint"
SCHEMA_VERSION = 2

Weights = dict[str, torch.Tensor]  # a model's state_dict


@dataclass
class Progress:
    epochs_completed: int = 0
    best_valid_monitor: float | None = None
    best_valid_ll: float | None = None  # with select_by="ll"
    epochs_since_best: int = 0
    elapsed_seconds: float = 0.0  # training seconds of every session of the run, pretraining included

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class EpochInProgress:
    """Where a stop inside an epoch left it: a resumed run rebuilds the epoch's batches from the
    shuffle generator's state at its start, skips the updates done and goes on with its sums."""

    epoch: int  # 1-based
    step: int  # updates done
    shuffle: list  # random.Random's state at the epoch's start, as rng_state.rng_state_to_lists gives it
    frames: int
    loss_sum: float
    monitor_sum: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(eq=False)  # (it holds tensors: compare to_dict()s)
class RandomStates:
    """The run's generators, as rng_state.rng_state_to_lists gives them (torch's: its byte tensor);
    None: not saved (the generator starts from the seed)."""

    sampler: Any = None
    monitor: Any = None
    shuffle: Any = None
    torch: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(eq=False)  # (it holds tensors: compare to_dict()s)
class TrainingState:
    """What continuing a run needs beyond the model: a file either has all of it or none (a model alone,
    or a training state that did not check out: Checkpoint.training_problem)."""

    train_config: TrainConfig = field(default_factory=TrainConfig)
    progress: Progress = field(default_factory=Progress)
    optimizer_state: dict | None = None  # None: nothing to resume
    averaged_state: Weights | None = None  # the moving average of the weights (train_config.average)
    rng: RandomStates = field(default_factory=RandomStates)
    chain_states: torch.Tensor | None = None  # persistent chains, one bit per key: (frames, ceil(keys / 8)) uint8
    pretraining: dict[str, dict[str, Any]] = field(default_factory=dict)  # phase -> what it did
    epoch_in_progress: EpochInProgress | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"train_config": self.train_config.to_dict(), "progress": self.progress.to_dict(),
                "optimizer_state": self.optimizer_state, "averaged_state": self.averaged_state,
                "rng": self.rng.to_dict(), "chain_states": self.chain_states, "pretraining": self.pretraining,
                "epoch_in_progress": self.epoch_in_progress.to_dict() if self.epoch_in_progress else None}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingState":
        partial = values.get("epoch_in_progress")
        return cls(train_config=TrainConfig.from_dict(values.get("train_config")),
                   progress=_known(Progress, values.get("progress")),
                   optimizer_state=values.get("optimizer_state"), averaged_state=values.get("averaged_state"),
                   rng=_known(RandomStates, values.get("rng")), chain_states=values.get("chain_states"),
                   pretraining=dict(values.get("pretraining") or {}),
                   epoch_in_progress=_known(EpochInProgress, partial) if partial is not None else None)


def _known(cls, values: dict[str, Any] | None):
    """cls from the fields of `values` it has (a file may hold more)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (values or {}).items() if k in names})


@dataclass
class DataSettings:
    """What the model was trained on: the time grid it plays and reads primers on, and the data's name."""

    roll_settings: RollSettings = field(default_factory=RollSettings)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"roll_settings": self.roll_settings.to_dict(), "description": self.description}


@dataclass(eq=False)  # (it holds tensors: compare to_dict()s)
class Checkpoint:
    model_config: RnnRbmConfig
    model_state: Weights  # the last weights
    best_model_state: Weights | None = None  # the best on validation (the average, when averaging): what plays
    data: DataSettings = field(default_factory=DataSettings)
    training: TrainingState | None = None
    history: list[EpochRecord] = field(default_factory=list)
    history_note: str | None = None  # why the history is as it is (the bundled model's lacks readings)
    evaluation: dict[str, Any] | None = None  # `eval --record`'s summary, shown by info
    recipe: str | None = None  # how the model was made, shown by info
    candidates: dict[str, Any] | None = None  # the choice between runs (candidates.CandidateChoice.summary)
    saved_at: str | None = None  # ISO 8601, UTC; set by save_checkpoint
    # keys a newer or an older version wrote that this one does not read, written back as they were read
    extras: dict[str, Any] = field(default_factory=dict)
    # why the file's training state was set aside (the model still plays; --resume says this); never written
    training_problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The file's layout (torch.save-able with weights_only loading)."""
        return {**self.extras, "format": FORMAT, "version": SCHEMA_VERSION, "saved_at": self.saved_at,
                "model_config": self.model_config.to_dict(), "model_state": self.model_state,
                "best_model_state": self.best_model_state, "data": self.data.to_dict(),
                **({"training": self.training.to_dict()} if self.training is not None else {}),
                "history": [record.to_dict() for record in self.history], "history_note": self.history_note,
                "evaluation": self.evaluation, "recipe": self.recipe, "candidates": self.candidates}

    @classmethod
    def from_dict(cls, checked: dict[str, Any], training_problem: str | None = None) -> "Checkpoint":
        """A checkpoint from a file's dict in this layout, as checkpoint_checks.validate_payload returns it."""
        data = checked.get("data") or {}
        training = checked.get("training")
        return cls(model_config=RnnRbmConfig.from_dict(checked["model_config"]),
                   model_state=checked["model_state"], best_model_state=checked.get("best_model_state"),
                   data=DataSettings(RollSettings.from_dict(data.get("roll_settings")), data.get("description") or ""),
                   training=TrainingState.from_dict(training) if training is not None else None,
                   history=[EpochRecord.from_dict(entry) for entry in checked.get("history") or []],
                   history_note=checked.get("history_note"), evaluation=checked.get("evaluation"),
                   recipe=checked.get("recipe"), candidates=checked.get("candidates"),
                   saved_at=checked.get("saved_at"),
                   extras={k: v for k, v in checked.items() if k not in KEYS},
                   training_problem=training_problem)


KEYS = ("format", "version", "saved_at", "model_config", "model_state", "best_model_state", "data", "training",
        "history", "history_note", "evaluation", "recipe", "candidates")


# ------------------------------------------------------------------------------ migration
V1_TRAINING_KEYS = ("train_config", "progress", "optimizer_state", "averaged_state", "rng", "chain_states",
                    "pretraining", "epoch_in_progress")


def migrate_v1(old: dict[str, Any]) -> dict[str, Any]:
    """A version-1 file's dict in version 2's layout. Values move unread: checking them is
    validate_payload's, after the move, so an old file is held to the same rules as a new one."""
    new = {k: v for k, v in old.items() if k not in (*V1_TRAINING_KEYS, "roll_settings", "data")}
    new["version"] = 2
    new["data"] = {new_key: old[old_key] for old_key, new_key in (("roll_settings", "roll_settings"),
                                                                  ("data", "description")) if old_key in old}
    training = {k: old[k] for k in V1_TRAINING_KEYS if k in old}
    if training:  # a model saved alone had none of them
        new["training"] = training
    return new


MIGRATIONS = {1: migrate_v1}  # version -> the dict in the next version's layout


def migrate(payload: dict[str, Any], version: int) -> dict[str, Any]:
    """A file's dict of `version` (1..SCHEMA_VERSION) in the current layout."""
    while version < SCHEMA_VERSION:
        payload, version = MIGRATIONS[version](payload), version + 1
    return payload
