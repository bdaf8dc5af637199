"""Hostile and careless input, tried on the real command line: a table of probe classes and their results.

Each probe runs `python -m rnnrbm_studio ...` in a fresh process, in a scratch folder, and is judged on
what a user sees: the exit status it should have, no traceback, no more than a few lines of error, no
code run from a data file (a canary file), no hang (every probe has a deadline), and no work lost where
a model file was there before. The tests (tests/test_hostile_*.py, tests/test_training_safety.py,
tests/test_live_hardening.py) assert the same things one by one; this script gives README's table.

    .venv/bin/python benchmarks/reliability_probes.py            # ~2-4 minutes on 2 cores
    .venv/bin/python benchmarks/reliability_probes.py --markdown # the table as README shows it
"""
from __future__ import annotations

import argparse
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import mido

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TINY = ["--hidden", "8", "--recurrent", "8", "--cd-k", "1"]


@dataclass
class Outcome:
    passed: bool
    seconds: float
    detail: str = ""
    count: int = 1  # probes this outcome stands for (the numeric options are tried in one go)


@dataclass
class ProbeClass:
    name: str
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)


def studio(*args, cwd: Path, timeout: float = 120.0, env_extra: dict | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "rnnrbm_studio", *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        return None, "", f"no exit within {timeout:g} s", time.monotonic() - started
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def judge(result, expect_status, canary: Path | None = None, max_error_lines: int = 3) -> Outcome:
    status, out, err, seconds = result
    problems = []
    if status is None:
        problems.append(err)
    elif status not in expect_status:
        problems.append(f"exit {status}, wanted {sorted(expect_status)}")
    if "Traceback" in err or "Traceback" in out:
        problems.append("traceback")
    error_lines = [line for line in err.splitlines() if "error" in line.lower()]
    if len(error_lines) > max_error_lines:
        problems.append(f"{len(error_lines)} error lines")
    if canary is not None and canary.exists():
        problems.append("CODE RAN (canary file exists)")
    return Outcome(not problems, seconds, "; ".join(problems) or (err.strip().splitlines() or [""])[-1][:120])


# ------------------------------------------------------------------------------------ material
def write_song(path: Path, bars: int = 8, shift: int = 0) -> Path:
    track = mido.MidiTrack()
    for i in range(bars * 4):
        pitch = 60 + shift + (0, 4, 7, 12)[i % 4]
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=480))
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(str(path))
    return path


