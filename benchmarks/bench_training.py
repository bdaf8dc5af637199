"""Training speed beside the Theano tutorial, in the same run, and beside this machine's arithmetic limit.

One command prints every number of the README's speed table (not a test):

  1. the machine: float32 GEMM GFLOP/s at the model's own shapes ((frames x 88) @ (88 x 150) and back, as
     CD-k multiplies), one torch thread and two;
  2. the tutorial: ../shared/refbench's PyTensor port of the Theano tutorial (float64, one thread), 200
     updates, its epoch extrapolated; built by its setup.sh on first use, skipped with one line when it
     cannot be built;
  3. ours, through the real Trainer, one torch thread: the tutorial's schedule (one subsequence per SGD
     update) and the quality recipe's updates (minibatches of 4 subsequences, Adam, persistent chains,
     weight decay: training/recipes.py), and minibatches of 32;
  4. the whole command `rnnrbm-studio train Nottingham.pickle --epochs 1` (start-up, loading, training,
     the validation pass, the checkpoint) against the tutorial's epoch, and the CLI's import time.

Ratios divide numbers measured in this run; the arithmetic limit is the FLOPs per frame, computed from the
shapes (flops_per_frame), over the GEMM rate measured here. The machines are shared: the load average is
printed beside every number, and ratios measured side by side cancel much of the noise.

    .venv/bin/python benchmarks/bench_training.py            # ~2-3 min (the tutorial's compile is cached after)
    .venv/bin/python benchmarks/bench_training.py --no-reference --no-command   # ours only, ~30 s
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnrbm_studio.model import RnnRbm, RnnRbmConfig  # noqa: E402
from rnnrbm_studio.music.corpus import load_benchmark_pickle  # noqa: E402
from rnnrbm_studio.training.recipes import configs  # noqa: E402
from rnnrbm_studio.training.trainer import TrainConfig, Trainer  # noqa: E402

SHARED = REPO.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "benchmarks" / "Nottingham.pickle"
REFBENCH = SHARED / "refbench"
REFBENCH_DIR = Path("/tmp/rnnrbm-refbench")


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


# ------------------------------------------------------------------------------ the arithmetic
def flops_per_frame(V: int, H: int, R: int, k: int) -> dict[str, int]:
    """Floating-point operations per training frame of one update, by part (a multiply-add is 2)."""
    rbm = 2 * V * H  # one (1 x V) @ (V x H) product
    return {
        f"CD-{k} chain (2 products a step)": 2 * k * rbm,
        "free energies of data and sample, dW": 4 * rbm,
        "monitor (one more step from the sample)": 2 * rbm,
        "RNN forward (biases, recurrence)": 2 * R * (V + H) + 2 * (V * R + R * R),
        "RNN backward (twice the forward)": 2 * (2 * R * (V + H) + 2 * (V * R + R * R)),
    }


def gemm_rate(frames: int, threads: int, V: int = 88, H: int = 150, seconds: float = 0.4) -> float:
    """float32 GFLOP/s of the two CD-k products at `frames` rows, with `threads` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        v, h = torch.rand(frames, V), torch.rand(frames, H)
        W, bh, bv = torch.rand(V, H), torch.rand(H), torch.rand(V)
        for _ in range(10):
            torch.addmm(bh, v, W), torch.addmm(bv, h, W.t())
        reps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(20):
                torch.addmm(bh, v, W), torch.addmm(bv, h, W.t())
            reps += 20
        return reps * 2 * 2 * frames * V * H / (time.perf_counter() - started) / 1e9
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------ the tutorial
def run_reference(data: Path, updates: int) -> dict | None:
    """The tutorial's frames/s and extrapolated epoch from ../shared/refbench, or None (said why)."""
    if not (REFBENCH / "setup.sh").exists():
        print(f"  tutorial: SKIPPED - {REFBENCH} is not here")
        return None
    setup = subprocess.run(["bash", str(REFBENCH / "setup.sh"), str(REFBENCH_DIR)], capture_output=True, text=True)
    if setup.returncode != 0 or not setup.stdout.strip():
        print(f"  tutorial: SKIPPED - refbench/setup.sh failed: {(setup.stderr.strip().splitlines() or ['?'])[-1]}")
        return None
    blas = setup.stdout.strip().splitlines()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seed.json"
        run = subprocess.run([str(REFBENCH_DIR / "seedvenv" / "bin" / "python"), str(REFBENCH / "seed_pytensor.py"),
                              "--data", str(data), "--epochs", "1", "--max-batches", str(updates), "--threads", "1",
                              "--blas-ldflags", blas, "--compiledir", str(REFBENCH_DIR / "ptcache"),
                              "--no-generate", "--json-out", str(out)], capture_output=True, text=True)
        if run.returncode != 0 or not out.exists():
            print(f"  tutorial: SKIPPED - seed_pytensor.py failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}")
            return None
        result = json.loads(out.read_text())
    epoch = result["epochs"][0]
    return {"fps": epoch["frames_per_s_excl_first_update"], "epoch_s": result["extrapolated_epoch_s"],
            "frames": result["n_frames"], "updates": epoch["updates"], "load": result["loadavg_start"].split()[0]}


# ------------------------------------------------------------------------------ ours
def subset_by_updates(rolls: list[np.ndarray], frames_wanted: int) -> list[np.ndarray]:
    """The first pieces (in a fixed shuffled order) holding about `frames_wanted` frames."""
    order = np.random.default_rng(0).permutation(len(rolls))
    chosen, frames = [], 0
    for index in order:
        if frames >= frames_wanted:
            break
        chosen.append(rolls[index])
        frames += len(rolls[index])
    return chosen


