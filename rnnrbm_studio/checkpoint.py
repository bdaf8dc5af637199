"""Checkpoints: config, weights, optimiser state, progress and data settings in one file.

Written atomically: the bytes go to a temporary file in the same folder, are flushed to disk, and
the temporary file is renamed over the old checkpoint, so a crash at any point leaves either the
old or the new checkpoint, never a torn one.
"""
from __future__ import annotations

import datetime
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .model import RnnRbm, RnnRbmConfig
from .pianoroll import RollSettings

from .errors import StudioError

log = logging.getLogger(__name__)

FORMAT = "rnnrbm-studio-checkpoint"
VERSION = 1


class CheckpointError(StudioError):
    """A checkpoint that cannot be read or used; str() is a one-line reason."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION,
               "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               **payload}
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; a model file is an ordinary file
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    log.debug("checkpoint written: %s", path)


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such model file: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable RNN-RBM Studio model "
                              f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
                              ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an RNN-RBM Studio model file")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer RNN-RBM Studio (format {payload['version']})")
    return payload


def model_from_payload(payload: dict[str, Any], which: str = "best") -> RnnRbm:
    """The model in a checkpoint: its best-on-validation weights if recorded (which='best'), else the last."""
    try:
        model = RnnRbm(RnnRbmConfig.from_dict(payload["model_config"]))
        state = payload.get("best_model_state") if which == "best" else None
        model.load_state_dict(state if state is not None else payload["model_state"])
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"the model file is damaged or incompatible ({type(error).__name__})") from None
    model.eval()
    return model


def load_model(path: str | os.PathLike, which: str = "best") -> tuple[RnnRbm, dict[str, Any]]:
    payload = load_checkpoint(path)
    return model_from_payload(payload, which), payload


def roll_settings_of(payload: dict[str, Any]) -> RollSettings:
    return RollSettings.from_dict(payload.get("roll_settings"))


def model_payload(model: RnnRbm, roll_settings: RollSettings | None = None, **extra: Any) -> dict[str, Any]:
    """A checkpoint payload for a model alone (no optimiser, no progress): for saving from the app."""
    return {"model_config": model.config.to_dict(), "model_state": model.state_dict(),
            "roll_settings": (roll_settings or RollSettings()).to_dict(), **extra}


def rng_state_to_lists(state):
    """RNG states as plain lists and ints, which torch.load(weights_only=True) accepts."""
    if isinstance(state, dict):
        return {k: rng_state_to_lists(v) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return [rng_state_to_lists(v) for v in state]
    if isinstance(state, np.ndarray):
        return {"__ndarray__": state.tolist(), "dtype": str(state.dtype)}
    if isinstance(state, np.integer):
        return int(state)
    return state


def rng_state_from_lists(state):
    """The inverse of rng_state_to_lists."""
    if isinstance(state, dict):
        if "__ndarray__" in state:
            return np.array(state["__ndarray__"], dtype=state["dtype"])
        return {k: rng_state_from_lists(v) for k, v in state.items()}
    if isinstance(state, list):
        return [rng_state_from_lists(v) for v in state]
    return state


def rng_state_as_tuples(state):
    """Lists back to the nested tuples random.Random.setstate wants."""
    return tuple(rng_state_as_tuples(v) for v in state) if isinstance(state, list) else state
