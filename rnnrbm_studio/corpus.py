"""Corpora: a folder of MIDI files, one MIDI file, or an ICML-2012 benchmark pickle, as piano-rolls.

Loading a folder is recursive, runs in worker processes when there are many files, reports
progress, can be cancelled, and caches each file's roll by its content and the roll settings, so
that loading the same folder again is fast. Every file that cannot be used is skipped and reported
with a one-line reason.
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .pianoroll import MidiReadError, RollSettings, notes_to_roll, read_midi, roll_duration_seconds

from .errors import StudioError

log = logging.getLogger(__name__)

MIDI_SUFFIXES = {".mid", ".midi", ".kar"}
PICKLE_SUFFIXES = {".pickle", ".pkl"}
SPLITS = ("train", "valid", "test")
CACHE_FORMAT = 1
PARALLEL_THRESHOLD = 48  # uncached files below this load in-process: worker start-up costs more

ProgressCallback = Callable[[int, int, str], None]  # (files done, files in all, current file)


class CorpusError(StudioError):
    """The corpus as a whole cannot be used (no such path, nothing readable); a one-line reason."""


class LoadCancelled(Exception):
    """Loading was cancelled through the cancel callback."""


@dataclass
class Piece:
    name: str
    roll: np.ndarray  # (T, 88) uint8
    bpm: float = 120.0


@dataclass
class SkippedFile:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class CorpusSummary:
    files: int
    frames: int
    hours: float
    notes_per_frame: float
    skipped: int

    def __str__(self) -> str:
        return (f"{self.files} pieces, {self.frames} steps ({self.hours:.2f} h), "
                f"{self.notes_per_frame:.2f} notes per step, {self.skipped} skipped")


@dataclass
class Corpus:
    settings: RollSettings
    source: str
    splits: dict[str, list[Piece]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    skipped: list[SkippedFile] = field(default_factory=list)

    @property
    def train(self) -> list[Piece]:
        return self.splits["train"]

    @property
    def valid(self) -> list[Piece]:
        return self.splits["valid"]

    @property
    def test(self) -> list[Piece]:
        return self.splits["test"]

    def pieces(self) -> list[Piece]:
        return [p for split in SPLITS for p in self.splits[split]]

    def summary(self) -> CorpusSummary:
        pieces = self.pieces()
        frames = sum(p.roll.shape[0] for p in pieces)
        notes = sum(int(p.roll.sum()) for p in pieces)
        seconds = sum(roll_duration_seconds(p.roll.shape[0], self.settings, p.bpm) for p in pieces)
        return CorpusSummary(files=len(pieces), frames=frames, hours=seconds / 3600,
                             notes_per_frame=notes / frames if frames else 0.0, skipped=len(self.skipped))


def default_cache_dir() -> Path:
    if os.environ.get("RNNRBM_STUDIO_CACHE"):
        return Path(os.environ["RNNRBM_STUDIO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnnrbm-studio" / "rolls"


def find_midi_files(folder: str | os.PathLike) -> list[Path]:
    """MIDI files below folder, recursively, any case of .mid/.midi/.kar, in a stable order."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files)
                     if Path(f).suffix.lower() in MIDI_SUFFIXES and not f.startswith("."))
    return found


def load_corpus(path: str | os.PathLike, settings: RollSettings | None = None, *,
                progress: ProgressCallback | None = None, cancel: Callable[[], bool] | None = None,
                cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                workers: int | None = None, valid_fraction: float = 0.1) -> Corpus:
    """Load DATA: a MIDI folder, one MIDI file, or a benchmark pickle.

    A folder with train/valid/test subfolders keeps that split; otherwise about `valid_fraction`
    of the files (chosen by a hash of their names, so the choice is stable) form the valid split.
    """
    settings = settings or RollSettings()
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"no such file or folder: {path}")
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        return load_benchmark_pickle(path, settings)
    if path.is_file():
        files, split_of = [path], {path: "train"}
    else:
        files = find_midi_files(path)
        if not files:
            raise CorpusError(f"no MIDI files (.mid, .midi) in {path}")
        split_of = _assign_splits(path, files, valid_fraction)
    cache = RollCache(cache_dir or default_cache_dir(), settings) if use_cache else None
    results = _load_files(files, settings, progress, cancel, cache, workers)
    corpus = Corpus(settings=settings, source=str(path))
    for file in files:
        outcome = results[file]
        name = str(file.relative_to(path)) if path.is_dir() else file.name
        if isinstance(outcome, str):
            corpus.skipped.append(SkippedFile(name, outcome))
        else:
            corpus.splits[split_of[file]].append(Piece(name, outcome[0], outcome[1]))
    for skipped in corpus.skipped:
        log.info("skipped %s", skipped)
    if not corpus.pieces():
        raise CorpusError(f"no readable MIDI with notes in the piano range in {path} "
                          f"({len(corpus.skipped)} files skipped)")
    if not corpus.valid and len(corpus.train) > 1 and path.is_dir() and not _has_split_folders(path):
        corpus.splits["valid"].append(corpus.splits["train"].pop())
    return corpus


