"""Corpora: a folder of MIDI files, one MIDI file, or an ICML-2012 benchmark pickle, as piano-rolls.

Loading a folder is recursive (corpus_folder), runs in worker processes when there are many files,
reports progress, can be cancelled, and keeps each file's roll in the roll cache (roll_cache), so
that loading the same folder again is fast. Every file that cannot be used is skipped and reported
with a one-line reason. Files are read only through safe_files (regular files, bounded reads) and
parsed within fixed bounds (midi_files, benchmark_pickle).
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import StudioError
from .benchmark_pickle import BenchmarkPickleError, read_benchmark_pickle
from .corpus_folder import SPLITS, assign_splits, find_midi_files, has_split_folders
from .midi_files import MAX_FILE_BYTES, MidiReadError, read_midi
from .pianoroll import RollSettings, roll_duration_seconds
from .roll_cache import RollCache, default_cache_dir, pack_roll, unpack_roll
from .safe_files import FileRefused, display_name, path_kind_error, read_regular_file

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = {".pickle", ".pkl"}
PARALLEL_THRESHOLD = 48  # uncached files below this load in-process: worker start-up costs more
IN_FLIGHT_PER_WORKER = 2  # files read ahead per worker process: never the whole folder in memory

ProgressCallback = Callable[[int, int, str], None]  # (files done, files in all, current file)


class CorpusError(StudioError):
    """The corpus as a whole cannot be used (no such path, nothing readable); a one-line reason."""


class LoadCancelled(Exception):
    """Loading was cancelled through the cancel callback."""


@dataclass
class Piece:
    name: str  # printable (safe_files.display_name): the relative path, or split/index for a pickle
    roll: np.ndarray  # (T, 88) uint8
    bpm: float = 120.0


@dataclass
class SkippedFile:
    path: str  # printable, as Piece.name
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
        raise CorpusError(f"no such file or folder: {display_name(path)}")
    problem = path_kind_error(path)  # a FIFO or a device would hang or never end
    if problem:
        raise CorpusError(problem)
    is_folder = path.is_dir()
    if not is_folder and path.suffix.lower() in PICKLE_SUFFIXES:
        return load_benchmark_pickle(path, settings)
    if not is_folder:
        files, split_of = [path], {path: "train"}
    else:
        files = find_midi_files(path)
        if not files:
            raise CorpusError(f"no MIDI files (.mid, .midi) in {display_name(path)}")
        split_of = assign_splits(path, files, valid_fraction)
    cache = RollCache(cache_dir or default_cache_dir(), settings) if use_cache else None
    results = _load_files(files, settings, progress, cancel, cache, workers)
    corpus = Corpus(settings=settings, source=str(path))
    for file in files:
        outcome = results[file]
        name = display_name(file.relative_to(path) if is_folder else file.name)
        if isinstance(outcome, str):
            corpus.skipped.append(SkippedFile(name, outcome))
        else:
            corpus.splits[split_of[file]].append(Piece(name, outcome[0], outcome[1]))
    for skipped in corpus.skipped:
        log.info("skipped %s", skipped)
    if not corpus.pieces():
        where = f"no readable MIDI with notes in the piano range in {display_name(path)}"
        if is_folder:
            raise CorpusError(f"{where} ({len(corpus.skipped)} files skipped)")
        raise CorpusError(f"{where}: {corpus.skipped[0].reason}")
    if not corpus.valid and len(corpus.train) > 1 and path.is_dir() and not has_split_folders(path):
        corpus.splits["valid"].append(corpus.splits["train"].pop())
    return corpus


def load_benchmark_pickle(path: str | os.PathLike, settings: RollSettings | None = None) -> Corpus:
    """The ICML-2012 format: dict train/valid/test -> sequences -> tuples of MIDI notes per step.

    Read as data only (benchmark_pickle: no code runs, sizes bounded); CorpusError for anything else.
    """
    settings = settings or RollSettings()
    try:
        rolls = read_benchmark_pickle(path, settings)
    except BenchmarkPickleError as error:
        raise CorpusError(str(error)) from None
    corpus = Corpus(settings=settings, source=str(path))
    for split, split_rolls in rolls.items():
        corpus.splits[split].extend(Piece(f"{split}/{i}", roll) for i, roll in enumerate(split_rolls))
    return corpus


# ------------------------------------------- reading and parsing the files, here or in worker processes


def _roll_or_skip_reason(data: bytes, settings: RollSettings):
    """(packed roll, shape, bpm) of a MIDI file's bytes, or the reason it is skipped; packed, so
    that a worker process sends back an eighth of the bytes."""
    try:
        piece = read_midi(data, settings)
    except MidiReadError as error:
        return str(error)
    if piece.notes == 0:
        if piece.dropped_notes:
            return f"no notes in the piano range ({piece.dropped_notes} drum or out-of-range notes left out)"
        return "no notes"
    return pack_roll(piece.roll), piece.roll.shape, piece.bpm


def _bytes_or_skip_reason(file: Path) -> bytes | str:
    """The file's bytes, or the reason it is skipped."""
    try:
        return read_regular_file(file, MAX_FILE_BYTES, "a MIDI file")
    except FileRefused as error:
        return str(error)


