"""Input files made by an attacker (or by accident): each is refused with one clear line, quickly.

Pickles that run code, FIFOs and devices that hang or never end, files far too large or with far
too many events, names that are not UTF-8, forged roll-cache entries, a full disk. Anything that
could hang or eat the machine if the defence regressed runs in a subprocess with a timeout.
"""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnrbm_studio.music import corpus as corpus_module
from rnnrbm_studio.music import midi_scan, roll_cache
from rnnrbm_studio.assets import default_model_path
from rnnrbm_studio.music.corpus import CorpusError, load_corpus
from rnnrbm_studio.music.roll_cache import RollCache
from rnnrbm_studio.music.midi_scan import check_midi_cost
from rnnrbm_studio.music.midi_files import MidiReadError, read_midi
from rnnrbm_studio.music.pianoroll import RollSettings, notes_to_roll
from rnnrbm_studio.music.safe_files import display_name
from rnnrbm_studio.music.safe_pickle import PickleRefused, _NoGlobalsUnpickler, restricted_load, restricted_loads

from midi_fixtures import midi_bytes, midi_file, notes_track, vlq, write_notes

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
HANG_GUARD = 120  # seconds: far above what any of these takes, and still a failure, not a hang


def cli(*args, timeout: float = HANG_GUARD, env=None) -> subprocess.CompletedProcess:
    """The command line as a user runs it; output kept as bytes so its encoding can be checked."""
    arguments = [a if isinstance(a, (str, bytes, os.PathLike)) else str(a) for a in args]
    return subprocess.run([sys.executable, "-m", "rnnrbm_studio", *arguments], capture_output=True,
                          timeout=timeout, env=env or ENV, cwd=REPO)


