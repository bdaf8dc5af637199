"""The ranges of every number a model file or a command line may give the engine, in one place.

Checkpoint validation (checkpoint_checks.py) and the command line's options (cli/options.py types,
generated from the settings' dataclasses) read the same table, so a model the command line could have
trained always loads, and a model file edited to numbers the engine cannot run (a billion Gibbs steps,
zero hidden units) is refused when it is opened instead of hanging or failing deep inside generation.
The other facts of a setting (its default, its help) live on its dataclass field; the recipes' values
in training/recipes.py.

Each entry: (low, high) for numbers (both included), ("open", low, high) for numbers above low, a
tuple of strings for choices, bool for flags; `optional` marks fields that may also be None.
"""
from __future__ import annotations

# model.py's constants, repeated so the command line can build its parser without importing torch
# (tests/test_hostile_checkpoints.py checks they agree)
N_PIANO_KEYS = 88
LOWEST_PIANO_KEY = 21

SEED_MAX = 2**32 - 1
# A frame is one step of the grid; 100,000 frames are 7 hours of eighth notes at 120 bpm.
FRAMES_MAX = 100_000
THREADS_MAX = 256

# RnnRbmConfig. The app reads, plays and writes 88 piano keys from A0, so a model of other keys could
# only fail later (a primer of 88 keys, a MIDI note above 127): they are fixed.
MODEL_FIELDS: dict[str, object] = {
    "n_visible": (N_PIANO_KEYS, N_PIANO_KEYS),
    "lowest_pitch": (LOWEST_PIANO_KEY, LOWEST_PIANO_KEY),
    "n_hidden": (1, 4096),
    "n_hidden_recurrent": (1, 4096),
    "cd_k": (1, 1000),
    # the bundled model needs 1,000; generation holds steps x hidden noise in memory at once
    "gibbs_steps": (1, 10_000),
    "learned_u0": bool,
    "recurrence": ("tanh", "gru"),
}

# TrainConfig. Learning rates are open at 0 (0 would train nothing). Earlier versions of the command
# line let 0 stand for "off" in a few fields: files may hold it.
TRAIN_FIELDS: dict[str, object] = {
    "epochs": (1, 100_000),
    "learning_rate": ("open", 0.0, 10.0),
    "optimizer": ("sgd", "adam"),
    "momentum": (0.0, 1.0),
    "batch_seqs": (1, 4096),
    "seq_len": (2, FRAMES_MAX),
    "rnn_lr_scale": (0.0, 100.0),
    "grad_clip": (0.0, 1e6),  # 0: off, as None
    "key_shift": (0, 12),
    "key_shift_step": (1, 12),
    "key_shift_fraction": (0.0, 1.0),
    "patience": (0, 100_000),  # 0: off, as None
    "seed": (0, 2**64 - 1),  # what torch.manual_seed takes (the command line offers 0..SEED_MAX)
    "threads": (0, THREADS_MAX),  # 0: torch's default, as None
    "prefetch_random": bool,
    "lr_schedule": ("constant", "cosine"),
    "lr_min_ratio": (0.0, 1.0),
    "rnn_pretrain_epochs": (0, 100_000),
    "rbm_pretrain_epochs": (0, 100_000),
    "pretrain_lr": ("open", 0.0, 10.0),
    "select_by": ("monitor", "ll"),
    "select_frames": (1, 10_000_000),
    "min_updates": (0, 100_000_000),
    "cd_start": ("data", "persistent", "previous", "silence"),
    "weight_decay": (0.0, 100.0),
    "rnn_weight_decay": (0.0, 100.0),
    "rnn_input_dropout": (0.0, 0.9),
    "average": (0.0, 1.0),
}
TRAIN_OPTIONAL = {"grad_clip", "patience", "threads"}
# The command line's own ranges where they are narrower than a file's: off is the option left out, not 0
# (which files of earlier versions may hold), and seeds stop at SEED_MAX.
TRAIN_CLI_RANGES: dict[str, object] = {
    "grad_clip": ("open", 0.0, 1e6),
    "patience": (1, 100_000),
    "seed": (0, SEED_MAX),
    "threads": (1, THREADS_MAX),
}

# RollSettings (pianoroll.py)
ROLL_FIELDS: dict[str, object] = {
    "steps_per_beat": (1, 96),
    "seconds_per_step": (0.01, 60.0),
    "include_drums": bool,
    "transpose_to_c": bool,
    "lowest_pitch": (LOWEST_PIANO_KEY, LOWEST_PIANO_KEY),
    "n_keys": (N_PIANO_KEYS, N_PIANO_KEYS),
    "max_frames": (1, 10_000_000),
}
ROLL_OPTIONAL = {"seconds_per_step"}


def bounds(table: dict[str, object], name: str) -> tuple:
    """(low, high) of a numeric field; for an open-low field, its low too (use with low_open)."""
    spec = table[name]
    return tuple(spec[1:]) if spec[0] == "open" else tuple(spec)


def is_open_low(table: dict[str, object], name: str) -> bool:
    spec = table[name]
    return isinstance(spec, tuple) and spec[0] == "open"
