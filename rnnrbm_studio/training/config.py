"""The training run's settings, and what the Trainer reports: plain dataclasses, no torch.

Each TrainConfig field carries its help in its metadata (the command line's options are generated from
the fields: cli/training.py), its range is in limits.TRAIN_FIELDS (checked when a model file is read
and when the command line is parsed), and the values the recipes give it are in recipes.py. Its default
is the Theano tutorial's training. Metadata keys: "help"; "option", the command line's flag where it is
not the field's name; "internal", why a field has no option; "unset", what None means where it is not
"off".
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def _help(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass
class TrainConfig:
    epochs: int = field(default=200, metadata=_help("passes over the data"))
    learning_rate: float = field(default=0.001, metadata=_help("learning rate", option="--lr"))
    optimizer: str = field(default="sgd", metadata=_help("sgd, the tutorial's plain gradient descent, or adam"))
    momentum: float = field(default=0.0, metadata=_help("SGD momentum"))
    batch_seqs: int = field(default=1, metadata=_help("subsequences per update; 1 is the tutorial's schedule"))
    seq_len: int = field(default=100, metadata=_help("frames per subsequence"))
    rnn_lr_scale: float = field(default=1.0, metadata=_help("RNN learning rate / RBM learning rate"))
    grad_clip: float | None = field(default=None, metadata=_help("clip the gradient's global norm"))
    key_shift: int = field(default=0, metadata=_help(
        "augment: transpose each piece by up to +-N steps, drawn anew each epoch"))
    key_shift_step: int = field(default=1, metadata=_help(
        "semitones per key-shift step; 12 moves pieces by octaves, which keeps their keys"))
    key_shift_fraction: float = field(default=1.0, metadata=_help(
        "transpose during this fraction of the epochs only; the rest train on the pieces' own keys"))
    patience: int | None = field(default=None, metadata=_help("stop after N epochs without a better valid monitor"))
    seed: int = field(default=0, metadata=_help("the same seed and data train the same model"))
    threads: int | None = field(default=None, metadata=_help("torch threads", unset="torch's own choice"))
    prefetch_random: bool = field(default=False, metadata=_help(
        "draw random numbers ahead on a background thread",
        internal="bitwise the same run, and slower on a busy machine (README, Benchmarks): "
                 "benchmarks/bench_training.py --prefetch measures it"))
    # the recipe options (docs/quality.md); their defaults leave the tutorial's training unchanged
    lr_schedule: str = field(default="constant", metadata=_help(
        "cosine: decay the learning rates to --lr-min-ratio of themselves by the last epoch"))
    lr_min_ratio: float = field(default=0.05, metadata=_help("where the cosine schedule ends"))
    # a cap: with valid data the phase keeps its best epoch by the exact valid log-likelihood and stops
    # 10 epochs after it, so one setting suits a small corpus and a big one
    rnn_pretrain_epochs: int = field(default=0, metadata=_help(
        "first train the RNN alone, W held at 0, to predict each frame's notes independently: exact and fast"))
    rbm_pretrain_epochs: int = field(default=0, metadata=_help(
        "first train the RBM alone on the frames, shuffled, by CD-k; a run stopped during pretraining "
        "pretrains again from the start on --resume"))
    pretrain_lr: float = field(default=0.003, metadata=_help("Adam learning rate of both pretraining phases"))
    select_by: str = field(default="monitor", metadata=_help(
        "keep the best epoch (and stop early) by the tutorial's monitor, or by the log-likelihood per step "
        "(a small AIS with a fixed seed) of --select-frames fixed valid frames, measured after every epoch"))
    # few: the measure runs after every epoch and must cost a small part of one (README, Training)
    select_frames: int = field(default=300, metadata=_help(
        "valid frames measured by --select-by ll, drawn once with a fixed seed across the valid pieces"))
    # so that one command line gives a small corpus (JSB: 16 updates per epoch) as much training as a
    # big one (Nottingham: 125)
    min_updates: int = field(default=0, metadata=_help(
        "train at least this many updates: raises the recipe's epochs on a small corpus; a given --epochs "
        "wins over the recipe's minimum, and the run says at its start when the minimum raises the epochs"))
    cd_start: str = field(default="data", metadata=_help(
        "where CD's negative chains start: the data (the tutorial's CD-k), where each frame's chain stopped "
        "the epoch before (persistent), the previous frame, or silence"))
    weight_decay: float = field(default=0.0, metadata=_help(
        "decoupled decay of W each update, times the learning rate"))
    rnn_weight_decay: float = field(default=0.0, metadata=_help(
        "decay of the RNN's weight matrices (Wuh, Wuv, Wvu, Wuu; a gru's Wvg, Wug too) each update, times the RNN's learning rate"))
    rnn_input_dropout: float = field(default=0.0, metadata=_help(
        "during CD training, hide each key of the frames the RNN reads with this probability (the rest scaled "
        "by 1 / (1 - p)); the RBM still learns every key: a regulariser for the RNN, the part that overfits; "
        "0.2 and 0.4 measured worse on Nottingham (docs/quality.md, round five), so no recipe uses it"))
    # the average is what is validated, selected and kept as the model; the raw weights go on training
    average: float = field(default=0.0, metadata=_help(
        "keep a moving average of the weights with this decay per update, e.g. 0.999, and validate, select "
        "and save the average; 0 is off"))

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class EpochRecord:
    """One finished epoch's readings; None where nothing was measured (no valid data; select_by="monitor"
    measures no valid_ll; the bundled model's history was stored without its training monitor)."""

    epoch: int  # 1-based
    loss: float | None = None  # mean CD cost over the epoch
    monitor: float | None = None  # mean training monitor (the tutorial's number)
    valid_monitor: float | None = None
    valid_ll: float | None = None
    valid_ll_se: float | None = None  # the AIS estimate's standard error (not in files before it was measured)
    kept_epoch: int | None = None  # the epoch whose weights the run kept, as of this one (its best so far)
    seconds: float | None = None
    frames_per_second: float | None = None
    # readings under names this version does not know (a file of another version): written back as read
    other: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        known = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "other"}
        return {**{k: v for k, v in known.items() if v is not None}, **self.other}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EpochRecord":
        known = {f.name for f in fields(cls)} - {"other"}
        return cls(**{k: v for k, v in values.items() if k in known},
                   other={k: v for k, v in values.items() if k not in known})


@dataclass
class TrainProgress:
    # "start" (message: the plan), "pretraining" (phase set), "step", "epoch", "finished", "stopped", "diverged"
    event: str
    epoch: int  # 1-based epoch in progress (or just finished); of the phase while pretraining
    epochs: int  # of the run; of the phase while pretraining (a cap for the RNN phase, which stops early)
    step: int  # updates done in this epoch
    steps_in_epoch: int
    frames_per_second: float
    loss: float  # mean CD cost over the epoch so far
    monitor: float  # mean training monitor over the epoch so far (the tutorial's number)
    valid_monitor: float | None = None
    best_valid_monitor: float | None = None
    elapsed_seconds: float = 0.0
    eta_seconds: float | None = None  # None until enough updates are measured (training/progress.py)
    message: str = ""
    phase: str = ""  # "RBM pretraining", "RNN pretraining"; "" while training
    eta_at_most: bool = False  # the ETA is a bound: the phase may end sooner (the RNN phase stops early)
    valid_ll: float | None = None  # the epoch's validation log-likelihood per step (select_by="ll")
    valid_ll_se: float | None = None  # its standard error
    kept_epoch: int | None = None  # the epoch whose weights the run keeps so far

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
    history: list[EpochRecord] = field(default_factory=list)