def _has_split_folders(folder: Path) -> bool:
    return all((folder / split).is_dir() for split in ("train", "valid"))


def _assign_splits(folder: Path, files: list[Path], valid_fraction: float) -> dict[Path, str]:
    if _has_split_folders(folder):
        split_of = {}
        for file in files:
            top = file.relative_to(folder).parts[0]
            split_of[file] = top if top in SPLITS else "train"
        return split_of
    threshold = int(valid_fraction * 1000)
    return {f: "valid" if zlib.crc32(str(f.relative_to(folder)).encode()) % 1000 < threshold else "train"
            for f in files}


def load_benchmark_pickle(path: str | os.PathLike, settings: RollSettings | None = None) -> Corpus:
    """The ICML-2012 format: dict train/valid/test -> sequences -> tuples of MIDI notes per step."""
    settings = settings or RollSettings()
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")
        if not isinstance(data, dict) or "train" not in data:
            raise CorpusError(f"{path} is not a benchmark pickle (a dict with train/valid/test)")
        corpus = Corpus(settings=settings, source=str(path))
        for split in SPLITS:
            for i, sequence in enumerate(data.get(split, [])):
                corpus.splits[split].append(Piece(f"{split}/{i}", notes_to_roll(
                    sequence, settings.lowest_pitch, settings.n_keys)))
    except CorpusError:
        raise
    except Exception as error:
        raise CorpusError(f"cannot read benchmark pickle {path}: {type(error).__name__}: {error}") from None
    return corpus


# ------------------------------------------------------------------------------------ files


def _load_one(data: bytes, settings: RollSettings):
    try:
        piece = read_midi(data, settings)
    except MidiReadError as error:
        return str(error)
    if piece.notes == 0:
        if piece.dropped_notes:
            return f"no notes in the piano range ({piece.dropped_notes} drum or out-of-range notes left out)"
        return "no notes"
    return np.packbits(piece.roll, axis=1), piece.roll.shape, piece.bpm


def _unpack(packed, shape) -> np.ndarray:
    return np.unpackbits(packed, axis=1, count=shape[1]).astype(np.uint8)


def _load_files(files, settings, progress, cancel, cache, workers):
    results: dict[Path, object] = {}
    pending: dict[Path, tuple[bytes, str]] = {}
    total = len(files)
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as error:
            results[file] = f"cannot read file ({error.strerror or error})"
            continue
        key = cache.key(data) if cache else ""
        cached = cache.get(key) if cache else None
        if cached is not None:
            results[file] = cached
        else:
            pending[file] = (data, key)
    done = len(results)
    if progress:
        progress(done, total, "")

    def record(file: Path, outcome) -> None:
        nonlocal done
        if isinstance(outcome, tuple):
            packed, shape, bpm = outcome
            outcome = (_unpack(packed, shape), bpm)
        results[file] = outcome
        if cache:
            cache.put(pending[file][1], outcome)
        done += 1
        if progress:
            progress(done, total, file.name)

    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if len(pending) >= PARALLEL_THRESHOLD and n_workers > 1:
        try:
            _load_in_processes(pending, settings, n_workers, cancel, record)
        except concurrent.futures.process.BrokenProcessPool:
            # e.g. a __main__ that worker processes cannot re-import: finish in this process
            log.warning("worker processes failed; loading the remaining files in this process")
    for file, (data, _) in pending.items():
        if file in results:
            continue
        if cancel and cancel():
            raise LoadCancelled()
        record(file, _load_one(data, settings))
    return results


def _load_in_processes(pending, settings, n_workers, cancel, record) -> None:
    # 'spawn': forking a process that runs torch or Qt threads is unsafe.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=context) as pool:
        futures = {pool.submit(_load_one, data, settings): file for file, (data, _) in pending.items()}
        try:
            for future in concurrent.futures.as_completed(futures):
                if cancel and cancel():
                    raise LoadCancelled()
                record(futures[future], future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


class RollCache:
    """Rolls (or skip reasons) on disk, keyed by the file's bytes and the roll settings."""

    def __init__(self, folder: str | os.PathLike, settings: RollSettings):
        self.folder = Path(folder)
        text = json.dumps({"format": CACHE_FORMAT, **settings.to_dict()}, sort_keys=True)
        self.settings_digest = hashlib.sha256(text.encode()).hexdigest()[:16]

    def key(self, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:32] + "-" + self.settings_digest

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str):
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                if "reason" in stored:
                    return str(stored["reason"])
                return _unpack(stored["packed"], tuple(stored["shape"])), float(stored["bpm"])
        except Exception:  # a damaged cache entry is only a miss
            log.debug("ignoring damaged cache entry %s", path)
            return None

    def put(self, key: str, outcome) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(temporary, "wb") as handle:
                if isinstance(outcome, str):
                    np.savez(handle, reason=np.array(outcome))
                else:
                    roll, bpm = outcome
                    np.savez(handle, packed=np.packbits(roll, axis=1), shape=np.array(roll.shape),
                             bpm=np.array(bpm))
            os.replace(temporary, path)
        except OSError as error:  # a read-only or full disk only costs speed
            log.debug("cannot write cache entry %s: %s", path, error)