def python(code: str, timeout: float = HANG_GUARD):
    """Run code in a fresh interpreter (where a hang or a runaway read cannot harm this one); it
    prints one JSON value, which is returned."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=timeout, env=ENV, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    err = result.stderr.decode("utf-8")  # strict: whatever was printed is valid text
    assert result.returncode == 2, err
    assert b"Traceback" not in result.stderr + result.stdout
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnrbm-studio: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def good_midi(path: Path) -> Path:
    return write_notes(path, [(60, 0, 480), (64, 480, 960), (67, 960, 1440)])


def smf(*track_bodies: bytes, midi_type: int = 1, ticks_per_beat: int = 96, n_tracks: int | None = None,
        between: bytes = b"") -> bytes:
    """A Standard MIDI File from raw track bodies (`between` is put after the first track)."""
    tracks = [b"MTrk" + struct.pack(">I", len(body)) + body for body in track_bodies]
    count = len(tracks) if n_tracks is None else n_tracks
    header = b"MThd" + struct.pack(">IhhH", 6, midi_type, count, ticks_per_beat)
    return header + tracks[0] + between + b"".join(tracks[1:])


END = vlq(0) + b"\xff\x2f\x00"


def dense_track(n_messages: int) -> bytes:
    """n_messages messages in all (n_messages >= 2): note events in running status, 3 bytes each, and
    the end of track. With the track itself mido builds n_messages + 1 objects."""
    body = bytearray(vlq(0) + b"\x90\x3c\x40")
    pair = b"\x01\x3c\x00\x01\x3c\x40"
    body += pair * ((n_messages - 2) // 2)
    if (n_messages - 2) % 2:
        body += pair[:3]
    return bytes(body) + END


# ----------------------------------------------------------------------------------- pickles
class RunsCode:
    """Pickles as a call of os.system, the classic pickle exploit."""

    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return os.system, (f"touch {self.canary}",)


def evil_pickles(canary: Path) -> dict[str, bytes]:
    payload = {"train": [[(60,)], RunsCode(canary)], "valid": [], "test": []}
    return {
        "protocol 2 (GLOBAL + REDUCE)": pickle.dumps(payload, protocol=2),
        "protocol 5 (STACK_GLOBAL)": pickle.dumps(payload, protocol=5),
        "protocol 0 (INST)": b"(S'touch " + str(canary).encode() + b"'\nios\nsystem\n.",
    }


def test_a_pickle_that_runs_code_is_refused_by_the_cli_train_and_eval(tmp_path):
    canary = tmp_path / "CANARY"
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"train": [RunsCode(canary)]}, protocol=2))
    pickle.loads(evil.read_bytes())  # the file really does run code when unpickled plainly...
    assert canary.exists()
    canary.unlink()
    train = cli("train", evil, "--out", tmp_path / "m.pt")
    assert_one_line_error(train, "evil.pickle", "refused")
    evaluate = cli("eval", default_model_path(), evil)
    assert_one_line_error(evaluate, "evil.pickle", "refused")
    assert not canary.exists(), "...but not when the studio reads it"
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("kind", ["protocol 2 (GLOBAL + REDUCE)", "protocol 5 (STACK_GLOBAL)", "protocol 0 (INST)"])
def test_no_pickle_that_names_a_callable_runs_it(tmp_path, kind):
    canary = tmp_path / "CANARY"
    data = evil_pickles(canary)[kind]
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match=r"^cannot read benchmark pickle .*evil\.pkl: refused: the pickle uses"):
        load_corpus(path)
    # the second layer alone (the unpickler that builds objects) refuses any global too
    with pytest.raises(PickleRefused, match="asks for"):
        _NoGlobalsUnpickler(io.BytesIO(data), encoding="latin1").load()
    assert not canary.exists()


def test_even_a_harmless_global_is_refused():
    with pytest.raises(PickleRefused, match="GLOBAL"):
        restricted_loads(pickle.dumps(dict, protocol=2))
    with pytest.raises(PickleRefused, match="asks for builtins.set"):
        _NoGlobalsUnpickler(io.BytesIO(pickle.dumps(set, protocol=4))).load()


def test_plain_data_of_every_protocol_loads_unchanged():
    value = {"train": [[(60, 64), (), [21, 108]]], "text": "é", "raw": b"\x00\xff", "x": 1.5,
             "big": 2 ** 70, "flags": [None, True, False]}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        if protocol < 3:  # bytes need a global (_codecs.encode) before protocol 3: refused there
            value.pop("raw", None)
        assert restricted_loads(pickle.dumps(value, protocol=protocol)) == value, protocol
    data = pickle.dumps(value)
    assert restricted_load(io.BytesIO(data + b"trailing")) == value  # bytes after the pickle are ignored
    with pytest.raises(PickleRefused, match=f"more than {len(data) - 1:,} bytes"):
        restricted_load(io.BytesIO(data), max_bytes=len(data) - 1)


def test_the_real_benchmark_pickles_load_exactly_as_plain_pickle_does(shared_data):
    for name in ("Nottingham.pickle", "JSB Chorales.pickle"):
        data = (shared_data / "benchmarks" / name).read_bytes()
        plain = pickle.loads(data, encoding="latin1")
        assert restricted_loads(data, encoding="latin1") == plain
        loaded = load_corpus(shared_data / "benchmarks" / name)
        for split in ("train", "valid", "test"):
            assert len(loaded.splits[split]) == len(plain[split])
            for piece, sequence in zip(loaded.splits[split], plain[split]):
                np.testing.assert_array_equal(piece.roll, notes_to_roll(sequence))  # the loader before


def nested_lists(depth: int) -> bytes:
    """[[[...]]] `depth` deep in 2 bytes per level: no recursion builds or checks it."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


REPEATED = {"train": [[(60, 64, 67)] * 100_000] * 11}  # 200 KB of references to one step: 1.1 million


