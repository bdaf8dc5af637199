"""Hostile input files: what the worst file the studio accepts or refuses costs (time and peak memory).

Builds files meant to be expensive in a temporary folder (the most events under the cap and just over
it, dense running status at the 16 MB size cap, sysex and meta data, huge delta times, 27,000 tracks,
a sparse 2 GB file, /dev/zero and /dev/urandom behind a .mid name, a FIFO, pickle bombs, the largest
benchmark pickle within every cap) and loads each in a fresh process, as `rnnrbm-studio train FILE`
does (load_corpus, no cache). Prints per file: the outcome, the load time measured in the child, the
child's whole wall time (interpreter start and imports included), and its peak resident memory (from
os.wait4, so even a child that had to be killed reports it). The bound: every file is loaded or
refused within 5 s and 500 MB.

    .venv/bin/python benchmarks/bench_hostile_files.py            # all cases, ~1-2 minutes
    .venv/bin/python benchmarks/bench_hostile_files.py --only pickle

The files are made by a separate process: a child's peak RSS as the kernel reports it includes the
memory of the parent it was forked from, so the measuring parent stays small.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # midi_fixtures: the tests' own hand-made MIDI helpers

from rnnrbm_studio.music.midi_scan import MAX_EVENTS, MAX_SYSEX_BYTES  # noqa: E402
from rnnrbm_studio.music.midi_files import MAX_FILE_BYTES  # noqa: E402
from midi_fixtures import vlq  # noqa: E402

BOUND_SECONDS = 5.0
BOUND_MB = 500.0
CHILD_LIMIT = 60  # seconds: the child kills itself (SIGALRM) if a defence has regressed into a hang

CHILD = r"""
import json, resource, signal, sys, time
signal.alarm({limit})
from rnnrbm_studio.music.corpus import load_corpus
from rnnrbm_studio.errors import StudioError
from rnnrbm_studio.music.pianoroll import RollSettings
settings = RollSettings(**json.loads(sys.argv[2]))
started = time.perf_counter()
try:
    corpus = load_corpus(sys.argv[1], settings, use_cache=False, workers=1)
    s = corpus.summary()
    outcome = f"loaded: {{s.files}} pieces, {{s.frames}} steps" + (f", {{s.skipped}} skipped" if s.skipped else "")
except StudioError as error:
    text = str(error)
    outcome = "refused: " + (text.split(": ", 1)[1] if text.startswith("no readable MIDI") else text)
