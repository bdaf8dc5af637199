"""How a model composes, as the app plays it: notes per step and silent steps against the data.

Usage:
    .venv/bin/python benchmarks/generation_stats.py [MODEL] [--data PICKLE_OR_FOLDER] [--gibbs 25,400,1000]
        [--pieces 4] [--steps 300] [--seed 0]

For each number of Gibbs steps per frame, generates --pieces pieces of --steps steps from silence
(the app's sampler: each frame's chain starts from zeros, then the frame feeds the RNN) and prints
notes per step, the fraction of silent steps, the mean number of steps a note is held, and the
milliseconds per generated frame on one thread; the data's own figures are printed first.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnrbm_studio.assets import default_model_path  # noqa: E402
from rnnrbm_studio.training.checkpoint import load_model  # noqa: E402
from rnnrbm_studio.music.corpus import load_corpus  # noqa: E402
from rnnrbm_studio.model import BernoulliSampler  # noqa: E402


def roll_stats(rolls: list[np.ndarray]) -> dict[str, float]:
    rolls = [np.asarray(r, dtype=bool) for r in rolls]
    frames = np.concatenate(rolls)
    notes = frames.sum(1)
    # a note starts where a key is down and was not a step before (or at a piece's first step)
    onsets = sum(int(r[0].sum() + (r[1:] & ~r[:-1]).sum()) for r in rolls)
    return {"notes_per_step": float(notes.mean()), "silent": float((notes == 0).mean()),
            "held_steps": float(frames.sum() / max(onsets, 1))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=None, help="default: the bundled model")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "benchmarks" / "Nottingham.pickle"))
    parser.add_argument("--gibbs", default="25,400,1000")
    parser.add_argument("--pieces", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model, _ = load_model(args.model or default_model_path())
    if Path(args.data).exists():
        data = roll_stats([p.roll for p in load_corpus(args.data).test])
        print(f"data (test split of {Path(args.data).name}): {data['notes_per_step']:.2f} notes per step, "
              f"{data['silent']:.1%} silent steps, notes held {data['held_steps']:.2f} steps")
    for gibbs in map(int, args.gibbs.split(",")):
        sampler = BernoulliSampler(args.seed)
        state = model.initial_state(args.pieces)  # (pieces, R)
        frames = np.zeros((args.pieces, args.steps, model.config.n_visible), dtype=np.uint8)
        started = time.perf_counter()
        for t in range(args.steps):
            v, state = model.step(state, sampler, gibbs)
            frames[:, t] = v.numpy()
        seconds = time.perf_counter() - started
        stats = roll_stats(list(frames))
        per_piece = ", ".join(f"{f.sum(1).mean():.1f}" for f in frames.astype(bool))
        print(f"{gibbs:5d} Gibbs steps: {stats['notes_per_step']:.2f} notes per step (pieces: {per_piece}), "
              f"{stats['silent']:.1%} silent steps, notes held {stats['held_steps']:.2f} steps, "
              f"{1000 * seconds / args.steps:.1f} ms per step for {args.pieces} pieces together")
    return 0


if __name__ == "__main__":
    sys.exit(main())