@pytest.mark.parametrize("content,message", [
    (pickle.dumps([[(60,)]], protocol=2), "is not a benchmark pickle"),
    (pickle.dumps({"valid": []}, protocol=2), "is not a benchmark pickle"),
    (pickle.dumps({"train": "abc"}, protocol=2), "train is not a list of sequences but str"),
    (pickle.dumps({"train": [7]}, protocol=2), "train/0 is not a list of steps but int"),
    (pickle.dumps({"train": [[60]]}, protocol=2), "a step of train/0 is not a tuple of notes but int"),
    (pickle.dumps({"train": [[]] * 20_001}, protocol=2), "more than 20,000 sequences"),
    (pickle.dumps({"train": [[(60, -5)]]}, protocol=2), "a note outside the MIDI notes 0..127"),
    (pickle.dumps({"train": [[(60, 2 ** 200)]]}, protocol=2), "a note outside the MIDI notes 0..127"),
    (pickle.dumps({"train": [[(60.5,)]]}, protocol=2), "not whole numbers (float)"),
    (pickle.dumps({"train": [[(True,)]]}, protocol=2), "not whole numbers (bool)"),
    (pickle.dumps({"train": [[("C4",)]]}, protocol=2), "not whole numbers (str)"),
    (pickle.dumps({"train": [[tuple(range(129))]]}, protocol=2), "has 129 notes"),
    (pickle.dumps({"train": [[()] * 11]}, protocol=2), "train/0 has 11 steps (the limit is 10)"),
    (pickle.dumps(REPEATED, protocol=2), "more than 1,000,000 steps in all"),
    (pickle.dumps({"train": [[tuple(range(128))] * 9] * 5000}, protocol=2), "more than 5,000,000 notes"),
    (nested_lists(1_000_000), "is not a benchmark pickle"),
    (b"\x80\x02}q\x00U\x05trainq\x01" + nested_lists(100_000)[2:-1] + b"s.", "not whole numbers (list)"),
    (b"\x80\x02(" + b"}" * 5_000_000 + b"l.", "refused: its objects would take more than 320 MiB"),
    (b"\x80\x02Nr" + struct.pack("<I", 2 ** 31) + b".", "refused: its objects would take more than"),
    (b"\x80\x02" + b"N0" * 4_000_001 + b"N.", "refused: more than 8,000,000 pickle opcodes"),
    (b"g0\n" * 4_000_001 + b"N.", "refused: more than 8,000,000 pickle opcodes (a text one counts twice)"),
    (b"\x80\x02junk", "cannot read benchmark pickle"),
    (b"", "not a readable pickle"),
])
def test_bad_and_hostile_pickles_are_one_line_corpus_errors(tmp_path, content, message):
    path = tmp_path / "data.pickle"
    path.write_bytes(content)
    started = time.perf_counter()
    with pytest.raises(CorpusError) as error:
        load_corpus(path, RollSettings(max_frames=10) if "limit is 10" in message else None)
    assert time.perf_counter() - started < 20  # each is refused within its bounds, not after a long walk
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "data.pickle" in str(error.value)


def test_a_pickle_too_large_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.pickle"
    with open(path, "wb") as handle:
        handle.truncate(2 ** 31)  # sparse: 2 GB that take no disk
    with pytest.raises(CorpusError, match=r"too large for a benchmark pickle \(2048\.0 MiB; the limit is 32 MiB\)"):
        load_corpus(path)


# -------------------------------------------------------------------------- FIFOs and devices
def test_fifos_devices_and_huge_files_in_a_folder_are_skipped_and_the_rest_loads(tmp_path):
    folder = tmp_path / "d"
    good_midi(folder / "ok.mid")
    os.mkfifo(folder / "f.mid")
    (folder / "z.mid").symlink_to("/dev/zero")
    (folder / "u.mid").symlink_to("/dev/urandom")
    (folder / "folder.mid").mkdir()  # walked into as a folder: nothing in it
    (folder / "gone.mid").symlink_to(tmp_path / "nowhere.mid")
    (folder / "empty.mid").write_bytes(b"")
    with open(folder / "big.mid", "wb") as handle:
        handle.truncate(2 ** 31)
    found = python(f"""
        import json, time
        from rnnrbm_studio.music.corpus import load_corpus
        started = time.perf_counter()
        corpus = load_corpus({str(folder)!r}, cache_dir={str(tmp_path / "cache")!r})
        print(json.dumps({{"pieces": [p.name for p in corpus.pieces()], "seconds": time.perf_counter() - started,
                          "skipped": {{s.path: s.reason for s in corpus.skipped}}}}))
    """)
    assert found["pieces"] == ["ok.mid"]
    assert found["skipped"] == {
        "big.mid": "too large for a MIDI file (2048.0 MiB; the limit is 16 MiB)",
        "empty.mid": "empty file",
        "f.mid": "not a regular file (a FIFO)",
        "gone.mid": "cannot read file (No such file or directory)",
        "u.mid": "not a regular file (a device)",
        "z.mid": "not a regular file (a device)",
    }
    assert found["seconds"] < 20


