"""Writing a file a user named: atomically, never over a device or a FIFO, and checked before long work.

The bytes go to a temporary file in the same folder (named `.NAME.PID-xxxxxxxx.tmp`, so a later run can
tell an orphan from a write in progress), are flushed to disk and renamed over the target: readers see
the old file or the new one, never a torn one, and a failed write leaves no trace. Model files, MIDI
exports, recordings and exported parameters are all written this way.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from ..errors import StudioError
from .safe_files import replaceable_target


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


def check_writable(path: str | os.PathLike) -> None:
    """Raise StudioError now if `path` cannot be written atomically later (after hours of training):
    a folder, a missing or read-only folder, or a name too long for its temporary file. The check
    creates and removes a temporary file named as write_atomically's will be."""
    path = Path(path)
    if path.is_dir():
        raise StudioError(f"cannot write {path}: it is a folder; give a file name, e.g. {path / 'model.pt'}")
    path = Path(replaceable_target(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX,
                                             dir=path.parent)
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            name = temporary_prefix(path) + "x" * 8 + TEMPORARY_SUFFIX
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
