"""Training and generation speed of the RNN-RBM engine on the Nottingham benchmark (not a test).

Measures, on ../shared/data/benchmarks/Nottingham.pickle (train split: 694 sequences, 176,561 frames),
with the tutorial's model (88 visible, 150 hidden, 100 recurrent units, CD-15):

  (a) the Theano tutorial's exact schedule: one subsequence of <= 100 frames per SGD update;
  (b) minibatches of subsequences (padded + masked), e.g. 16, 32, 64 per update;
  (c) milliseconds per generated frame (25 Gibbs steps) through model.step, one frame at a time;
  (d) peak resident memory of the process while training.

It prints our own numbers only. A ratio to the Theano tutorial must divide by the tutorial measured in the
same run on the same machine (../shared/refbench), never by a remembered figure; that side-by-side run is
not built into this script yet.

    .venv/bin/python benchmarks/bench_training.py --quick   # ~1 min: a fraction of an epoch, extrapolated
    .venv/bin/python benchmarks/bench_training.py           # full epochs (several minutes)

Timings go through the real Trainer (batching, optimiser step, NaN guard), not a stripped-down loop,
so they are what a user gets; checkpoints and validation are left out because they are not training.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnrbm_studio.music.corpus import load_benchmark_pickle  # noqa: E402
from rnnrbm_studio.model import BernoulliSampler, RnnRbm, RnnRbmConfig  # noqa: E402
from rnnrbm_studio.training.trainer import TrainConfig, Trainer  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "benchmarks" / "Nottingham.pickle"

TARGET_TUTORIAL_SECONDS = 10.0
TARGET_BATCH_SECONDS = 3.0
TARGET_MS_PER_FRAME = 0.5
TARGET_PEAK_MB = 2048.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def subset(rolls: list[np.ndarray], fraction: float, seed: int) -> list[np.ndarray]:
    """A random set of whole sequences holding about `fraction` of the frames (all of them at 1.0)."""
    if fraction >= 1.0:
        return list(rolls)
    order = list(range(len(rolls)))
    random.Random(seed).shuffle(order)
    target = fraction * sum(len(r) for r in rolls)
    chosen, frames = [], 0
    for index in order:
        if frames >= target:
            break
        chosen.append(rolls[index])
        frames += len(rolls[index])
    return chosen


def time_training(rolls, batch_seqs: int, learning_rate: float, seed: int, threads: int | None,
                  prefetch: bool = False):
    """Seconds for one epoch over `rolls` through the Trainer, and the frames it trained on."""
    torch.manual_seed(seed)
    model = RnnRbm(RnnRbmConfig(n_hidden=150, n_hidden_recurrent=100, cd_k=15))
    config = TrainConfig(epochs=1, learning_rate=learning_rate, batch_seqs=batch_seqs, seq_len=100,
                         seed=seed, threads=threads, prefetch_random=prefetch)
    trainer = Trainer(model, rolls, (), config)
    started = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - started
    if result.status != "finished":
        raise SystemExit(f"training did not finish: {result.status} {result.message}")
    frames = sum(len(r) for r in rolls)
    return seconds, frames, model, result.history[-1].monitor


def time_generation(model: RnnRbm, n_frames: int, seed: int) -> float:
    """Milliseconds per frame generated one at a time through model.step (25 Gibbs steps)."""
    sampler = BernoulliSampler(seed)
    state = model.initial_state()
    with torch.no_grad():
        for _ in range(20):  # warm-up: first calls pay for allocations
            _, state = model.step(state, sampler, gibbs_steps=25)
        started = time.perf_counter()
        for _ in range(n_frames):
            _, state = model.step(state, sampler, gibbs_steps=25)
        seconds = time.perf_counter() - started
    return seconds * 1e3 / n_frames


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="train on a fraction of an epoch and extrapolate (labelled as such)")
    parser.add_argument("--fraction", type=float, default=None,
                        help="fraction of the train frames per measurement (default 0.1 quick, 1.0 full)")
    parser.add_argument("--batches", default="16,32,64", help="minibatch sizes to time (comma separated)")
    parser.add_argument("--gen-frames", type=int, default=None, help="frames to generate (default 1000 / 5000)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--lr", type=float, default=0.001, help="learning rate for the tutorial schedule")
    parser.add_argument("--batch-lr", type=float, default=0.01, help="learning rate for minibatches")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefetch", action="store_true",
                        help="draw random numbers ahead on a background thread (TrainConfig.prefetch_random)")
    args = parser.parse_args(argv)

    fraction = args.fraction if args.fraction is not None else (0.1 if args.quick else 1.0)
    gen_frames = args.gen_frames or (1000 if args.quick else 5000)
    batch_sizes = [int(b) for b in args.batches.split(",") if b.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)

    corpus = load_benchmark_pickle(args.data)
    train = [p.roll for p in corpus.train]
    total_frames = sum(len(r) for r in train)
    rolls = subset(train, fraction, args.seed)
    frames_used = sum(len(r) for r in rolls)
    extrapolated = frames_used < total_frames
    label = (f"EXTRAPOLATED from {frames_used:,} of {total_frames:,} frames ({frames_used / total_frames:.0%})"
             if extrapolated else "measured over the whole epoch")

    print("RNN-RBM Studio training benchmark")
    print(f"  python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    print(f"  data {args.data}: train {len(train)} sequences, {total_frames:,} frames")
    print(f"  model 88/150/100, CD-15, seq_len 100, mode {'quick' if args.quick else 'full'} ({label}), "
          f"random numbers {'prefetched on a background thread' if args.prefetch else 'drawn in line'}")
    load = os.getloadavg()[0]
    print(f"  load average {load:.2f} on {os.cpu_count()} cpus"
          + ("  ** BUSY MACHINE: other processes compete for the cores; numbers are pessimistic, and "
             "more than one torch thread suffers most (try --threads 1) **" if load > 0.5 else ""))
    rss_before = current_rss_mb()
    print(f"  RSS after loading the data: {rss_before:.0f} MB")
    print()

    seconds, frames, model, monitor = time_training(rolls, 1, args.lr, args.seed, args.threads, args.prefetch)
    epoch_seconds = seconds * total_frames / frames
    print(f"(a) tutorial schedule (batch 1, SGD lr {args.lr}): {epoch_seconds:.2f} s/epoch "
          f"{'(extrapolated) ' if extrapolated else ''}= {frames / seconds:,.0f} frames/s; "
          f"{verdict(epoch_seconds <= TARGET_TUTORIAL_SECONDS)} <= {TARGET_TUTORIAL_SECONDS:g} s "
          f"[{seconds:.2f} s for {frames:,} frames, monitor {monitor:.2f}]")

    for batch in batch_sizes:
        seconds, frames, _, monitor = time_training(rolls, batch, args.batch_lr, args.seed, args.threads,
                                                         args.prefetch)
        epoch_seconds = seconds * total_frames / frames
        print(f"(b) minibatch {batch:3d} (SGD lr {args.batch_lr}): {epoch_seconds:.2f} s/epoch "
              f"{'(extrapolated) ' if extrapolated else ''}= {frames / seconds:,.0f} frames/s; "
              f"{verdict(epoch_seconds <= TARGET_BATCH_SECONDS)} <= {TARGET_BATCH_SECONDS:g} s "
              f"[{seconds:.2f} s, monitor {monitor:.2f}]")

    ms = time_generation(model, gen_frames, args.seed)
    print(f"(c) generation (model.step, 25 Gibbs steps, {gen_frames} frames): {ms:.3f} ms/frame; "
          f"{verdict(ms <= TARGET_MS_PER_FRAME)} "
          f"<= {TARGET_MS_PER_FRAME} ms")

    peak = peak_rss_mb()
    print(f"(d) peak RSS of the process (loading + training + generation): {peak:.0f} MB; "
          f"{verdict(peak < TARGET_PEAK_MB)} < {TARGET_PEAK_MB:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