def test_a_fifo_or_device_named_as_the_data_or_a_primer_is_one_line(tmp_path):
    fifo = tmp_path / "f.mid"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.mid"
    zero.symlink_to("/dev/zero")
    pickle_fifo = tmp_path / "p.pickle"
    os.mkfifo(pickle_fifo)
    errors = python(f"""
        import json
        from rnnrbm_studio.music.corpus import load_corpus
        from rnnrbm_studio.music.midi_files import read_midi
        from rnnrbm_studio.errors import StudioError
        out = {{}}
        for name, call in [("corpus fifo", lambda: load_corpus({str(fifo)!r})),
                           ("corpus zero", lambda: load_corpus({str(zero)!r})),
                           ("corpus pickle fifo", lambda: load_corpus({str(pickle_fifo)!r})),
                           ("read fifo", lambda: read_midi({str(fifo)!r})),
                           ("read zero", lambda: read_midi({str(zero)!r}))]:
            try:
                call()
            except StudioError as error:
                out[name] = type(error).__name__ + ": " + str(error)
        print(json.dumps(out))
    """)
    assert errors == {
        "corpus fifo": f"CorpusError: {fifo} is not a regular file or a folder (a FIFO)",
        "corpus zero": f"CorpusError: {zero} is not a regular file or a folder (a device)",
        "corpus pickle fifo": f"CorpusError: {pickle_fifo} is not a regular file or a folder (a FIFO)",
        "read fifo": "MidiReadError: not a regular file (a FIFO)",
        "read zero": "MidiReadError: not a regular file (a device)",
    }
    assert_one_line_error(cli("generate", "--out", tmp_path / "x.mid", "--primer", fifo, "--frames", 4),
                          "not a regular file (a FIFO)")
    assert_one_line_error(cli("train", zero, "--out", tmp_path / "m.pt"), "not a regular file or a folder")
    assert not (tmp_path / "x.mid").exists() and not (tmp_path / "m.pt").exists()


def test_a_file_swapped_for_a_fifo_after_the_check_is_still_refused(tmp_path):
    """The kind is judged on the opened descriptor: a FIFO swapped in after the first check is caught,
    and opening it does not wait for a writer (O_NONBLOCK)."""
    fifo = tmp_path / "f.mid"
    os.mkfifo(fifo)
    reason = python(f"""
        import json
        from rnnrbm_studio.music import safe_files
        checks = []
        real_check = safe_files._refuse_unless_regular
        def first_check_fooled(mode):  # the race: the path was a regular file when it was checked
            checks.append(mode)
            if len(checks) > 1:
                real_check(mode)
        safe_files._refuse_unless_regular = first_check_fooled
        try:
            safe_files.read_regular_file({str(fifo)!r}, 1000)
        except safe_files.FileRefused as error:
            print(json.dumps([len(checks), str(error)]))
    """)
    assert reason == [2, "not a regular file (a FIFO)"]


@pytest.fixture
def deep_folder(tmp_path):
    """A folder nested 1,200 deep (deeper than Python's recursion limit), removed level by level
    afterwards: shutil.rmtree of Python 3.11 recurses too, and pytest's own cleanup would fail on it."""
    top = tmp_path / "d"
    levels = [top]
    top.mkdir()
    for _ in range(1200):  # os.makedirs recurses once per level as well
        levels.append(levels[-1] / "n")
        levels[-1].mkdir()
    yield top, levels[-1]
    for level in reversed(levels):
        for child in level.iterdir():
            if not child.is_dir():
                child.unlink()
        level.rmdir()


def test_a_folder_nested_thousands_deep_is_searched_without_recursion(deep_folder, tmp_path):
    top, deepest = deep_folder
    good_midi(deepest / "deep.mid")
    good_midi(top / "top.mid")
    loaded = load_corpus(top, cache_dir=tmp_path / "cache")  # os.walk raised RecursionError here
    assert sorted(p.name.split("/")[-1] for p in loaded.pieces()) == ["deep.mid", "top.mid"]


# Root reads any file whatever its mode, through these two capabilities; CI runs as root. A process
# drops them from its own effective and permitted sets (no privilege needed to give one up), and is
# then held to the mode bits like any user. Not setuid to nobody: the interpreter may live under a
# root-only home (pyenv in /root), which nobody cannot run.
DROP_FILE_PERMISSION_OVERRIDES = """
    import ctypes
    CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, LINUX_CAPABILITY_VERSION_3 = 1, 2, 0x20080522
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    libc = ctypes.CDLL(None, use_errno=True)
    header, sets = Header(LINUX_CAPABILITY_VERSION_3, 0), (Data * 2)()
    assert libc.capget(ctypes.byref(header), sets) == 0, ctypes.get_errno()
    overrides = (1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)
    sets[0].effective &= ~overrides
    sets[0].permitted &= ~overrides
    sets[0].inheritable &= ~overrides
    assert libc.capset(ctypes.byref(header), sets) == 0, ctypes.get_errno()
"""