def _read_noting_digest(pending: dict[Path, str], file: Path) -> bytes | str:
    """The file's bytes or skip reason, their sha256 noted in pending: what is cached is what was parsed."""
    data = _bytes_or_skip_reason(file)
    if isinstance(data, bytes):
        pending[file] = RollCache.digest(data)
    return data


def _load_files(files, settings, progress, cancel, cache, workers):
    """{file: (roll, bpm) or skip reason}. Each file is read once to look it up in the cache and
    again, one at a time, to parse it: a folder of large files is never all in memory at once."""
    results: dict[Path, object] = {}
    pending: dict[Path, str] = {}  # file -> sha256 of its bytes when last read
    total = len(files)
    for file in files:
        data = _read_noting_digest(pending, file)
        if isinstance(data, str):
            results[file] = data
            continue
        cached = cache.get(pending[file]) if cache else None
        if cached is not None:
            results[file] = cached
            del pending[file]
    done = len(results)
    if progress:
        progress(done, total, "")

    def record(file: Path, outcome) -> None:
        nonlocal done
        if isinstance(outcome, tuple):
            packed, shape, bpm = outcome
            outcome = (unpack_roll(packed, shape), bpm)
            if cache:
                cache.put(pending[file], outcome)
        results[file] = outcome
        done += 1
        if progress:
            progress(done, total, display_name(file.name))

    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if len(pending) >= PARALLEL_THRESHOLD and n_workers > 1:
        try:
            _load_in_processes(pending, settings, n_workers, cancel, record)
        except concurrent.futures.process.BrokenProcessPool:
            # e.g. a __main__ that worker processes cannot re-import: finish in this process
            log.warning("worker processes failed; loading the remaining files in this process")
    for file in pending:
        if file in results:
            continue
        if cancel and cancel():
            raise LoadCancelled()
        data = _read_noting_digest(pending, file)
        record(file, data if isinstance(data, str) else _roll_or_skip_reason(data, settings))
    return results


def _load_in_processes(pending, settings, n_workers, cancel, record) -> None:
    # 'spawn': forking a process that runs torch or Qt threads is unsafe.
    context = multiprocessing.get_context("spawn")
    waiting = iter(list(pending))
    with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=context) as pool:
        futures: dict[concurrent.futures.Future, Path] = {}

        def submit_next() -> bool:
            for file in waiting:
                data = _read_noting_digest(pending, file)
                if isinstance(data, str):
                    record(file, data)
                    continue
                futures[pool.submit(_roll_or_skip_reason, data, settings)] = file
                return True
            return False

        try:
            while len(futures) < n_workers * IN_FLIGHT_PER_WORKER and submit_next():
                pass
            while futures:
                finished, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    if cancel and cancel():
                        raise LoadCancelled()
                    record(futures.pop(future), future.result())
                    submit_next()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
