"""Time to first sound: from `rnnrbm-studio play` being typed to the first note-on on a MIDI port (not a test).

A private JACK server (dummy driver, tests/jack_synth.JackServer) and a raw rtmidi input polled with
get_message() (mido's callback inputs drop events under load: ../shared/PLATFORM.md) stand in for a
synth. The clock starts just before the command's process is spawned and stops when the receiver gets
the first note-on, so it counts Python's start, imports, loading the bundled model, opening the port,
and the first frames. The imports alone are timed too (`python -X importtime` shows the detail).
Skips with one line when jackd is not installed.

    .venv/bin/python benchmarks/bench_startup.py            # 3 runs, ~30 s
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def import_seconds(module: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=REPO)
    return time.perf_counter() - started


def first_note_on(server_env: dict, timeout: float = 30.0) -> tuple[float | None, str]:
    """Seconds from spawning `play` to the first note-on the probe receives, and the command's stderr."""
    import rtmidi

    probe = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="firstsound")
    probe.open_virtual_port("in")  # a JACK MIDI input: an output for the player
    env = {**os.environ, **server_env}
    try:
        started = time.perf_counter()
        process = subprocess.Popen([str(Path(sys.executable).parent / "rnnrbm-studio"), "play", "--port", "firstsound",
                                    "--seconds", "4", "--seed", "0"], cwd=REPO, env=env, text=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        heard = None
        while heard is None and time.perf_counter() - started < timeout and process.poll() is None:
            message = probe.get_message()
            if message is None:
                time.sleep(0.0005)  # a benchmark's poll, not a test
                continue
            data, _ = message
            if data and data[0] & 0xF0 == 0x90 and data[2] > 0:
                heard = time.perf_counter() - started
        _, err = process.communicate(timeout=30)
        return heard, err
    finally:
        probe.close_port()
        del probe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"RNN-RBM Studio time to first sound, {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f}")
    for module in ("rnnrbm_studio.cli", "rnnrbm_studio.cli.live", "torch", "rnnrbm_studio.ui.main_window"):
        print(f"  import {module}: {import_seconds(module):.2f} s (a fresh process, load {os.getloadavg()[0]:.2f})")
    if not shutil.which("jackd") or not shutil.which("jack_wait"):
        print("play -> first note-on: SKIPPED - jackd is not installed (apt install --no-install-recommends jackd2)")
        return 0
    from jack_synth import JackServer

    with tempfile.TemporaryDirectory() as tmp:
        server = JackServer(f"firstsound-{os.getpid()}", Path(tmp) / "jackd.log")
        server.start()
        os.environ.update(server.env)  # this process's receiver joins the same server
        try:
            for run in range(args.runs):
                seconds, err = first_note_on(server.env)
                said = f"{seconds:.2f} s" if seconds is not None else f"no note-on ({err.strip()[-200:]})"
                print(f"  run {run + 1}: `rnnrbm-studio play --port firstsound` -> first note-on {said} "
                      f"(load {os.getloadavg()[0]:.2f})")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