def test_an_unreadable_file_is_skipped_with_its_reason(tmp_path):
    folder = tmp_path / "d"
    good_midi(folder / "ok.mid")
    locked = good_midi(folder / "locked.mid")
    locked.chmod(0)
    skipped = python(DROP_FILE_PERMISSION_OVERRIDES + f"""
    import json
    from rnnrbm_studio.music.corpus import load_corpus
    loaded = load_corpus({str(folder)!r}, cache_dir={str(tmp_path / "cache")!r})
    print(json.dumps({{s.path: s.reason for s in loaded.skipped}}))
    """)
    assert skipped == {"locked.mid": "cannot read file (Permission denied)"}


# ------------------------------------------------------------------- MIDI parsing is bounded
def test_a_file_over_the_event_cap_is_refused_quickly_before_mido_builds_it(tmp_path):
    folder = tmp_path / "d"
    good_midi(folder / "ok.mid")
    data = smf(dense_track(midi_scan.MAX_EVENTS + 10))
    (folder / "many.mid").write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(MidiReadError, match=r"^more than 300,000 MIDI events"):
        read_midi(data)
    assert time.perf_counter() - started < 5  # the walk alone: mido never sees it
    loaded = load_corpus(folder, cache_dir=tmp_path / "cache")
    assert [p.name for p in loaded.pieces()] == ["ok.mid"]
    assert loaded.skipped[0].reason.startswith("more than 300,000 MIDI events")


def test_the_event_cap_is_exact(monkeypatch):
    monkeypatch.setattr(midi_scan, "MAX_EVENTS", 100)
    at_cap = smf(dense_track(99))  # 99 messages + the track itself
    assert check_midi_cost(at_cap) == 100
    assert read_midi(at_cap).n_frames > 0
    with pytest.raises(MidiReadError, match="more than 100 MIDI events"):
        read_midi(smf(dense_track(100)))
    with pytest.raises(MidiReadError, match="more than 100 MIDI events"):  # tracks count too
        read_midi(smf(dense_track(50), dense_track(49)))


def test_the_retry_without_unknown_chunks_shares_one_budget(monkeypatch):
    """A file mido reads twice (once failing at an unknown chunk, once without it) is bounded once."""
    junk = b"Junk" + struct.pack(">I", 3) + b"abc"
    data = smf(dense_track(40), dense_track(40), between=junk)  # 40 + 1 events per track
    first_pass = 41 + 1  # the first track, then the unknown chunk where the second should start
    monkeypatch.setattr(midi_scan, "MAX_EVENTS", first_pass + 82)
    assert read_midi(data).n_frames > 0
    monkeypatch.setattr(midi_scan, "MAX_EVENTS", first_pass + 81)
    with pytest.raises(MidiReadError, match=f"^more than {first_pass + 81} MIDI events"):  # the cap, as a whole
        read_midi(data)


def test_sysex_data_and_over_long_numbers_are_bounded():
    sysex = vlq(0) + b"\xf0" + vlq(600_000) + b"\x01" * 600_000
    assert read_midi(smf(sysex + vlq(0) + b"\x90\x3c\x40" + END)).n_frames == 1  # under the cap: read
    with pytest.raises(MidiReadError, match="more than 1,000,000 bytes of system-exclusive data"):
        read_midi(smf(sysex + sysex + END))
    with pytest.raises(MidiReadError, match="a variable-length number longer than 4 bytes"):
        read_midi(smf(b"\x80" * 5 + b"\x00\x90\x3c\x40" + END))
    long_number = b"\xff" * 1_000_000 + b"\x7f"  # mido would shift a growing integer a million times
    started = time.perf_counter()
    with pytest.raises(MidiReadError, match="longer than 4 bytes"):
        read_midi(smf(long_number + b"\x90\x3c\x40" + END))
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("grid", [RollSettings(), RollSettings(seconds_per_step=0.3)])
def test_ticks_and_tempos_that_would_make_a_huge_roll_are_refused_without_allocating_it(grid):
    slowest = vlq(0) + b"\xff\x51\x03" + (0xFFFFFF).to_bytes(3, "big")  # 16.7 s per beat
    # a thousand of the largest gaps, each an empty text event: the note starts at 2.7e11 ticks
    note_after_gaps = b"".join(vlq(0x0FFFFFFF) + b"\xff\x01\x00" for _ in range(1000)) + vlq(0) + b"\x90\x3c\x40"
    started = time.perf_counter()
    for ticks_per_beat in (1, 32767):
        with pytest.raises(MidiReadError, match=r"too long: \d+ steps \(limit 200000\)"):
            read_midi(smf(slowest + note_after_gaps + END, ticks_per_beat=ticks_per_beat), grid)
    assert time.perf_counter() - started < 5


