"""Timing of play-along (not a test): how soon the model reacts to the musician, and how steady its
sends are while it listens.

A musician thread strikes keys at random moments (stamped with the player's clock, as the MIDI
input thread stamps what it reads) into a LivePlayer playing the bundled model in accompany mode
on a port in this process; then the same in answer mode while the model listens. Reported:

  latency   from a note-on to the send of the first frame that reflects it (the first frame whose
            decision, at its deadline, saw the key held): p50 / p99 / max, ms; target p99 <= one
            frame period + 5 ms (a note struck just after a deadline waits for the next one)
  jitter    send time minus deadline of every frame (accompany: the clamped sample is made at the
            deadline, so this includes its cost; answer while listening: nothing is sampled)
  decision  the player's mean time per decision (Gibbs steps at the play-along default unless given)

    .venv/bin/python benchmarks/bench_playalong.py --seconds 20      # quick
    .venv/bin/python benchmarks/bench_playalong.py --gibbs-steps 1000   # the model's own steps

The time a JACK server adds (about one period, 21 ms at 1024 frames) is outside this measure: it is
the same for any MIDI program on that server.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnrbm_studio.assets import default_model_path  # noqa: E402
from rnnrbm_studio.live.clock import MonotonicClock  # noqa: E402
from rnnrbm_studio.live.player import LivePlayer  # noqa: E402
from rnnrbm_studio.live.playalong import PLAYALONG_GIBBS_STEPS, PlayAlongSettings  # noqa: E402
from rnnrbm_studio.training.checkpoint import load_model  # noqa: E402


class NullPort:
    name = "null"

    def send(self, message) -> None:
        message.bytes()


def percentiles(values_ms) -> str:
    values = np.asarray(values_ms)
    if values.size == 0:
        return "n/a"
    return (f"p50 {np.percentile(values, 50):6.2f}  p99 {np.percentile(values, 99):6.2f}  "
            f"max {values.max():6.2f} ms  (n={values.size})")


def musician(player: LivePlayer, clock: MonotonicClock, seconds: float, stop: threading.Event,
             struck: list[tuple[float, int]], rng: np.random.Generator) -> None:
    """Strikes a key every 0.1..0.6 s at a random moment, holds it 0.2..0.8 s: as a keyboard would."""
    end = clock.now() + seconds
    held: list[tuple[float, int]] = []
    while not stop.is_set() and clock.now() < end:
        stop.wait(rng.uniform(0.1, 0.6))
        now = clock.now()
        for release, note in [h for h in held if h[0] <= now]:
            player.folder.note_off(now, note)
            held.remove((release, note))
        note = int(rng.integers(48, 84))
        if any(n == note for _, n in held):
            continue
        player.folder.note_on(now, note)
        struck.append((now, note))
        held.append((now + rng.uniform(0.2, 0.8), note))
    for _, note in held:
        player.folder.note_off(clock.now(), note)


def run(model, mode: str, seconds: float, bpm: float, steps_per_beat: int, gibbs_steps: int | None, seed: int):
    clock = MonotonicClock()
    player = LivePlayer(model, NullPort(), bpm=bpm, steps_per_beat=steps_per_beat, gibbs_steps=gibbs_steps,
                        clock=clock, played_buffer_size=100_000, playalong=PlayAlongSettings(
                            mode=mode, answer_after_beats=64 if mode == "answer" else 2))
    struck: list[tuple[float, int]] = []
    stop = threading.Event()
    thread = threading.Thread(target=musician, args=(player, clock, seconds, stop, struck,
                                                     np.random.default_rng(seed)))
    player.start()
    thread.start()
    thread.join()
    player.stop()
    frames = player.drain_played_frames()
    jitter = [(f.sent_at - f.deadline) * 1000 for f in frames]
    latency = []
    for moment, note in struck:
        key = note - 21
        reflected = next((f for f in frames if f.deadline >= moment and f.musician is not None
                          and f.musician[key]), None)
        if reflected is not None:
            latency.append((reflected.sent_at - moment) * 1000)
    return jitter, latency, player.generation_time_per_frame, len(struck), player.frame_period


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per mode (default 60; quick: 20)")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--steps-per-beat", type=int, default=4, help="frames per beat (default 4: 125 ms frames)")
    parser.add_argument("--gibbs-steps", type=int, default=None,
                        help=f"Gibbs steps per frame (default: the play-along default, {PLAYALONG_GIBBS_STEPS})")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model, _ = load_model(default_model_path())
    period_ms = 60_000 / (args.bpm * args.steps_per_beat)
    steps = args.gibbs_steps or min(PLAYALONG_GIBBS_STEPS, model.config.gibbs_steps)
    print(f"bench_playalong: the bundled model ({model.config.gibbs_steps} Gibbs steps stored; {steps} used), "
          f"{args.bpm:g} BPM x {args.steps_per_beat} = {period_ms:.1f} ms frames, {args.seconds:g} s per mode")
    print(f"  python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"  target: latency p99 <= {period_ms + 5:.1f} ms (one frame period + 5 ms)\n")
    for mode in ("accompany", "answer"):
        jitter, latency, per_frame, struck, _ = run(model, mode, args.seconds, args.bpm, args.steps_per_beat,
                                                    args.gibbs_steps, args.seed)
        label = "accompany" if mode == "accompany" else "answer (listening)"
        print(f"{label:20s} send - deadline: {percentiles(jitter)}")
        print(f"{'':20s} note-on -> first frame reflecting it: {percentiles(latency)} of {struck} notes")
        if per_frame is not None:
            print(f"{'':20s} decision: {per_frame * 1000:.2f} ms per frame (frame period {period_ms:.1f} ms)")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
