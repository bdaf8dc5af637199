"""Corpora: a folder of MIDI files, one MIDI file, or an ICML-2012 benchmark pickle, as piano-rolls.

Loading a folder is recursive, runs in worker processes when there are many files, reports
progress, can be cancelled, and caches each file's roll by its content and the roll settings, so
that loading the same folder again is fast. Every file that cannot be used is skipped and reported
with a one-line reason. Files are read only through safe_files (regular files, bounded reads) and
parsed within fixed bounds (pianoroll, benchmark_pickle); a cache entry is trusted only after checks.
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .benchmark_pickle import BenchmarkPickleError, read_benchmark_pickle
from ..errors import StudioError
from .midi_files import MAX_FILE_BYTES, MidiReadError, read_midi
from .pianoroll import RollSettings, roll_duration_seconds
from .safe_files import FileRefused, display_name, path_kind_error, read_regular_file

log = logging.getLogger(__name__)

MIDI_SUFFIXES = {".mid", ".midi", ".kar"}
PICKLE_SUFFIXES = {".pickle", ".pkl"}
SPLITS = ("train", "valid", "test")
CACHE_FORMAT = 2  # 2: entries hold the file's full sha256; skip reasons are no longer cached
PARALLEL_THRESHOLD = 48  # uncached files below this load in-process: worker start-up costs more
IN_FLIGHT_PER_WORKER = 2  # files read ahead per worker process: never the whole folder in memory
# A MIDI tempo is 1..16,777,215 microseconds per beat, 60e6 / tempo beats per minute: a cached bpm
# outside this range did not come from a MIDI file.
MIN_BPM = 60e6 / 0xFFFFFF
MAX_BPM = 60e6

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


def default_cache_dir() -> Path:
    if os.environ.get("RNNRBM_STUDIO_CACHE"):
        return Path(os.environ["RNNRBM_STUDIO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnnrbm-studio" / "rolls"


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
        split_of = _assign_splits(path, files, valid_fraction)
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
    # fsencode: a name's bytes, whatever they are (str.encode fails on undecodable names); the same
    # bytes as before for UTF-8 names, so the split of existing folders does not change
    return {f: "valid" if zlib.crc32(os.fsencode(f.relative_to(folder))) % 1000 < threshold else "train"
            for f in files}


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


def _read(file: Path) -> bytes | str:
    """The file's bytes, or the reason it is skipped."""
    try:
        return read_regular_file(file, MAX_FILE_BYTES, "a MIDI file")
    except FileRefused as error:
        return str(error)


def _read_pending(pending: dict[Path, str], file: Path) -> bytes | str:
    """_read, noting the sha256 of the bytes read in pending: what is cached is what was parsed."""
    data = _read(file)
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
        data = _read_pending(pending, file)
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
            outcome = (_unpack(packed, shape), bpm)
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
        data = _read_pending(pending, file)
        record(file, data if isinstance(data, str) else _load_one(data, settings))
    return results


def _load_in_processes(pending, settings, n_workers, cancel, record) -> None:
    # 'spawn': forking a process that runs torch or Qt threads is unsafe.
    context = multiprocessing.get_context("spawn")
    waiting = iter(list(pending))
    with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=context) as pool:
        futures: dict[concurrent.futures.Future, Path] = {}

        def submit_next() -> bool:
            for file in waiting:
                data = _read_pending(pending, file)
                if isinstance(data, str):
                    record(file, data)
                    continue
                futures[pool.submit(_load_one, data, settings)] = file
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


def _entry_limit(settings: RollSettings) -> int:
    """The most bytes a valid cache entry can have: the packed roll at max_frames, plus the zip's own."""
    return settings.max_frames * math.ceil(settings.n_keys / 8) + 64 * 1024


class RollCache:
    """Rolls on disk, keyed by the file's bytes (sha256) and the roll settings.

    An entry is used only if it passes every check (its stored sha256, the roll's shape against the
    settings, the packed array's type and size, a bpm a MIDI tempo can give); anything else is a miss
    and the file is parsed again. Skip reasons are not cached: a file that failed is parsed again,
    which the parse bounds keep cheap, and a forged entry cannot hide a good file.
    """

    def __init__(self, folder: str | os.PathLike, settings: RollSettings):
        self.folder = Path(folder)
        self.settings = settings
        text = json.dumps({"format": CACHE_FORMAT, **settings.to_dict()}, sort_keys=True)
        self.settings_digest = hashlib.sha256(text.encode()).hexdigest()[:16]

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def key(self, data: bytes) -> str:
        return self._key(self.digest(data))

    def _key(self, digest: str) -> str:
        return digest[:32] + "-" + self.settings_digest

    def _path(self, digest: str) -> Path:
        key = self._key(digest)
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, digest: str):
        """(roll, bpm) stored for the file whose sha256 is digest, or None."""
        path = self._path(digest)
        try:
            data = read_regular_file(path, _entry_limit(self.settings))
        except FileRefused:  # usually: no such entry
            return None
        try:
            return self._checked(data, digest)
        except Exception as error:  # a damaged or forged entry is only a miss
            log.debug("ignoring cache entry %s: %s", path, error)
            return None

    def _checked(self, data: bytes, digest: str):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:  # no member may unpack to more than the file
            members = archive.infolist()
            if sorted(m.filename for m in members) != ["bpm.npy", "packed.npy", "sha256.npy", "shape.npy"]:
                raise ValueError("unexpected members")
            if any(m.compress_type != zipfile.ZIP_STORED for m in members):
                raise ValueError("compressed member")
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            sha, shape, packed, bpm = stored["sha256"], stored["shape"], stored["packed"], stored["bpm"]
        if sha.shape != () or str(sha) != digest:
            raise ValueError("another file's entry")
        if shape.shape != (2,) or shape.dtype.kind not in "iu":
            raise ValueError("bad shape")
        frames, keys = int(shape[0]), int(shape[1])
        if not 0 < frames <= self.settings.max_frames or keys != self.settings.n_keys:
            raise ValueError(f"shape {frames} x {keys} does not fit the settings")
        if packed.dtype != np.uint8 or packed.shape != (frames, math.ceil(keys / 8)):
            raise ValueError("packed roll of the wrong type or size")
        if bpm.shape != () or bpm.dtype.kind != "f" or not MIN_BPM <= float(bpm) <= MAX_BPM:
            raise ValueError("bpm out of range")
        roll = _unpack(packed, (frames, keys))
        if not roll.any():  # a piece is only ever a roll with notes
            raise ValueError("no notes")
        return roll, float(bpm)

    def put(self, digest: str, outcome) -> None:
        """Store (roll, bpm) for the file whose sha256 is digest. A full or read-only disk only costs
        speed, and never leaves a temporary file behind."""
        roll, bpm = outcome
        path = self._path(digest)
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(descriptor, "wb") as handle:
                np.savez(handle, packed=np.packbits(roll, axis=1), shape=np.array(roll.shape),
                         bpm=np.array(float(bpm)), sha256=np.array(digest))
            os.replace(temporary, path)
            temporary = None
        except OSError as error:
            log.debug("cannot write cache entry %s: %s", path, error)
        finally:
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