def test_ten_thousand_tracks_load_within_the_bounds():
    one_note = vlq(0) + b"\x90\x3c\x40" + vlq(96) + b"\x80\x3c\x00" + END
    started = time.perf_counter()
    piece = read_midi(smf(*[one_note] * 10_000))
    assert piece.roll.shape == (2, 88) and piece.notes == 10_000
    assert time.perf_counter() - started < 20
    with pytest.raises(MidiReadError, match="MIDI events"):  # 32,767 tracks of 10 events: over the cap
        read_midi(smf(*[dense_track(9)] * 32_767))


def mido_events(data: bytes) -> int | None:
    """What mido builds from data (tracks and messages), or None if mido refuses it."""
    try:
        midi = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception:
        return None
    return len(midi.tracks) + sum(len(track) for track in midi.tracks)


def test_the_walk_counts_exactly_what_mido_builds_for_real_files(shared_data):
    files = sorted((shared_data / "midi_oddities").glob("*.mid"))
    files += sorted((shared_data / "nottingham_midi").glob("*/*.mid"))[::7]
    compared = 0
    for path in files:
        data = path.read_bytes()
        built = mido_events(data)
        if built is not None:
            assert check_midi_cost(data) == built, path.name
            compared += 1
    assert compared > 150


SEED = midi_bytes(midi_file([
    notes_track([(60, 0, 480), (64, 240, 720, 0, 1), (67, 480, 960, 1, 127)], tempos=[(0, 90)],
                extra_events=[(100, 2, mido.Message("control_change", control=64, value=127)),
                              (300, 2, mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01])),
                              (400, 2, mido.MetaMessage("text", text="hello"))]),
    notes_track([(48, 0, 960, 2)]),
], 1, ticks_per_beat=96))


# What mido's writer never makes: running status across a meta event and into a program change,
# an F7 (escape) event, system common messages with 2, 1 and no data bytes.
SEED_RAW = smf(vlq(0) + b"\x90\x3c\x40" + vlq(10) + b"\x3c\x00" + vlq(0) + b"\xff\x01\x02hi"
               + vlq(5) + b"\x40\x40" + vlq(0) + b"\xf7\x02\x01\x02" + vlq(0) + b"\xf2\x01\x02"
               + vlq(0) + b"\xf3\x05" + vlq(0) + b"\xf6" + vlq(0) + b"\xc0\x05" + vlq(3) + b"\x06"
               + vlq(1) + b"\x80\x40\x00" + END)


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([SEED, SEED_RAW]),
       st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255), st.sampled_from(["set", "insert",
                                                                                         "delete"])),
                min_size=1, max_size=4))
def test_the_walk_counts_exactly_what_mido_builds_for_damaged_files(seed, edits):
    """Bytes damaged anywhere (running status, lengths, chunk sizes): wherever mido reads a file, the
    walk counted the same events, so the cap bounds exactly what mido will build."""
    assert mido_events(seed) is not None
    data = bytearray(seed)
    for position, value, kind in edits:
        position %= len(data)
        if kind == "set":
            data[position] = value
        elif kind == "insert":
            data[position:position] = bytes([value])
        else:
            del data[position]
    built = mido_events(bytes(data))
    try:
        counted = check_midi_cost(bytes(data))
    except midi_scan.MidiTooCostly as refused:  # only an over-long number can refuse so small a file
        assert "variable-length" in str(refused)
        return
    if built is not None:
        assert counted == built


