"""The training run's settings, and what the Trainer reports: plain dataclasses, no torch.

TrainConfig's fields are bounded by limits.TRAIN_FIELDS (checked when a model file is read and when the
command line is parsed).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class TrainConfig:
    epochs: int = 200
    learning_rate: float = 0.001
    optimizer: str = "sgd"  # "sgd" (the tutorial's) or "adam"
    momentum: float = 0.0  # for sgd
    batch_seqs: int = 1  # subsequences per update; 1 is the tutorial's schedule
    seq_len: int = 100  # frames per subsequence
    rnn_lr_scale: float = 1.0  # learning rate of the RNN's parameters relative to the RBM's
    grad_clip: float | None = None  # clip the gradient's global norm
    key_shift: int = 0  # augmentation: transpose each piece by up to +-key_shift steps, drawn anew each epoch
    key_shift_step: int = 1  # shifts are multiples of this: 12 moves pieces by octaves and keeps their keys
    key_shift_fraction: float = 1.0  # ...during this fraction of the epochs (the rest: the pieces' own keys)
    patience: int | None = None  # stop after this many epochs without a better valid monitor
    seed: int = 0
    threads: int | None = None  # torch threads; None leaves torch's default
    prefetch_random: bool = False  # draw random numbers ahead on a background thread (a free core helps)
    # recipe options (docs/quality.md); the defaults leave the tutorial's training unchanged
    lr_schedule: str = "constant"  # "cosine": decays to lr_min_ratio x the learning rates at the last epoch
    lr_min_ratio: float = 0.05
    rnn_pretrain_epochs: int = 0  # first train the RNN alone (W = 0: exact likelihood, no sampling); a cap:
    # with valid data it keeps the best epoch by the exact valid log-likelihood and stops 10 epochs after it
    rbm_pretrain_epochs: int = 0  # first train W, bv, bh as an RBM on the frames, shuffled (CD-k)
    pretrain_lr: float = 0.003  # Adam's learning rate in both pretraining phases
    # "ll": keep the best weights (and stop early) by the log-likelihood per step (a small AIS with a
    # fixed seed) of the first select_frames valid frames, not by the tutorial's monitor
    select_by: str = "monitor"
    select_frames: int = 2000
    # at least this many updates: `epochs` is raised to reach it on a small corpus, so that one command
    # line gives a small corpus (JSB: 16 updates per epoch) as much training as a big one (Nottingham: 125)
    min_updates: int = 0
    cd_start: str = "data"  # where CD's negative chains start: "data" (the tutorial), "previous", "silence"
    weight_decay: float = 0.0  # decoupled decay of W each update: W -= lr * weight_decay * W
    rnn_weight_decay: float = 0.0  # the same for the RNN's weight matrices (Wuh, Wuv, Wvu, Wuu), at the RNN's lr
    # keep an exponential moving average of the weights (this decay per update; 0: off); the average is
    # what is validated, selected and kept as the model, the raw weights go on training
    average: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})


# The quality recipe (docs/quality.md): how the bundled model was trained. The app's Train uses it
# unless switched off; the command line spells it out (benchmarks/quality.py, resources/default_model.md).
QUALITY_RECIPE: dict[str, Any] = dict(
    optimizer="adam", learning_rate=0.002, lr_schedule="cosine", batch_seqs=4, cd_start="persistent",
    weight_decay=0.01, rnn_weight_decay=0.1, rnn_pretrain_epochs=100, rbm_pretrain_epochs=5, select_by="ll",
    epochs=60, min_updates=28000)


# Gibbs steps per generated frame stored in a model the recipe trains: its sharp RBMs need about
# 1,000 to mix from silence (25, the tutorial's, leaves half the steps silent: resources/default_model.md)
QUALITY_GIBBS_STEPS = 1000


def quality_recipe(**overrides: Any) -> TrainConfig:
    """The quality recipe's TrainConfig, with some fields changed."""
    return TrainConfig(**{**QUALITY_RECIPE, **overrides})


@dataclass
class TrainProgress:
    event: str  # "step", "epoch", "finished", "stopped", "diverged"
    epoch: int  # 1-based epoch in progress (or just finished)
    epochs: int
    step: int  # updates done in this epoch
    steps_in_epoch: int
    frames_per_second: float
    loss: float  # mean CD cost over the epoch so far
    monitor: float  # mean training monitor over the epoch so far (the tutorial's number)
    valid_monitor: float | None = None
    best_valid_monitor: float | None = None
    elapsed_seconds: float = 0.0
    eta_seconds: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        done = (self.epoch - 1) + (self.step / self.steps_in_epoch if self.steps_in_epoch else 0)
        return min(1.0, done / self.epochs) if self.epochs else 1.0


@dataclass
class TrainResult:
    status: str  # "finished", "stopped", "diverged", "early-stopped"
    epochs_completed: int
    message: str
    best_valid_monitor: float | None = None
    history: list[dict] = field(default_factory=list)
