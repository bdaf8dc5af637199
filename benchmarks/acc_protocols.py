"""How much of the paper's frame accuracy (ACC) is protocol? Three predictors of frame t from frames < t.

    .venv/bin/python benchmarks/acc_protocols.py MODEL DATA [--split test] [--pieces N] [--chains 16 --steps 200]

* repeat: predict v_t = v_{t-1} (no model at all; a baseline);
* expected: E[TP] / E[TP + FP + FN] under the model's marginals p(v_ti = 1 | history), the ACC of the
  model's own samples (what `rnnrbm-studio eval` reports);
* threshold: the keys whose marginal is above a threshold, a deterministic "best guess".
Marginals: block-Gibbs chains from the true previous frame, p(v | h) averaged over the last half of
the steps (Rao-Blackwellised). Prints one line per predictor; times are wall clock.

Each ACC is read three ways, since papers differ in how they pool frames: "pooled" sums TP, FP, FN over
all frames before dividing (Bay et al. 2009, the issue's definition, what `eval` reports); "per frame"
averages each frame's TP / (TP + FP + FN) (a frame with nothing to find and nothing found counts 1);
"per piece" averages each piece's pooled ACC.

    .venv/bin/python benchmarks/acc_protocols.py MODEL DATA --mixing [--pieces N] [--burn-ins 25,100,400,1600]

measures instead whether the chains of the author's ACC (`eval`'s acc_author_percent: each sample's
own TP / (TP + FP + FN), averaged over samples, then over frames) have mixed: the same ACC after
each burn-in, beside the one read from importance-weighted AIS states (which no mixing can bias).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnnrbm_studio.training.checkpoint import load_model  # noqa: E402
from rnnrbm_studio.music.corpus import load_corpus  # noqa: E402
from rnnrbm_studio.model import BernoulliSampler  # noqa: E402
from rnnrbm_studio.quality.accuracy import accuracy_from_counts, author_accuracy  # noqa: E402
from rnnrbm_studio.quality.ais import log_likelihood  # noqa: E402
from rnnrbm_studio.quality.frames import conditional_frames  # noqa: E402


@torch.no_grad()
def marginals(model, frames, chains: int, steps: int, seed: int, batch_frames: int = 4096) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    out = np.zeros(tuple(frames.v.shape), dtype=np.float64)
    kept = steps - steps // 2
    for first in range(0, len(frames), batch_frames):
        part = slice(first, min(len(frames), first + batch_frames))
        n = frames.v[part].shape[0]
        v = frames.v_prev[part].repeat(chains, 1)
        bv, bh = frames.bv[part].repeat(chains, 1), frames.bh[part].repeat(chains, 1)
        total = torch.zeros_like(v)
        for step in range(steps):
            p_h = model.hidden_probabilities(v, bh)
            h = (torch.rand(p_h.shape, generator=generator) < p_h).to(v.dtype)
            p_v = model.visible_probabilities(h, bv)  # kept: the Rao-Blackwellised marginals
            v = (torch.rand(p_v.shape, generator=generator) < p_v).to(v.dtype)
            if step >= steps // 2:
                total += p_v
        out[part] = (total / kept).reshape(chains, n, -1).mean(0).double().numpy()
    return out


def pooled_ways(predicted: np.ndarray, target: np.ndarray, piece_lengths: list[int]) -> dict[str, float]:
    """The same predictions scored pooled, per frame and per piece (see the module docstring)."""
    tp = (predicted & target).sum(1)
    errors = (predicted & ~target).sum(1) + (~predicted & target).sum(1)
    per_frame = np.where(tp + errors > 0, tp / np.maximum(tp + errors, 1), 1.0)
    bounds = np.cumsum([0] + piece_lengths)
    per_piece = [accuracy_from_counts(int(tp[a:b].sum()), int(errors[a:b].sum()), 0)
                 for a, b in zip(bounds[:-1], bounds[1:])]
    return {"pooled": accuracy_from_counts(int(tp.sum()), int(errors.sum()), 0),
            "per frame": float(per_frame.mean()), "per piece": float(np.mean(per_piece))}


def report(label: str, ways: dict[str, float]) -> None:
    print(f"{label:<40}" + "  ".join(f"{way} {value:.4f}" for way, value in ways.items()))


def mixing(model, frames, burn_ins: list[int], chains: int, samples: int, ais_chains: int, betas: int,
           seed: int) -> None:
    """The author's ACC after each burn-in, then from AIS-weighted states (see the module docstring)."""
    for burn_in in burn_ins:
        acc = author_accuracy(model, frames, samples, chains, burn_in, 20, BernoulliSampler(seed))
        print(f"author's ACC, Gibbs from v_t-1, {burn_in:5d} steps: {100 * acc.mean:.2f}% ± {100 * acc.se:.2f} "
              f"({acc.samples} samples, {acc.chains} chains, {acc.seconds:.0f} s)", flush=True)
    if ais_chains:
        ll = log_likelihood(model, frames, ais_chains, betas, BernoulliSampler(seed))
        print(f"author's ACC, AIS-weighted ({ais_chains} x {betas}): {100 * ll.accuracy_author:.2f}% "
              f"(mean ESS {ll.mean_ess:.1f}; LL {ll.mean:.3f}, {ll.frames_below_lower_bound:.1%} of frames below "
              f"the sure bound; {ll.seconds:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--pieces", type=int, default=None, help="the first N pieces (default all)")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixing", action="store_true", help="the author's ACC against burn-in (see above)")
    parser.add_argument("--burn-ins", default="25,100,400,1600")
    parser.add_argument("--samples", type=int, default=16, help="--mixing: samples per frame")
    parser.add_argument("--ais-chains", type=int, default=16, help="--mixing: AIS chains (0 skips)")
    parser.add_argument("--betas", type=int, default=1000, help="--mixing: AIS temperatures")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    pieces = load_corpus(args.data).splits[args.split][:args.pieces]
    pieces = [p for p in pieces if len(p.roll)]
    frames = conditional_frames(model, [p.roll for p in pieces])
    target = frames.v.numpy().astype(bool)
    lengths = [len(p.roll) for p in pieces]
    print(f"{args.model}: {args.split} split, {len(pieces)} pieces, {len(frames)} frames")
    if args.mixing:
        mixing(model, frames, [int(b) for b in args.burn_ins.split(",")], min(args.chains, args.samples),
               args.samples, args.ais_chains, args.betas, args.seed)
        return 0
    report("repeat the previous frame", pooled_ways(frames.v_prev.numpy().astype(bool), target, lengths))
    started = time.monotonic()
    p = marginals(model, frames, args.chains, args.steps, args.seed)
    seconds = time.monotonic() - started
    expected_tp = float((p * target).sum())
    expected = expected_tp / (float(p.sum()) + float(target.sum()) - expected_tp)
    print(f"{'model samples, expected (marginals)':<40}pooled {expected:.4f}   "
          f"({args.chains} chains x {args.steps} steps from v_t-1, {seconds:.0f} s)")
    # Per-frame and per-piece pooling of sampled predictions need real samples, not marginals.
    rng = np.random.default_rng(args.seed)
    drawn = [pooled_ways(rng.random(p.shape) < p, target, lengths) for _ in range(4)]
    report("model samples (4 draws from marginals)", {k: float(np.mean([d[k] for d in drawn])) for k in drawn[0]})
    for threshold in (0.2, 0.3, 0.4, 0.5, 0.6):
        report(f"keys with marginal > {threshold:.1f}", pooled_ways(p > threshold, target, lengths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