# ------------------------------------------------------------------------- undecodable names
def test_names_that_are_not_utf8_load_and_print(tmp_path):
    folder = tmp_path / "d"
    good = good_midi(folder / "ok.mid")
    raw_folder = os.fsencode(folder)
    with open(os.path.join(raw_folder, b"\xff.mid"), "wb") as handle:
        handle.write(good.read_bytes())
    with open(os.path.join(raw_folder, b"bad\xfe.mid"), "wb") as handle:
        handle.write(b"not MIDI")
    shown = []
    loaded = load_corpus(folder, cache_dir=tmp_path / "cache", progress=lambda done, total, name: shown.append(name))
    assert sorted(p.name for p in loaded.pieces()) == ["\\xff.mid", "ok.mid"]
    assert sorted(shown) == ["", "\\xff.mid", "bad\\xfe.mid", "ok.mid"]  # the progress line shows them too
    assert [str(s) for s in loaded.skipped] == ["bad\\xfe.mid: not a readable MIDI file (OSError: MThd not found. "
                                                "Probably not a MIDI file)"]
    for text in [p.name for p in loaded.pieces()] + [s.path for s in loaded.skipped]:
        text.encode("utf-8")  # valid text: printable, and shown by Qt as it is
    assert display_name(os.fsdecode(b"a\xff\xfeb.mid")) == "a\\xff\\xfeb.mid"
    assert display_name("plain é.mid") == "plain é.mid"

    result = cli("train", folder, "--out", tmp_path / "m.pt", "--epochs", 1, "--hidden", 8, "--recurrent", 8,
                 env={**ENV, "PYTHONIOENCODING": "ascii"})  # even a terminal that takes only ASCII
    assert result.returncode == 0, result.stderr.decode("ascii", "replace")
    assert b"Traceback" not in result.stderr
    assert "skipped bad\\xfe.mid: not a readable MIDI file" in result.stderr.decode("ascii")
    missing = cli("train", os.path.join(raw_folder, b"\xfdnowhere"), "--out", tmp_path / "m2.pt")
    assert_one_line_error(missing, "no such file or folder", "\\xfdnowhere")


# ----------------------------------------------------------------------------- the roll cache
@pytest.fixture
def parses(monkeypatch):
    calls = []
    original = corpus_module.read_midi
    monkeypatch.setattr(corpus_module, "read_midi", lambda data, settings=None: calls.append(1) or
                        original(data, settings))
    return calls


def forge(entry: Path, **arrays) -> None:
    with open(entry, "wb") as handle:
        np.savez(handle, **arrays)


def test_forged_cache_entries_are_misses_and_the_good_roll_loads(tmp_path, parses):
    folder = tmp_path / "d"
    good = good_midi(folder / "ok.mid")
    cache = tmp_path / "cache"
    expected = read_midi(good).roll
    load_corpus(folder, cache_dir=cache)
    (entry,) = cache.rglob("*.npz")
    digest = RollCache.digest(good.read_bytes())
    packed = np.packbits(expected, axis=1)
    other = np.packbits(np.ones((3, 88), dtype=np.uint8), axis=1)
    fine = dict(packed=packed, shape=np.array(expected.shape), bpm=np.array(120.0), sha256=np.array(digest))
    forge(entry, **fine)  # written by hand as the cache writes it: a hit, so each forgery below differs
    load_corpus(folder, cache_dir=cache)  # only in what it forges
    assert len(parses) == 1
    forgeries = {
        "bpm 0": {**fine, "bpm": np.array(0.0)},
        "bpm not finite": {**fine, "bpm": np.array(np.nan)},
        "10 keys": {**fine, "packed": np.packbits(expected[:, :10], axis=1), "shape": np.array([len(expected), 10])},
        "0 frames": {**fine, "packed": packed[:0], "shape": np.array([0, 88])},
        "over max_frames": {**fine, "shape": np.array([10 ** 9, 88])},
        "packed of another shape": {**fine, "packed": other},
        "packed as float": {**fine, "packed": packed.astype(np.float64)},
        "another file's hash": {**fine, "packed": other, "shape": np.array([3, 88]), "sha256": np.array("0" * 64)},
        "no hash": {k: v for k, v in fine.items() if k != "sha256"},
        "a forged skip reason": {"reason": np.array("no notes")},
        "no notes": {**fine, "packed": np.zeros_like(packed)},
    }
    for what, arrays in forgeries.items():
        forge(entry, **arrays)
        before = len(parses)
        loaded = load_corpus(folder, cache_dir=cache)
        assert len(parses) == before + 1, f"{what}: the forged entry was used"
        assert not loaded.skipped, what
        np.testing.assert_array_equal(loaded.pieces()[0].roll, expected, err_msg=what)
        assert loaded.pieces()[0].bpm == 120.0
        load_corpus(folder, cache_dir=cache)  # rewritten with the real roll: a hit again
        assert len(parses) == before + 1, what
    compressed = io.BytesIO()
    np.savez_compressed(compressed, **fine)  # deflated members could unpack to anything: a miss
    entry.write_bytes(compressed.getvalue())
    load_corpus(folder, cache_dir=cache)
    assert len(parses) == len(forgeries) + 2


