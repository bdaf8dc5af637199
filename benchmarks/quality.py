"""Train with the recipe and measure the model as the paper does; print a results-table row.

Runs the real command lines (so the commands in docs/quality.md are exactly what was measured):
    rnnrbm-studio train DATA --out OUT RECIPE...            (timed: wall clock)
    rnnrbm-studio eval OUT DATA --split S --json ...         (for each split asked)

Usage:
    .venv/bin/python benchmarks/quality.py --data ../shared/data/benchmarks/Nottingham.pickle --out /tmp/nott.pt
    .venv/bin/python benchmarks/quality.py --data "../shared/data/benchmarks/JSB Chorales.pickle" --out /tmp/jsb.pt
    .venv/bin/python benchmarks/quality.py --eval-only --out resources/default_model.pt --data ...   (no training)

Rows are appended as JSON lines to benchmarks/quality_results.jsonl. The paper's figures are printed
beside ours for the two benchmark sets (Boulanger-Lewandowski et al. 2012, table 1, RNN-RBM row).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "rnnrbm_studio"]

# The recipe (docs/quality.md says what each choice measured). The same line for every corpus.
RECIPE = ("--hidden 150 --recurrent 100 --optimizer adam --lr 0.002 --lr-schedule cosine --batch-seqs 4 "
          "--cd-start persistent --weight-decay 0.01 --rnn-weight-decay 0.1 --rnn-pretrain-epochs 100 --rbm-pretrain-epochs 5 "
          "--select-by ll --min-updates 28000 --gibbs-steps 1000 --threads 1 --epochs 60 --key-shift-candidate 1")

PAPER = {  # (LL, ACC %) of the RNN-RBM in the paper's table 1 (JSB: "about -6.3"; its ACC not checked here)
    "Nottingham.pickle": (-2.39, 75.4),
    "JSB Chorales.pickle": (-6.3, None),
}


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$ " + " ".join(shlex.quote(c) for c in command), file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=REPO, check=True, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, help="the model file to write (or to measure with --eval-only)")
    parser.add_argument("--recipe", default=RECIPE, help=f"training options (default: {RECIPE})")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--splits", default="valid,test")
    parser.add_argument("--eval-args", default="--chains 16 --betas 1000 --acc-samples 2 --seed 0",
                        help="options of rnnrbm-studio eval")
    parser.add_argument("--eval-threads", type=int, default=1)
    parser.add_argument("--log", default=str(REPO / "benchmarks" / "quality_results.jsonl"))
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    train_command = [*CLI, "train", args.data, "--out", args.out, *shlex.split(args.recipe)]
    train_seconds = None
    if not args.eval_only:
        started = time.monotonic()
        run(train_command, env=env)
        train_seconds = time.monotonic() - started
    row = {"data": Path(args.data).name, "model": args.out, "train_seconds": train_seconds,
           "train_command": "rnnrbm-studio " + " ".join(shlex.quote(c) for c in train_command[3:])
           if not args.eval_only else None, "when": time.strftime("%Y-%m-%d %H:%M")}
    splits = [s for s in args.splits.split(",") if s]
    for split in splits:
        command = [*CLI, "eval", args.out, args.data, "--split", split, "--json", "--threads",
                   str(args.eval_threads), *shlex.split(args.eval_args)]
        output = run(command, env=env, capture_output=True, text=True).stdout
        values = json.loads(output)
        ll = values["log_likelihood"]
        row[split] = {"ll": ll["mean"], "ll_se": ll["se"], "ll_floored": ll["mean_floored"],
                      "ll_upper": ll["upper_bound"], "ais_frames_below_bound": ll["frames_below_lower_bound"],
                      "ais_mean_ess": ll["mean_ess"], "acc_ais_weighted": ll["accuracy"],
                      "acc_app": values["app_accuracy"]["mean"] if values.get("app_accuracy") else None,
                      "acc": values["accuracy"]["mean"], "acc_se": values["accuracy"]["se"],
                      "monitor": values["monitor"], "frames": values["frames"], "eval_seconds": values["seconds"]}
        row[split]["eval_command"] = "rnnrbm-studio " + " ".join(shlex.quote(c) for c in command[3:])
    with open(args.log, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    paper = PAPER.get(row["data"])
    print(json.dumps(row, indent=2))
    print("\n| data | split | LL (nats/step) | ACC % | tutorial monitor | paper RNN-RBM LL / ACC | train time |")
    print("|---|---|---|---|---|---|---|")
    for split in splits:
        r = row[split]
        print(f"| {row['data']} | {split} | {r['ll']:.3f} ± {r['ll_se']:.3f} | {100 * r['acc']:.1f} ± "
              f"{100 * r['acc_se']:.1f} | {r['monitor']:.3f} | "
              f"{f'{paper[0]} / {paper[1]}' if paper else '-'} | "
              f"{f'{train_seconds / 60:.1f} min' if train_seconds else '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
