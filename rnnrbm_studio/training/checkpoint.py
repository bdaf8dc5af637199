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
import errno
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from .checkpoint_checks import Invalid, check_fields, check_weights, validate_payload, weight_shapes
from .checkpoint_types import FORMAT, SCHEMA_VERSION, Checkpoint, DataSettings, migrate
from ..errors import StudioError
from ..limits import MODEL_FIELDS
from ..model import RnnRbm, RnnRbmConfig
from ..music.pianoroll import RollSettings
from ..music.safe_files import FileRefused, open_regular_file, replaceable_target

log = logging.getLogger(__name__)


class CheckpointError(StudioError):
    """A checkpoint that cannot be read or used; str() is a one-line reason."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (a full disk, a folder gone); the previous one is intact."""


def temporary_prefix(path: Path) -> str:
    """How the temporary file of a write to `path` begins: `.NAME.PID-` (then random letters, `.tmp`).

    The writer's pid in the name lets a later run tell an orphan (its writer was killed) from a write
    in progress (run_lock.remove_orphan_temporaries)."""
    return f".{path.name}.{os.getpid()}-"


TEMPORARY_SUFFIX = ".tmp"


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through a temporary file in the same folder, flushed and renamed over `path`:
    readers see the old file or the new one, never a torn one, and a failed write leaves no trace."""
    path = Path(replaceable_target(path))
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; a model file is an ordinary file
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` (stamped with the time now) to `path`, atomically; the folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = checkpoint.to_dict()
    payload["saved_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_atomically(path, lambda stream: torch.save(payload, stream))
    log.debug("checkpoint written: %s", path)


def check_writable(path: str | os.PathLike, temporary_name: str | None = None) -> None:
    """Raise StudioError now if `path` cannot be written atomically later (after hours of training):
    a folder, a missing or read-only folder, or a name too long for its temporary file. The check
    creates and removes a temporary file named as the writer's will be (write_atomically's, or
    `temporary_name`)."""
    path = Path(path)
    if path.is_dir():
        raise StudioError(f"cannot write {path}: it is a folder; give a file name, e.g. {path / 'model.pt'}")
    path = Path(replaceable_target(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if temporary_name is None:
            handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX,
                                                 dir=path.parent)
        else:
            temporary = str(path.parent / temporary_name)
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            name = temporary_name or temporary_prefix(path) + "x" * 8 + TEMPORARY_SUFFIX
            longest = len(os.fsencode(name))
            raise StudioError(f"cannot write {path}: the name is too long (the temporary file written beside it "
                              f"would have a {longest}-byte name; shorten the name by "
                              f"{max(1, longest - _name_max(path.parent))} bytes or more)") from None
        raise StudioError(f"cannot write {path}: {error.strerror or error}") from None
    os.close(handle)
    os.unlink(temporary)


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


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