def time_ours(rolls, recipe: str, **overrides) -> tuple[float, float]:
    """(frames/s, monitor) of one epoch over `rolls` through the Trainer, one torch thread, no validation."""
    model_config, train_config = configs(recipe, epochs=1, threads=1, seed=0, rnn_pretrain_epochs=0,
                                         rbm_pretrain_epochs=0, min_updates=0, **overrides)
    torch.manual_seed(0)
    model = RnnRbm(model_config)
    trainer = Trainer(model, rolls, (), train_config)
    started = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - started
    if result.status != "finished":
        raise SystemExit(f"training did not finish: {result.status} {result.message}")
    return sum(len(r) for r in rolls) / seconds, result.history[-1].monitor


def time_command(data: Path) -> tuple[float | None, float]:
    """Wall seconds of `rnnrbm-studio train DATA --epochs 1` (None if it failed), and of importing the CLI."""
    exe = Path(sys.executable).parent / "rnnrbm-studio"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import rnnrbm_studio.cli"], check=True)
    import_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = subprocess.run([str(exe), "train", str(data), "--epochs", "1", "--threads", "1",
                              "--out", str(Path(tmp) / "m.pt")], capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if run.returncode != 0:
        print(f"  command failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}")
        return None, import_s
    return seconds, import_s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--updates", type=int, default=200, help="tutorial updates timed (both sides)")
    parser.add_argument("--no-reference", action="store_true", help="leave out the tutorial")
    parser.add_argument("--no-command", action="store_true", help="leave out the whole train command")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not args.data.exists():
        print(f"SKIPPED: no {args.data}")
        return 0
    train = [p.roll for p in load_benchmark_pickle(args.data).train]
    total = sum(len(r) for r in train)
    config = RnnRbmConfig()
    V, H, R, k = config.n_visible, config.n_hidden, config.n_hidden_recurrent, config.cd_k
    print(f"RNN-RBM Studio training speed, {time.strftime('%Y-%m-%d %H:%M')}, python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}, {os.cpu_count()} cpus, {load()}")
    print(f"  {args.data.name} train: {len(train)} pieces, {total:,} frames; model {V}/{H}/{R}, CD-{k}")

    parts = flops_per_frame(V, H, R, k)
    flops = sum(parts.values())
    print(f"\nArithmetic per training frame: {flops / 1e6:.2f} MFLOP "
          + ", ".join(f"{name} {value / 1e3:.0f}k" for name, value in parts.items()))
    rates = {}
    for frames in (100, 400, 3200):
        rates[frames] = {threads: gemm_rate(frames, threads) for threads in (1, 2)}
        print(f"  GEMM float32 ({frames} x {V}) @ ({V} x {H}) and back: {rates[frames][1]:.0f} GFLOP/s one thread, "
              f"{rates[frames][2]:.0f} two; limit {rates[frames][1] * 1e9 / flops:,.0f} frames/s on one core, "
              f"{max(rates[frames].values()) * 1e9 / flops:,.0f} on two ({load()})")

    print("\nThe tutorial (../shared/refbench: PyTensor, float64, one thread):")
    reference = None if args.no_reference else run_reference(args.data, args.updates)
    if reference:
        print(f"  {reference['fps']:,.0f} frames/s over {reference['updates']} updates; epoch {reference['epoch_s']:.1f} s "
              f"(extrapolated; load {reference['load']} at its start)")
    elif args.no_reference:
        print("  left out (--no-reference)")

    print("\nOurs (one torch thread, float32, through the Trainer):")
    tutorial_rolls = subset_by_updates(train, int(total * 0.1))
    rows = [("tutorial schedule: 1 subsequence per SGD update", tutorial_rolls, "tutorial", {}, 100),
            ("quality recipe's updates: 4 subsequences, Adam, persistent CD", subset_by_updates(train, int(total * 0.15)),
             "quality", {}, 400),
            ("minibatches of 32 subsequences, SGD", subset_by_updates(train, int(total * 0.25)), "tutorial",
             {"batch_seqs": 32, "learning_rate": 0.01}, 3200)]
    for label, rolls, recipe, overrides, size in rows:
        fps, monitor = time_ours(rolls, recipe, **overrides)
        limit = rates[size][1] * 1e9 / flops
        ratio = f"{fps / reference['fps']:.1f}x the tutorial" if reference else "tutorial not measured"
        print(f"  {label}: {fps:,.0f} frames/s = {total / fps:.2f} s/epoch; {ratio}; "
              f"{fps / limit:.0%} of the one-core limit at {size} frames ({limit:,.0f}) "
              f"[{sum(len(r) for r in rolls):,} frames, monitor {monitor:.2f}, {load()}]")

    if not args.no_command:
        print("\nThe whole command `rnnrbm-studio train Nottingham.pickle --epochs 1 --threads 1` (its valid "
              "pass and checkpoint included):")
        seconds, import_s = time_command(args.data)
        print(f"  importing the CLI: {import_s:.2f} s ({load()})")
        if seconds is not None:
            ratio = f"{reference['epoch_s'] / seconds:.1f}x the tutorial's epoch alone" if reference else ""
            print(f"  {seconds:.1f} s; {ratio} ({load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
