"""Reading a file that a user named, safely, and showing its name.

A path typed or dropped by a user may name a FIFO (opening or reading it waits for a writer that never
comes), a device such as /dev/zero (endless), a directory, or a file far larger than any MIDI file or
benchmark pickle; a symbolic link may lead to any of these. `read_regular_file` reads only regular
files, judged on the descriptor it opened (so a link or a file swapped after the check cannot slip
through), and never reads more than its cap. Every MIDI file, benchmark pickle and roll cache
entry is read through it.

File names are bytes on Linux; Python hands undecodable bytes over as lone surrogates, which cannot
be encoded for a terminal or shown by Qt. `display_name` makes such a name printable.
"""
from __future__ import annotations

import os
import stat
import sys

from ..errors import StudioError

MiB = 2 ** 20
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0))
_READ_CHUNK_BYTES = 1 << 20


class FileRefused(StudioError):
    """A file that is not read: not a regular file, too large, or unreadable. str() is a one-line reason
    without the path (callers say which file)."""


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _refuse_unless_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise FileRefused(f"not a regular file ({_file_kind(mode)})")


def _too_large(size: int, max_bytes: int, what: str) -> FileRefused:
    return FileRefused(f"too large for {what} ({size / MiB:.1f} MiB; the limit is {max_bytes / MiB:g} MiB)")


def _cannot_read(error: OSError) -> FileRefused:
    return FileRefused(f"cannot read file ({error.strerror or type(error).__name__})")


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str = "this kind of file") -> bytes:
    """The bytes of the regular file at path (links followed), at most max_bytes of them.

    Raises FileRefused for anything else: a FIFO, device, socket or folder (never opened for reading in
    a way that can block), a file over max_bytes (refused by its size before reading, and by the bytes
    read if it grows meanwhile), or one that cannot be opened or read.
    """
    try:
        # stat first: opening some devices has effects (a tape rewinds), so they are not even opened
        _refuse_unless_regular(os.stat(path).st_mode)
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        raise _cannot_read(error) from None
    try:
        status = os.fstat(descriptor)
        _refuse_unless_regular(status.st_mode)  # the file opened, whatever the path named a moment ago
        if status.st_size > max_bytes:
            raise _too_large(status.st_size, max_bytes, what)
        chunks, total = [], 0
        while total <= max_bytes:  # st_size can be wrong (procfs says 0; the file may grow): bound the read
            chunk = os.read(descriptor, min(_READ_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise _too_large(total, max_bytes, what)
        return b"".join(chunks)
    except OSError as error:
        raise _cannot_read(error) from None
    finally:
        os.close(descriptor)


def replaceable_target(path: str | os.PathLike) -> str:
    """Where an atomic write to `path` may rename its temporary file: the file a link points to (so the
    link stays), and only if nothing or a regular file is there. Renaming over a device or a FIFO would
    replace it; as root, `generate --out /dev/null` once turned /dev/null into a plain file."""
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as error:
        raise FileRefused(f"cannot write {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise FileRefused(f"cannot write {path}: it is {_file_kind(mode)}, not a regular file; "
                          f"name a file to write")
    return target


def open_regular_file(path: str | os.PathLike):
    """A regular file opened for binary reading (checked on the opened descriptor: a FIFO or a device is
    refused rather than waited on); FileRefused otherwise."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise _cannot_read(error) from None
    try:
        _refuse_unless_regular(os.fstat(descriptor).st_mode)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def path_kind_error(path: str | os.PathLike) -> str | None:
    """None if path is a folder or a regular file (links followed); else why it cannot be data."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"cannot read {display_name(path)} ({error.strerror or type(error).__name__})"
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None
    return f"{display_name(path)} is not a regular file or a folder ({_file_kind(mode)})"


def display_name(name: str | os.PathLike) -> str:
    """name as valid text: bytes that are not UTF-8 (surrogate-escaped by Python) shown as \\xNN."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a str with surrogates that did not come from undecodable bytes
        return os.fspath(name).encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode(sys.getfilesystemencoding(), "backslashreplace")
