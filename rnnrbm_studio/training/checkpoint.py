"""Checkpoints: config, weights, optimiser state, progress and data settings in one file.

A Checkpoint (checkpoint_types.py) is written through one door, save_checkpoint, atomically: the
bytes go to a temporary file in the same folder, are flushed to disk, and the temporary file is
renamed over the old checkpoint, so a crash at any point leaves either the old or the new checkpoint,
never a torn one.

It is read through one door, load_checkpoint: torch.load(weights_only=True), so a file cannot run
code; an older version's layout migrated to the current one; then checkpoint_checks.validate_payload,
so every reader gets fields of the right types, sizes within limits.py, weights of the right shapes
and finite; anything else is a one-line CheckpointError.
"""
from __future__ import annotations

import datetime
import logging
import os
import pickle
from pathlib import Path

import torch

from .checkpoint_checks import Invalid, check_fields, check_weights, validate_payload, weight_shapes
from .checkpoint_types import FORMAT, SCHEMA_VERSION, Checkpoint, DataSettings, migrate
from ..errors import StudioError
from ..limits import MODEL_FIELDS
from ..model import RnnRbm, RnnRbmConfig
from ..music.pianoroll import RollSettings
from ..music.atomic_files import write_atomically
from ..music.safe_files import FileRefused, open_regular_file

log = logging.getLogger(__name__)


class CheckpointError(StudioError):
    """A checkpoint that cannot be read or used; str() is a one-line reason."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (a full disk, a folder gone); the previous one is intact."""


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` (stamped with the time now) to `path`, atomically; the folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = checkpoint.to_dict()
    payload["saved_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_atomically(path, lambda stream: torch.save(payload, stream))
    log.debug("checkpoint written: %s", path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A model file's checkpoint, every field the app reads checked (checkpoint_checks.py); raises
    CheckpointError with a one-line reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such model file: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a model file")
    try:
        stream = open_regular_file(path)  # a FIFO named like a model would block torch.load for ever
    except FileRefused as refused:
        raise CheckpointError(f"{path}: {refused}") from None
    try:
        with stream:
            payload = torch.load(stream, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises turning the safe loader off, which would run the file's code
        raise CheckpointError(f"{path} is not a readable RNN-RBM Studio model (it holds Python objects "
                              f"other than weights and settings, which are never loaded)") from None
    except (PermissionError, FileNotFoundError) as error:  # (torch reports a torn file as an OSError too)
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}") from None
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else ""
        detail = f"{type(error).__name__}: {first}" if first and "weights_only" not in first else type(error).__name__
        raise CheckpointError(f"{path} is not a readable RNN-RBM Studio model ({detail[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an RNN-RBM Studio model file")
    version = payload.get("version", 1)  # (every file has had one; the first layout is the safe guess)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path} is a damaged model file: its format version is {version!r}"[:300])
    if version > SCHEMA_VERSION:
        raise CheckpointError(f"{path} was written by a newer RNN-RBM Studio (format {version})")
    try:
        checked, training_problem = validate_payload(migrate(payload, version))
    except Invalid as problem:
        raise CheckpointError(f"{path} is a damaged or incompatible model file: {problem}") from None
    return Checkpoint.from_dict(checked, training_problem)


def model_from_checkpoint(checkpoint: Checkpoint, which: str = "best") -> RnnRbm:
    """The model in a checkpoint: its best-on-validation weights if recorded (which='best'), else the last.

    Checks the model's part again, so a checkpoint built or edited in memory gets the same one-line
    CheckpointError as a file."""
    try:
        config = checkpoint.model_config
        config = check_fields(config.to_dict() if isinstance(config, RnnRbmConfig) else config, MODEL_FIELDS,
                              set(), "model_config")
        if "n_hidden" not in config or "n_hidden_recurrent" not in config:
            raise Invalid("model_config lacks the sizes of the model")
        state = checkpoint.best_model_state if which == "best" else None
        name = "best_model_state" if state is not None else "model_state"
        state = check_weights(state if state is not None else checkpoint.model_state, weight_shapes(config), name)
        model = RnnRbm(RnnRbmConfig.from_dict(config))
        model.load_state_dict(state)
    except Invalid as problem:
        raise CheckpointError(f"the model file is damaged or incompatible: {problem}") from None
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"the model file is damaged or incompatible ({type(error).__name__})") from None
    model.eval()
    return model


def load_model(path: str | os.PathLike, which: str = "best") -> tuple[RnnRbm, Checkpoint]:
    checkpoint = load_checkpoint(path)
    return model_from_checkpoint(checkpoint, which), checkpoint


def roll_settings_of(checkpoint: Checkpoint | None) -> RollSettings:
    """The time grid a checkpoint's model plays and reads primers on; the default grid without one
    (no model open)."""
    return checkpoint.data.roll_settings if checkpoint is not None else RollSettings()


def model_checkpoint(model: RnnRbm, roll_settings: RollSettings | None = None, description: str = "") -> Checkpoint:
    """A checkpoint of a model alone (no training state): for saving from the app."""
    return Checkpoint(model_config=model.config, model_state=model.state_dict(),
                      data=DataSettings(roll_settings or RollSettings(), description))

