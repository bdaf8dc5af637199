"""Composing cheaply: how close cheap samplers come to the model's long chains, and what a frame costs.

The bundled model's RBMs are sharp: its own setting, 1,000 Gibbs steps per frame from silence, is what
the model "means" (the reference). Each sampler below composes --pieces pieces of --steps frames from
the initial state, the way the player does (each frame feeds the RNN); its music is compared with the
reference's by three statistics, and one frame at a time (batch 1, one thread, as played) is timed.

  distance = |notes per frame - reference| / reference
           + total variation between the pitch-class histograms (0..1)
           + |onsets per frame - reference| / reference

A second reference run with another seed gives the distance that sampling noise alone makes (the floor).
Samplers (kind:N, N Gibbs steps): "silence" (the tutorial's chain, from zeros), "previous" (from the frame
played last), "prediction" (from a draw of the RNN's own guess, sigmoid(bv_t): model.step(start="prediction"),
the player's default, PlaybackSettings.chain_start).

    .venv/bin/python benchmarks/bench_generation.py                # ~1-2 min
    .venv/bin/python benchmarks/bench_generation.py --steps 100 --pieces 4
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnrbm_studio.assets import default_model_path  # noqa: E402
from rnnrbm_studio.model import BernoulliSampler  # noqa: E402
from rnnrbm_studio.training.checkpoint import load_model  # noqa: E402


def chain_start(kind: str, previous):
    return {"silence": None, "previous": previous, "prediction": "prediction"}[kind]


def compose(model, pieces: int, steps: int, gibbs: int, kind: str, seed: int) -> np.ndarray:
    """(pieces, steps, V) uint8: pieces composed side by side, each frame's chain started as `kind` says."""
    sampler = BernoulliSampler(seed)
    state = model.initial_state(pieces)
    previous = None
    frames = np.zeros((pieces, steps, model.config.n_visible), dtype=np.uint8)
    with torch.no_grad():
        for t in range(steps):
            v, state = model.step(state, sampler, gibbs, start=chain_start(kind, previous))
            previous = v
            frames[:, t] = v.numpy() > 0.5
    return frames


def statistics(frames: np.ndarray, lowest_pitch: int) -> dict[str, object]:
    """notes per frame, onsets per frame (a key down that was up the frame before), pitch-class histogram."""
    keys = frames.astype(bool)
    onsets = keys[:, 0].sum() + (keys[:, 1:] & ~keys[:, :-1]).sum()
    per_key = keys.sum((0, 1)).astype(float)
    classes = np.zeros(12)
    np.add.at(classes, (np.arange(len(per_key)) + lowest_pitch) % 12, per_key)
    n_frames = keys.shape[0] * keys.shape[1]
    return {"notes": keys.sum() / n_frames, "onsets": onsets / n_frames,
            "classes": classes / max(classes.sum(), 1.0)}


def distance(a: dict, reference: dict) -> tuple[float, float, float, float]:
    notes = abs(a["notes"] - reference["notes"]) / max(reference["notes"], 1e-9)
    classes = 0.5 * float(np.abs(a["classes"] - reference["classes"]).sum())
    onsets = abs(a["onsets"] - reference["onsets"]) / max(reference["onsets"], 1e-9)
    return notes + classes + onsets, notes, classes, onsets


def ms_per_frame(model, gibbs: int, kind: str, frames: int) -> float:
    """Milliseconds per frame, one frame at a time (batch 1) as the player makes them."""
    sampler = BernoulliSampler(1)
    state, previous = model.initial_state(), None
    with torch.no_grad():
        for _ in range(5):
            frame, state = model.step(state, sampler, gibbs, start=chain_start(kind, previous))
            previous = frame
        started = time.perf_counter()
        for _ in range(frames):
            frame, state = model.step(state, sampler, gibbs, start=chain_start(kind, previous))
            previous = frame
    return (time.perf_counter() - started) * 1e3 / frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None, help="default: the bundled model")
    parser.add_argument("--pieces", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--reference", type=int, default=None, help="the reference's Gibbs steps (the model's own)")
    parser.add_argument("--samplers", default="silence:25,silence:100,previous:25,prediction:10,prediction:25,"
                                                "prediction:50",
                        help="kind:steps, comma separated")
    parser.add_argument("--timed-frames", type=int, default=300)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_model(args.model or default_model_path())
    model.eval()
    low = model.config.lowest_pitch
    reference_steps = args.reference or int(model.config.gibbs_steps)
    print(f"RNN-RBM Studio composing samplers, {time.strftime('%Y-%m-%d %H:%M')}, model "
          f"{Path(args.model or default_model_path()).name} (its own Gibbs steps: {model.config.gibbs_steps}), "
          f"{args.pieces} pieces x {args.steps} frames, load {os.getloadavg()[0]:.2f}")
    reference = statistics(compose(model, args.pieces, args.steps, reference_steps, "silence", 0), low)
    floor = statistics(compose(model, args.pieces, args.steps, reference_steps, "silence", 1), low)
    reference_ms = ms_per_frame(model, reference_steps, "silence", max(20, args.timed_frames // 20))
    print(f"reference silence:{reference_steps}: {reference['notes']:.2f} notes/frame, {reference['onsets']:.2f} "
          f"onsets/frame, {reference_ms:.2f} ms/frame")
    total, *parts = distance(floor, reference)
    print(f"  the same with another seed (the noise floor): distance {total:.3f} "
          f"(notes {parts[0]:.3f}, pitch classes {parts[1]:.3f}, onsets {parts[2]:.3f})")
    for spec in args.samplers.split(","):
        kind, steps = spec.split(":")
        stats = statistics(compose(model, args.pieces, args.steps, int(steps), kind, 2), low)
        total, *parts = distance(stats, reference)
        ms = ms_per_frame(model, int(steps), kind, args.timed_frames)
        print(f"{kind}:{steps}: distance {total:.3f} (notes {parts[0]:.3f}, pitch classes {parts[1]:.3f}, "
              f"onsets {parts[2]:.3f}); {stats['notes']:.2f} notes/frame, {stats['onsets']:.2f} onsets/frame; "
              f"{ms:.3f} ms/frame ({reference_ms / ms:.0f}x cheaper), load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