class Canary:
    """A pickle that, if unpickled without restriction, creates a file."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch '{self.target}'",))


def many_messages_midi(path: Path, messages: int) -> Path:
    # running status: each note event is 3 bytes (delta, key, velocity)
    body = bytearray(b"\x00\x90\x3c\x40")
    body += b"\x00\x3c\x00\x00\x3c\x40" * (messages // 2)
    body += b"\x00\xff\x2f\x00"
    path.write_bytes(b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
                     + (480).to_bytes(2, "big") + b"MTrk" + len(body).to_bytes(4, "big") + bytes(body))
    return path


# ------------------------------------------------------------------------------------- probes
def probe_code_in_data(work: Path, model: Path) -> ProbeClass:
    probes = ProbeClass("Code in a data file (pickles that run code)")
    canary = work / "CANARY"
    evil = work / "evil.pickle"
    payloads = {
        "os.system via REDUCE": Canary(canary),
        "in a list in the train split": {"train": [[(60,)], Canary(canary)], "valid": [], "test": []},
    }
    for label, payload in payloads.items():
        evil.write_bytes(pickle.dumps(payload, protocol=2))
        for command in (["train", evil, "--out", work / "evil.pt", "--epochs", "1", *TINY],
                        ["eval", model, evil]):
            probes.outcomes.append((f"{command[0]}: {label}", judge(studio(*command, cwd=work), {2}, canary)))
            canary.unlink(missing_ok=True)
    return probes


def probe_not_files(work: Path) -> ProbeClass:
    probes = ProbeClass("Things that are not MIDI files (FIFO, devices, folders)")
    folder = work / "odd"
    folder.mkdir()
    write_song(folder / "ok.mid")
    os.mkfifo(folder / "fifo.mid")
    (folder / "zero.mid").symlink_to("/dev/zero")
    (folder / "random.mid").symlink_to("/dev/urandom")
    (folder / "folder.mid").mkdir()
    (folder / "empty.mid").write_bytes(b"")
    probes.outcomes.append(("train on a folder holding them", judge(studio(
        "train", folder, "--out", work / "odd.pt", "--epochs", "1", *TINY, cwd=work, timeout=120), {0})))
    for name in ("fifo.mid", "zero.mid", "random.mid", "folder.mid", "empty.mid"):
        probes.outcomes.append((f"generate --primer {name}", judge(studio(
            "generate", "--out", work / "g.mid", "--frames", "8", "--primer", folder / name, cwd=work,
            timeout=30), {2})))
    probes.outcomes.append(("train on a FIFO itself", judge(studio(
        "train", folder / "fifo.mid", "--out", work / "f.pt", *TINY, cwd=work, timeout=30), {2})))
    return probes


def probe_too_big(work: Path) -> ProbeClass:
    probes = ProbeClass("Files too big or too busy (bounded time and memory)")
    folder = work / "big"
    folder.mkdir()
    sparse = folder / "sparse.mid"
    with open(sparse, "wb") as handle:
        handle.truncate(2 * 2**30)
    many_messages_midi(folder / "busy.mid", 5_000_000)
    for name in ("sparse.mid", "busy.mid"):
        probes.outcomes.append((f"generate --primer {name}", judge(studio(
            "generate", "--out", work / "g.mid", "--frames", "8", "--primer", folder / name, cwd=work,
            timeout=60), {2})))
    write_song(folder / "ok.mid")
    probes.outcomes.append(("train on a folder holding them", judge(studio(
        "train", folder, "--out", work / "big.pt", "--epochs", "1", *TINY, cwd=work, timeout=120), {0})))
    return probes


def probe_names(work: Path) -> ProbeClass:
    probes = ProbeClass("File names (not UTF-8, spaces, very long)")
    folder = work / "names"
    folder.mkdir()
    write_song(Path(os.fsdecode(bytes(folder) + b"/\xff\xfe.mid")))
    write_song(folder / "with space ü.mid", shift=2)
    write_song(folder / ("x" * 240 + ".mid"), shift=4)
    probes.outcomes.append(("train on them", judge(studio(
        "train", folder, "--out", work / "names.pt", "--epochs", "1", *TINY, cwd=work, timeout=120), {0})))
    return probes


def probe_checkpoints(work: Path, model: Path) -> ProbeClass:
    import torch

    probes = ProbeClass("Edited model files")
    payload = torch.load(model, weights_only=True)
    # (edit, commands that still work): a damaged model part refuses the file everywhere; a damaged training
    # state only stops --resume; a damaged description (history, evaluation) is dropped with a warning
    still_works = {"text in progress": {"info", "generate", "export-params"},
                   "history of strings": {"info", "generate", "export-params", "train"}}
    edits = {
        "no model_state": lambda p: p.pop("model_state"),
        "model_config a string": lambda p: p.__setitem__("model_config", "big"),
        "text in progress": lambda p: p["training"].__setitem__("progress", "lots"),
        "gibbs_steps 1e9": lambda p: p["model_config"].__setitem__("gibbs_steps", 10**9),
        "n_hidden 0": lambda p: p["model_config"].__setitem__("n_hidden", 0),
        "NaN weights": lambda p: p["model_state"]["W"].fill_(math.nan),
        "Inf weights": lambda p: p["model_state"]["bv"].fill_(math.inf),
        "wrong shape": lambda p: p["model_state"].__setitem__("W", torch.zeros(3, 3)),
        "roll_settings a list": lambda p: p["data"].__setitem__("roll_settings", [1, 2]),
        "steps_per_beat 0": lambda p: p["data"]["roll_settings"].__setitem__("steps_per_beat", 0),
        "history of strings": lambda p: p.__setitem__("history", ["x"]),
        "not a dict": None,
    }
    song = write_song(work / "song.mid")
    for label, edit in edits.items():
        copy = pickle.loads(pickle.dumps(payload))  # a deep copy that keeps tensors
        if edit is None:
            copy = [1, 2, 3]
        else:
            edit(copy)
        path = work / "edited.pt"
        torch.save(copy, path)
        for command in (["info", path], ["generate", path, "--out", work / "e.mid", "--frames", "8"],
                        ["export-params", path, work / "e.npz"], ["eval", path, song],
                        ["train", song, "--out", path, "--resume"]):
            result = studio(*command, cwd=work, timeout=60)
            expected = {0} if command[0] in still_works.get(label, ()) else {2}
            probes.outcomes.append((f"{command[0]}: {label}", judge(result, expected)))
    return probes


def probe_outputs(work: Path, model: Path) -> ProbeClass:
    probes = ProbeClass("Where results are written (bad --out, existing models, two writers)")
    song = write_song(work / "out-song.mid")
    (work / "a-folder.pt").mkdir()
    long_name = work / ("m" * 250 + ".pt")
    cases = {
        "--out is a folder": work / "a-folder.pt",
        "--out name too long for its temp file": long_name,
        "--out in a folder that cannot be written": Path("/proc/rnnrbm.pt"),
        "--out in a missing folder under a file": song / "m.pt",
    }
    for label, out in cases.items():
        probes.outcomes.append((f"train {label}", judge(studio(
            "train", song, "--out", out, "--epochs", "1", *TINY, cwd=work, timeout=60), {2})))
        probes.outcomes.append((f"generate {label}", judge(studio(
            "generate", model, "--out", out, "--frames", "8", cwd=work, timeout=60), {2})))
        probes.outcomes.append((f"export-params {label}", judge(studio(
            "export-params", model, out, cwd=work, timeout=60), {2})))
    before = model.read_bytes()
    probes.outcomes.append(("train --out an existing model without --force", judge(studio(
        "train", song, "--out", model, "--epochs", "1", *TINY, cwd=work, timeout=60), {2})))
    if model.read_bytes() != before:
        probes.outcomes[-1] = (probes.outcomes[-1][0], Outcome(False, 0.0, "the existing model was overwritten"))
    # two writers: the second must be refused while the first runs
    first_out = work / "shared-out.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([sys.executable, "-m", "rnnrbm_studio", "train", str(song), "--out", str(first_out),
                              "--epochs", "100000", *TINY], cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not first_out.exists() and time.monotonic() < deadline and first.poll() is None:
            first.stderr.readline()  # the first epoch's line comes with its checkpoint
        probes.outcomes.append(("a second train with the same --out while the first runs", judge(studio(
            "train", song, "--out", first_out, "--epochs", "1", "--force", *TINY, cwd=work, timeout=60), {2})))
        first.send_signal(signal.SIGTERM)
        status = first.wait(30)
        probes.outcomes.append(("SIGTERM to a training run: it saves and exits", Outcome(
            status is not None and "Traceback" not in (first.stderr.read() or "") and first_out.exists(), 0.0,
            f"exit {status}")))
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    return probes


def probe_numbers(work: Path) -> ProbeClass:
    """Every numeric option of every command, parsed in this process (argparse refuses before any work)."""
    import contextlib
    import io

    from rnnrbm_studio.cli import build_parser, main

    probes = ProbeClass("Every numeric option with 0, negative, huge, NaN, inf and text")
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    tried = 0
    failures = []
    started = time.monotonic()
    for command, sub in subparsers.choices.items():
        for action in sub._actions:
            if not action.option_strings or action.type not in (int, float) and not hasattr(action.type, "low"):
                continue
            option = action.option_strings[-1]
            for value in ("0", "-1", "1e30", "99999999999999999999", "nan", "inf", "-inf", "lots"):
                if hasattr(action.type, "low"):
                    try:
                        action.type(value)
                        continue  # inside the option's documented range: not a bad value
                    except argparse.ArgumentTypeError:
                        pass
                tried += 1
                err = io.StringIO()
                with contextlib.redirect_stderr(err):
                    status = main([command, f"{option}={value}"])
                lines = err.getvalue().strip().splitlines()
                if status != 2 or len(lines) != 1 or "Traceback" in err.getvalue():
                    failures.append(f"{command} {option} {value}: exit {status}, {len(lines)} lines")
    seconds = time.monotonic() - started
    probes.outcomes.append((f"{tried - len(failures)} bad values refused, one line each",
                            Outcome(True, seconds, "argparse", count=tried - len(failures))))
    if failures:
        probes.outcomes.append((f"{len(failures)} bad values not refused",
                                Outcome(False, seconds, "; ".join(failures[:5]), count=len(failures))))
    return probes


def probe_live(work: Path, model: Path) -> ProbeClass:
    """`play` (the bundled model) on a real JACK server and FluidSynth: the MIDI system killed, signals to
    the process group."""
    import shutil

    probes = ProbeClass("Live: JACK killed mid-play, SIGHUP / SIGTERM to the group")
    if not (shutil.which("jackd") and shutil.which("fluidsynth")):
        probes.outcomes.append(("jackd and fluidsynth", Outcome(False, 0.0, "not installed: live probes not run")))
        return probes
    sys.path.insert(0, str(REPO / "tests"))
    from jack_synth import FluidSynth, JackServer

    def play_until_notes(synth, env) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "rnnrbm_studio", "play", "--port", "synth",
                                    "--bpm", "240"], cwd=work, env=env, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        while synth.voice_count() == 0 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)  # polling the synth's voice count; a benchmark, not a test
        return process

    for case in ("kill jackd", "SIGHUP to the group", "SIGTERM to the group"):
        server = JackServer(f"rnnrbm-probe-{os.getpid()}", work / "jackd.log")
        env = {**os.environ, **server.env, "PYTHONPATH": str(REPO)}
        old_env = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)
        synth = FluidSynth(server, work)
        try:
            server.start()
            synth.start()
            process = play_until_notes(synth, env)
            started = time.monotonic()
            if case == "kill jackd":
                server.kill()
            else:
                os.killpg(process.pid, signal.SIGHUP if "HUP" in case else signal.SIGTERM)
            try:
                _, err = process.communicate(timeout=30)
                status = process.returncode
            except subprocess.TimeoutExpired:
                process.kill()
                _, err = process.communicate()
                status = None
            seconds = time.monotonic() - started
            if case == "kill jackd":
                outcome = judge((status, "", err, seconds), {2})
                if seconds > 1.5:
                    outcome = Outcome(False, seconds, f"noticed after {seconds:.1f} s")
            else:
                voices_deadline = time.monotonic() + 10
                while synth.voice_count() and time.monotonic() < voices_deadline:
                    time.sleep(0.05)
                voices = synth.voice_count()
                outcome = judge((status, "", err, seconds), {129 if "HUP" in case else 143})
                if voices:
                    outcome = Outcome(False, seconds, f"{voices} voices still sounding")
            probes.outcomes.append((case, outcome))
        finally:
            synth.stop()
            server.stop()
            for key, value in old_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return probes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print README's table only")
    parser.add_argument("--skip", default="", help="comma-separated probe classes to skip (by function suffix)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(prefix="rnnrbm-probes-") as scratch:
        work = Path(scratch)
        os.environ["RNNRBM_STUDIO_CACHE"] = str(work / "cache")
        song = write_song(work / "base-song.mid")
        model = work / "base.pt"
        status, _, err, _ = studio("train", song, "--out", model, "--epochs", "2", *TINY, cwd=work)
        if status != 0:
            print(f"cannot train the base model: {err}", file=sys.stderr)
            return 1
        classes = []
        runs = {"code": lambda: probe_code_in_data(work, model), "files": lambda: probe_not_files(work),
                "big": lambda: probe_too_big(work), "names": lambda: probe_names(work),
                "checkpoints": lambda: probe_checkpoints(work, model), "outputs": lambda: probe_outputs(work, model),
                "numbers": lambda: probe_numbers(work), "live": lambda: probe_live(work, model)}
        for key, run in runs.items():
            if key in skip:
                continue
            classes.append(run())
            if not args.markdown:
                for label, outcome in classes[-1].outcomes:
                    mark = "ok  " if outcome.passed else "FAIL"
                    print(f"{mark} {classes[-1].name} / {label} ({outcome.seconds:.1f} s): {outcome.detail}")
    print("\n| probe class | probes | passed | slowest |\n|---|---|---|---|")
    for probe_class in classes:
        total = sum(o.count for _, o in probe_class.outcomes)
        passed = sum(o.count for _, o in probe_class.outcomes if o.passed)
        slowest = max((o.seconds for _, o in probe_class.outcomes), default=0.0)
        print(f"| {probe_class.name} | {total} | {passed} | {slowest:.1f} s |")
    failed = [(c.name, label) for c in classes for label, o in c.outcomes if not o.passed]
    print(f"\n{sum(o.count for c in classes for _, o in c.outcomes)} probes, {len(failed)} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