@pytest.mark.parametrize("failing", ["savez", "replace"])
def test_a_full_disk_leaves_no_temporary_file_and_the_load_succeeds(tmp_path, monkeypatch, failing):
    folder = tmp_path / "d"
    good_midi(folder / "ok.mid")
    cache = tmp_path / "cache"

    def no_space(*args, **kwargs):
        if failing == "savez":
            args[0].write(b"PK partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = roll_cache.np if failing == "savez" else roll_cache.os
    monkeypatch.setattr(target, failing, no_space)
    loaded = load_corpus(folder, cache_dir=cache)
    assert [p.name for p in loaded.pieces()] == ["ok.mid"]
    assert [p.name for p in cache.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------- outputs that are not regular files
def _special_targets(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    targets = {"a FIFO": fifo}
    if os.geteuid() == 0:  # a private copy of /dev/null: replacing it by mistake harms nothing
        device = tmp_path / "null"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets["a device"] = device
    return targets


@pytest.mark.parametrize("command", ["generate", "export-params", "train"])
def test_writers_never_replace_a_device_or_a_fifo(command, tmp_path):
    """Renaming a temporary file over /dev/null (as root) turned it into a plain file: refuse instead."""
    song = tmp_path / "song.mid"
    write_notes(song, [(60 + i % 5, i * 240, i * 240 + 240) for i in range(32)])
    for kind, target in _special_targets(tmp_path).items():
        before = os.lstat(target)
        args = {"generate": ["generate", "--out", target, "--frames", "4"],
                "export-params": ["export-params", default_model_path(), target],
                "train": ["train", song, "--out", target, "--epochs", "1", "--hidden", "8", "--recurrent", "8"]}
        done = subprocess.run([sys.executable, "-m", "rnnrbm_studio", *map(str, args[command])], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (kind, done.stderr)
        assert done.stderr.startswith("rnnrbm-studio: error: cannot write") and "not a regular file" in done.stderr
        after = os.lstat(target)
        assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino, kind


def test_a_fifo_named_like_a_model_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "rnnrbm_studio", "info", str(fifo)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().endswith("not a regular file (a FIFO)")


@pytest.mark.parametrize("command", ["generate", "export-params"])
def test_an_output_that_is_the_model_being_read_is_refused(command, tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(default_model_path().read_bytes())
    args = ["generate", model, "--out", model, "--frames", "4"] if command == "generate" else \
        ["export-params", model, model]
    done = subprocess.run([sys.executable, "-m", "rnnrbm_studio", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "it is the model being read" in done.stderr
    assert model.read_bytes() == default_model_path().read_bytes()


def test_a_path_too_long_for_the_file_system_is_one_line_everywhere(tmp_path):
    long = str(tmp_path / ("a" * 5000))
    for args in (["train", long, "--out", tmp_path / "x.pt"], ["generate", "--out", long + ".mid", "--frames", "4"],
                 ["info", long], ["eval", long, long], ["export-params", long, tmp_path / "x.npz"]):
        done = subprocess.run([sys.executable, "-m", "rnnrbm_studio", *map(str, args)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (args[0], done.stderr[-300:])
        assert lines[0].startswith("rnnrbm-studio: error: ") and "too long" in lines[0].lower(), (args[0], lines)


def test_the_window_refuses_a_model_that_is_not_a_file_in_one_line(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "rnnrbm_studio", "--model", str(fifo), "--screenshot",
                           str(tmp_path / "shot.png")], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    lines = [line for line in done.stderr.strip().splitlines() if "propagateSizeHints" not in line]
    assert done.returncode == 2 and lines == [f"rnnrbm-studio: error: {fifo}: not a regular file (a FIFO)"]
    assert not (tmp_path / "shot.png").exists()