seconds = time.perf_counter() - started
print(json.dumps({{"outcome": outcome, "seconds": seconds}}))
"""


# ------------------------------------------------------------------------------ file makers
END = vlq(0) + b"\xff\x2f\x00"


def smf(*bodies: bytes, ticks_per_beat: int = 96, between: bytes = b"") -> bytes:
    tracks = [b"MTrk" + struct.pack(">I", len(body)) + body for body in bodies]
    return (b"MThd" + struct.pack(">IhhH", 6, 1, len(tracks), ticks_per_beat) + tracks[0] + between
            + b"".join(tracks[1:]))


def running_status(n_messages: int, delta: int = 1) -> bytes:
    """n_messages messages (end of track included): one key struck and released, 3 bytes each."""
    pair = vlq(delta) + b"\x3c\x00" + vlq(delta) + b"\x3c\x40"
    body = vlq(0) + b"\x90\x3c\x40" + pair * ((n_messages - 2) // 2)
    if (n_messages - 2) % 2:
        body += pair[:len(pair) // 2]
    return body + END


def every_key(n_messages: int) -> bytes:
    """Notes on all 16 channels x 88 keys in turn, each held a step: many open and closed notes."""
    body = bytearray()
    for i in range(n_messages // 2 - 1):
        channel, key = divmod(i % (16 * 88), 88)
        body += vlq(0) + bytes([0x90 | channel, 21 + key, 64]) + vlq(48) + bytes([0x80 | channel, 21 + key, 0])
    return bytes(body) + END


def tempo_storm(n_messages: int) -> bytes:
    """Half tempo changes, half notes: the seconds grid converts every note through the tempo map."""
    body = bytearray()
    for i in range(n_messages // 3):
        body += vlq(1) + b"\xff\x51\x03" + (400_000 + i % 1000).to_bytes(3, "big")
        body += vlq(0) + bytes([0x90, 21 + i % 88, 64]) + vlq(1) + bytes([0x80, 21 + i % 88, 0])
    return bytes(body) + END


def held_everywhere() -> bytes:
    """16 channels x 88 keys struck at once and held to the 200,000th step: the largest roll, all ones."""
    body = bytearray()
    for channel in range(16):
        for key in range(88):
            body += vlq(0) + bytes([0x90 | channel, 21 + key, 64])
    return bytes(body) + vlq(199_999 * 48) + b"\xff\x01\x00" + END


def sysex(total: int) -> bytes:
    body = bytearray()
    while total > 0:
        size = min(total, 999_000)
        body += vlq(0) + b"\xf0" + vlq(size) + b"\x01" * size
        total -= size
    return bytes(body) + vlq(0) + b"\x90\x3c\x40" + END


def meta(total: int, kind: int) -> bytes:
    body = bytearray()
    while total > 0:
        size = min(total, 999_000)
        body += vlq(0) + bytes([0xFF, kind]) + vlq(size) + b"a" * size
        total -= size
    return bytes(body) + vlq(0) + b"\x90\x3c\x40" + END


def fill_to(maker, limit: int) -> bytes:
    """The largest file maker(n) makes within limit bytes (maker's size grows with n)."""
    low, high = 2, 8_000_000
    while low < high:
        middle = (low + high + 1) // 2
        if len(maker(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return maker(low)


def pickle_at_the_caps() -> bytes:
    """The most work the caps let through: 1,000,000 steps of 5 notes (5,000,000 notes), 800,000 of
    them distinct tuples (as many as the opcode cap allows; the rest are references to them)."""
    chords = [tuple(21 + (i + k) % 88 for k in range(5)) for i in range(800_000)]
    sequences = [[chords[(s * 200 + t) % len(chords)] for t in range(200)] for s in range(5000)]
    return pickle.dumps({"train": sequences, "valid": [], "test": []}, protocol=2)


def cases(folder: Path):
    """(name, path, roll settings) of every hostile file; files are written as they are listed."""
    beat, seconds = {}, {"seconds_per_step": 0.3, "transpose_to_c": True}

    def write(name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    ok = write("ok.mid", smf(running_status(20)))
    yield "events: 1 under the cap, one key", write("under.mid", smf(running_status(MAX_EVENTS - 1))), beat
    yield "events: 1 under the cap, one key", folder / "under.mid", seconds
    yield "events: under the cap, every key", write("keys.mid", smf(every_key(MAX_EVENTS - 1))), beat
    yield "events: under the cap, every key", folder / "keys.mid", seconds
    yield "events: under the cap, tempo storm", write("tempi.mid", smf(tempo_storm(MAX_EVENTS - 1))), seconds
    yield "events: under the cap, 27,000 tracks", write("tracks.mid", smf(*[running_status(9)] * 27_000)), beat
    half = MAX_EVENTS // 3 - 10  # parsed once up to the unknown chunk, then whole: within the cap
    yield "events: two parses (unknown chunk)", write("junk.mid", smf(
        running_status(half), running_status(half), between=b"Junk" + struct.pack(">I", 4) + b"abcd")), beat
    yield "events: 1 over the cap", write("over.mid", smf(running_status(MAX_EVENTS + 1))), beat
    yield "running status at the 16 MB cap", write("dense.mid", fill_to(
        lambda n: smf(running_status(n, delta=0)), MAX_FILE_BYTES)), beat
    yield "largest roll: 1,408 notes x 200,000 steps", write("held.mid", smf(held_everywhere())), beat
    yield "huge deltas (2^28-1 ticks, 1 tick/beat)", write("deltas.mid", smf(
        b"".join(vlq(0x0FFFFFFF) + b"\xff\x01\x00" for _ in range(100_000)) + vlq(0) + b"\x90\x3c\x40" + END,
        ticks_per_beat=1)), seconds
    yield "sysex: just under the 1 MB cap", write("sysex.mid", smf(sysex(MAX_SYSEX_BYTES - 10))), beat
    yield "sysex: 16 MB (over the cap)", write("sysex16.mid", smf(sysex(MAX_FILE_BYTES - 1000))), beat
    yield "meta text: 16 MB", write("text16.mid", smf(meta(MAX_FILE_BYTES - 1000, 0x01))), beat
    yield "meta sequencer data: 16 MB", write("seq16.mid", smf(meta(MAX_FILE_BYTES - 1000, 0x7F))), beat
    yield "over-long variable-length number", write("vlq.mid", smf(b"\xff" * 1_000_000 + b"\x00\x90\x3c\x40" + END)), beat
    sparse = folder / "sparse.mid"
    with open(sparse, "wb") as handle:
        handle.truncate(2 ** 31)
    yield "sparse 2 GB .mid", sparse, beat
    for device in ("zero", "urandom"):
        link = folder / f"{device}.mid"
        link.symlink_to(f"/dev/{device}")
        yield f"symlink to /dev/{device}", link, beat
    fifo = folder / "fifo.mid"
    os.mkfifo(fifo)
    yield "FIFO as the data", fifo, beat
    mixed = folder / "mixed"
    mixed.mkdir()
    (mixed / "ok.mid").write_bytes(ok.read_bytes())
    os.mkfifo(mixed / "f.mid")
    (mixed / "z.mid").symlink_to("/dev/zero")
    yield "folder: ok.mid + FIFO + /dev/zero", mixed, beat

    notts = REPO.parent / "shared" / "data" / "benchmarks" / "Nottingham.pickle"
    if notts.exists():
        yield "pickle: Nottingham (real, 4 MB)", notts, beat
        text = pickle.dumps(pickle.loads(notts.read_bytes(), encoding="latin1"), protocol=0)
        yield f"pickle: Nottingham as protocol 0 ({len(text) / 2 ** 20:.0f} MB)", write("notts0.pickle", text), beat
    yield "pickle: at every cap (1M steps, 5M notes)", write("caps.pickle", pickle_at_the_caps()), beat
    yield "pickle: 1M steps by reference", write("refs.pickle", pickle.dumps(
        {"train": [[(60, 64, 67, 72, 76)] * 100_000] * 10}, protocol=2)), beat
    yield "pickle: empty dicts under the estimate", write("dicts.pickle", b"\x80\x02(" + b"}" * 3_400_000 + b"l."), beat
    yield "pickle: empty dicts, 32 MB", write("dicts32.pickle", b"\x80\x02(" + b"}" * (32 * 2 ** 20 - 8) + b"l."), beat
    yield "pickle: nested lists, 32 MB", write("nest.pickle", b"\x80\x02" + b"]" * (16 * 2 ** 20 - 8)
                                               + b"a" * (16 * 2 ** 20 - 9) + b"."), beat
    yield "pickle: marks, 32 MB", write("marks.pickle", b"\x80\x02" + b"(" * (32 * 2 ** 20 - 8) + b"."), beat
    yield "pickle: memo index 2^31", write("memo.pickle", b"\x80\x02Nr" + struct.pack("<I", 2 ** 31) + b"."), beat
    yield "pickle: 16M cheap opcodes", write("ops.pickle", b"\x80\x02" + b"N0" * (8 * 2 ** 20) + b"N."), beat
    yield "pickle: 30 MB of text opcodes", write("text.pickle", b"Va\n0" * (15 * 2 ** 19) + b"N."), beat
    yield "pickle: 32 MB of text GETs", write("gets.pickle", b"N(p0\n" + b"g0\n" * (10 * 2 ** 20) + b"l."), beat
    yield "pickle: os.system canary", write("evil.pickle", b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00"
                                           b"trueq\x01\x85q\x02Rq\x03."), beat
    yield "pickle: sparse 2 GB", _sparse(folder / "sparse.pickle"), beat


def _sparse(path: Path) -> Path:
    with open(path, "wb") as handle:
        handle.truncate(2 ** 31)
    return path


def run_child(path: Path, settings: dict) -> dict:
    """Load path in a fresh interpreter; its own timing, the wall time and its peak RSS from wait4
    (the rusage of that one child; RUSAGE_CHILDREN would give the largest of all children so far)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-c", CHILD.format(limit=CHILD_LIMIT), str(path),
                                  json.dumps(settings)], stdout=subprocess.PIPE, stderr=err, cwd=REPO,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        out = child.stdout.read()  # not communicate(): it would reap the child before wait4 could
        child.stdout.close()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        err.seek(0)
        error_text = err.read().decode(errors="replace")
    try:
        reported = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        reported = {"outcome": f"CRASHED (exit {child.returncode}): {error_text[-200:]}", "seconds": float("nan")}
    reported["outcome"] = reported["outcome"].replace(str(path.parent) + "/", "")
    return {**reported, "wall": wall, "peak_mb": usage.ru_maxrss / 1024}


def make_files(folder: Path, only: str | None) -> None:
    """Write the files and print the cases as JSON lines (run in its own process: see the docstring)."""
    for name, path, settings in cases(folder):
        if not only or only in name:
            print(json.dumps([name, str(path), settings]), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run only cases whose name contains this text")
    parser.add_argument("--make", metavar="FOLDER", help=argparse.SUPPRESS)  # the file-making process
    args = parser.parse_args()
    if args.make:
        make_files(Path(args.make), args.only)
        return 0
    print(f"# bench_hostile_files: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; bound {BOUND_SECONDS:g} s and {BOUND_MB:g} MB per file")
    baseline = None
    rows = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        empty = Path(folder) / "baseline.mid"
        empty.write_bytes(smf(running_status(4)))
        baseline = run_child(empty, {})
        print(f"# a child that loads a 4-event file (the interpreter and imports): {baseline['wall']:.2f} s, "
              f"{baseline['peak_mb']:.0f} MB")
        print()
        print("| file | grid | outcome | load s | process s | peak MB | within bound |")
        print("|---|---|---|---|---|---|---|")
        made = subprocess.run([sys.executable, __file__, "--make", folder, *(["--only", args.only] if args.only else [])],
                              capture_output=True, text=True, check=True)
        for line in made.stdout.splitlines():
            name, path, settings = json.loads(line)
            result = run_child(Path(path), settings)
            ok = result["wall"] <= BOUND_SECONDS and result["peak_mb"] <= BOUND_MB
            grid = "seconds, to C" if settings.get("seconds_per_step") else "beats"
            outcome = result["outcome"] if len(result["outcome"]) < 100 else result["outcome"][:97] + "..."
            print(f"| {name} | {grid} | {outcome} | {result['seconds']:.2f} | {result['wall']:.2f} | "
                  f"{result['peak_mb']:.0f} | {'yes' if ok else 'NO'} |", flush=True)
            rows.append((name, result, ok))
    worst_time = max(rows, key=lambda row: row[1]["wall"])
    worst_memory = max(rows, key=lambda row: row[1]["peak_mb"])
    print()
    print(f"worst time:   {worst_time[1]['wall']:.2f} s ({worst_time[0]}; load {worst_time[1]['seconds']:.2f} s)")
    print(f"worst memory: {worst_memory[1]['peak_mb']:.0f} MB ({worst_memory[0]})")
    failed = [name for name, _, ok in rows if not ok]
    print("all within the bound" if not failed else f"OVER THE BOUND: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
