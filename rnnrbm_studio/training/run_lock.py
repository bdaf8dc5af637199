"""One writer per model file: a lock beside it for as long as a run writes it.

Two runs writing the same checkpoint both reported success while the file held only one of them.
A run holds an exclusive flock on `.NAME.pt.lock` beside NAME.pt from before it reads its data until
its last write; a second writer fails at once with a message naming the first one's pid.

The lock is re-entrant within a process (the command line holds it around the whole command, the
Trainer again around its run; flock would refuse a second open file description of the same file).
The lock file is removed on release while still locked, and an acquirer checks that the file it
locked is still the one at the path, so removing it never lets two processes in.

While holding the lock, temporary files of earlier writes to NAME.pt that their writer left behind
when it was killed (`.NAME.pt.PID-xxxxxxxx.tmp`, PID no longer running) are removed.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from ..music.atomic_files import TEMPORARY_SUFFIX
from ..errors import StudioError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

log = logging.getLogger(__name__)


class OutputBusy(StudioError):
    """Another process is writing the model file."""


_held: dict[str, list] = {}  # lock file path -> [descriptor, depth]
_held_guard = threading.Lock()


def lock_path_of(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike):
    """Hold the lock of model file `path` inside the block; raises OutputBusy if another process has it."""
    acquire(path)
    try:
        yield
    finally:
        release(path)


def acquire(path: str | os.PathLike) -> None:
    path = Path(path)
    lock = lock_path_of(path)
    key = os.path.abspath(lock)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            return
        if fcntl is None:
            _held[key] = [None, 1]
            return
        lock.parent.mkdir(parents=True, exist_ok=True)
        descriptor = _lock_file(lock, path)
        _held[key] = [descriptor, 1]
    remove_orphan_temporaries(path)


def _lock_file(lock: Path, path: Path) -> int:
    for _ in range(100):  # each retry means the holder removed the file between our open and our lock
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise StudioError(f"cannot write {path}: {error.strerror or error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            who = f"process {holder}" if holder else "another process"
            raise OutputBusy(f"{path} is being written by {who} (another training run or eval --record); "
                             f"wait for it to finish or write elsewhere") from None
        try:
            same = os.path.samestat(os.fstat(descriptor), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
            return descriptor
        os.close(descriptor)
    raise OutputBusy(f"{path} is being written by another process (its lock keeps changing)")


def _read_pid(descriptor: int) -> int | None:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def release(path: str | os.PathLike) -> None:
    lock = lock_path_of(path)
    key = os.path.abspath(lock)
    with _held_guard:
        held = _held.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del _held[key]
        descriptor = held[0]
        if descriptor is None:
            return
        with contextlib.suppress(OSError):
            lock.unlink()  # still locked: nobody can take it between the removal and the close
        os.close(descriptor)


def holds(path: str | os.PathLike) -> bool:
    """Whether this process holds the lock of `path`."""
    with _held_guard:
        return os.path.abspath(lock_path_of(path)) in _held


def remove_orphan_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove `.NAME.*.tmp` files beside `path` whose writer is gone; call only while holding the lock."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix)
                      and p.name.endswith(TEMPORARY_SUFFIX)]
    except OSError:
        return removed
    for candidate in candidates:
        middle = candidate.name[len(prefix):-len(TEMPORARY_SUFFIX)]
        pid_text = middle.split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() and "-" in middle else None
        # a pid-less name is an older version's write, which no live writer of this version makes
        if pid is not None and (pid == os.getpid() or _alive(pid)):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    if removed:
        log.info("removed %d temporary file(s) left by interrupted writes of %s", len(removed), path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True
