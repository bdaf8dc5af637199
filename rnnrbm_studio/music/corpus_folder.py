"""A corpus folder: the MIDI files below it, and the split (train, valid, test) each one goes to."""
from __future__ import annotations

import os
import zlib
from pathlib import Path

MIDI_SUFFIXES = {".mid", ".midi", ".kar"}
SPLITS = ("train", "valid", "test")


def find_midi_files(folder: str | os.PathLike) -> list[Path]:
    """MIDI files below folder, recursively, any case of .mid/.midi/.kar, in a stable order.

    The order of os.walk (each folder's files sorted, then its subfolders, depth first; links to
    folders listed but not followed), without its recursion: in Python 3.11 a folder nested about
    a thousand deep made os.walk raise RecursionError.
    """
    found = []
    waiting = [os.fspath(folder)]
    while waiting:
        root = waiting.pop()
        try:
            with os.scandir(root) as scan:
                entries = list(scan)
        except OSError:  # as os.walk: a folder that cannot be listed is passed over
            continue
        files, folders = [], []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir()
            except OSError:
                is_folder = False
            if not is_folder:
                files.append(entry.name)
            elif not entry.is_symlink():
                folders.append(entry.name)
        found.extend(Path(root) / name for name in sorted(files) if Path(name).suffix.lower() in MIDI_SUFFIXES)
        waiting.extend(os.path.join(root, name) for name in sorted(folders, reverse=True))
    return found


def has_split_folders(folder: Path) -> bool:
    """Whether folder is already split by subfolders; a test folder is optional."""
    return all((folder / split).is_dir() for split in ("train", "valid"))


def assign_splits(folder: Path, files: list[Path], valid_fraction: float) -> dict[Path, str]:
    """The split of each file: its top-level split folder if folder has them (files outside them
    train), else about valid_fraction of the files valid, chosen by a hash of their relative paths
    so that loading the folder again chooses the same ones."""
    if has_split_folders(folder):
        split_of = {}
        for file in files:
            top = file.relative_to(folder).parts[0]
            split_of[file] = top if top in SPLITS else "train"
        return split_of
    threshold = int(valid_fraction * 1000)
    # fsencode: a name's bytes, whatever they are (str.encode fails on undecodable names); the same
    # bytes as before for UTF-8 names, so the split of existing folders does not change
    return {f: "valid" if zlib.crc32(os.fsencode(f.relative_to(folder))) % 1000 < threshold else "train"
            for f in files}
