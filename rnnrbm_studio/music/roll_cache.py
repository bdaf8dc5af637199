"""The roll cache: each file's roll on disk, keyed by the file's bytes and the roll settings, so that
loading the same folder again is fast. An entry is trusted only after checks (RollCache._verified_entry).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .pianoroll import RollSettings
from .safe_files import FileRefused, read_regular_file

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: entries hold the file's full sha256; skip reasons are no longer cached
# A MIDI tempo is 1..16,777,215 microseconds per beat, 60e6 / tempo beats per minute: a cached bpm
# outside this range did not come from a MIDI file.
MIN_BPM = 60e6 / 0xFFFFFF
MAX_BPM = 60e6


def default_cache_dir() -> Path:
    if os.environ.get("RNNRBM_STUDIO_CACHE"):
        return Path(os.environ["RNNRBM_STUDIO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rnnrbm-studio" / "rolls"


def pack_roll(roll: np.ndarray) -> np.ndarray:
    """Eight keys a byte: how entries are stored, and how worker processes send rolls back."""
    return np.packbits(roll, axis=1)


def unpack_roll(packed: np.ndarray, shape) -> np.ndarray:
    return np.unpackbits(packed, axis=1, count=shape[1]).astype(np.uint8)


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

    def _entry_path(self, digest: str) -> Path:
        key = self._key(digest)
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, digest: str):
        """(roll, bpm) stored for the file whose sha256 is digest, or None."""
        path = self._entry_path(digest)
        try:
            data = read_regular_file(path, _entry_limit(self.settings))
        except FileRefused:  # usually: no such entry
            return None
        try:
            return self._verified_entry(data, digest)
        except Exception as error:  # a damaged or forged entry is only a miss
            log.debug("ignoring cache entry %s: %s", path, error)
            return None

    def _verified_entry(self, data: bytes, digest: str):
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
        roll = unpack_roll(packed, (frames, keys))
        if not roll.any():  # a piece is only ever a roll with notes
            raise ValueError("no notes")
        return roll, float(bpm)

    def put(self, digest: str, outcome) -> None:
        """Store (roll, bpm) for the file whose sha256 is digest. A full or read-only disk only costs
        speed, and never leaves a temporary file behind."""
        roll, bpm = outcome
        path = self._entry_path(digest)
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(descriptor, "wb") as handle:
                np.savez(handle, packed=pack_roll(roll), shape=np.array(roll.shape),
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
