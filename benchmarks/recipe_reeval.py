"""Measure trained models again with a converged AIS on the same valid frames (the second recipe table).

Usage:
    .venv/bin/python benchmarks/recipe_reeval.py DATA PIECES CHAINS,BETAS MODEL[:last] [MODEL[:last] ...]
    e.g. benchmarks/recipe_reeval.py ../shared/data/benchmarks/Nottingham.pickle 10 16,1000 /tmp/recipe-F.pt

Each model's kept weights (or its last ones with ":last") are measured on the valid pieces PIECES
(N: the first N; A:B: pieces A to B-1, so that two processes can share a long run) of the valid split,
or of the split named by RECIPE_REEVAL_SPLIT (e.g. test); rows (LL and its standard error, LL floored
at the sure bound, the sure upper bound, the fraction of frames below it, ESS, AIS-weighted ACC,
seconds) are printed and appended to benchmarks/recipe_reeval.jsonl (or RECIPE_REEVAL_LOG).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnrbm_studio.training.checkpoint import load_model  # noqa: E402
from rnnrbm_studio.music.corpus import load_corpus  # noqa: E402
from rnnrbm_studio.quality.ais import log_likelihood  # noqa: E402
from rnnrbm_studio.quality.frames import conditional_frames  # noqa: E402
from rnnrbm_studio.model import BernoulliSampler  # noqa: E402


def main() -> int:
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    data, pieces, (chains, betas) = sys.argv[1], sys.argv[2], map(int, sys.argv[3].split(","))
    start, stop = pieces.split(":") if ":" in pieces else ("0", pieces)
    split = os.environ.get("RECIPE_REEVAL_SPLIT", "valid")
    rolls = [p.roll for p in getattr(load_corpus(data), split)[int(start or 0):int(stop) if stop else None]]
    for spec in sys.argv[4:]:
        path, _, which = spec.partition(":")
        model, _ = load_model(path, which=which or "best")
        ll = log_likelihood(model, conditional_frames(model, rolls), chains, betas, BernoulliSampler(1))
        row = {"model": Path(path).stem.removeprefix("recipe-"), "which": which or "best",
               **({} if split == "valid" else {"split": split}), **({"pieces": pieces} if ":" in pieces else {}),
               "frames": sum(map(len, rolls)), "ll_se": round(ll.se, 4),
               "ais": f"{chains}x{betas}", "ll": round(ll.mean, 4), "ll_floored": round(ll.mean_floored, 4),
               "upper": round(ll.upper_bound, 4), "below": round(ll.frames_below_lower_bound, 3),
               "ess": round(ll.mean_ess, 1), "ais_acc": round(ll.accuracy, 4), "seconds": round(ll.seconds)}
        print(json.dumps(row), flush=True)
        with open(os.environ.get("RECIPE_REEVAL_LOG", REPO / "benchmarks" / "recipe_reeval.jsonl"), "a") as handle:
            handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
