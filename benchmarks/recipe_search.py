"""Measure training-recipe choices: train one candidate, evaluate it on the valid split, print and log a row.

Usage (one candidate per run; rows are appended to --log as JSON lines):
    .venv/bin/python benchmarks/recipe_search.py NAME --data ../shared/data/benchmarks/Nottingham.pickle \
        --set optimizer=adam learning_rate=0.001 batch_seqs=16 epochs=30 --model n_hidden=150 \
        [--valid-pieces 40 --chains 32 --betas 100 --acc-samples 4 --out /tmp/NAME.pt --log recipe.jsonl]

Selection is on VALID only (the first --valid-pieces pieces, to keep each row cheap); the test split is
measured once, for the chosen recipe, by benchmarks/quality.py. Times are wall-clock on the machine it
runs on (see docs/quality.md for the machine); training uses --threads (default 1).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnrbm_studio.music.corpus import load_corpus  # noqa: E402
from rnnrbm_studio.quality.evaluate import evaluate_model  # noqa: E402
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig  # noqa: E402
from rnnrbm_studio.training.trainer import TrainConfig, Trainer  # noqa: E402


def parse_assignments(items: list[str], cls) -> dict:
    kinds = {f.name: f.type for f in fields(cls)}
    values = {}
    for item in items:
        key, _, text = item.partition("=")
        if key not in kinds:
            raise SystemExit(f"unknown {cls.__name__} field {key!r}")
        values[key] = None if text == "None" else (text.lower() in ("1", "true", "yes")
                                                   if "bool" in str(kinds[key]) else _number(text))
    return values


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/benchmarks/Nottingham.pickle"))
    parser.add_argument("--set", nargs="*", default=[], help="TrainConfig fields, key=value")
    parser.add_argument("--model", nargs="*", default=[], help="RnnRbmConfig fields, key=value")
    parser.add_argument("--valid-pieces", type=int, default=40)
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--betas", type=int, default=100)
    parser.add_argument("--acc-samples", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="checkpoint (default /tmp/recipe-NAME.pt)")
    parser.add_argument("--log", default=str(REPO / "benchmarks" / "recipe_results.jsonl"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    train_values = {"threads": args.threads, **parse_assignments(args.set, TrainConfig)}
    model_values = parse_assignments(args.model, RnnRbmConfig)
    config = TrainConfig(**train_values)
    model_config = RnnRbmConfig(**model_values)
    corpus = load_corpus(args.data)
    out = Path(args.out or f"/tmp/recipe-{args.name}.pt")
    out.unlink(missing_ok=True)
    torch.manual_seed(config.seed)
    trainer = Trainer(RnnRbm(model_config), [p.roll for p in corpus.train], [p.roll for p in corpus.valid], config,
                      out, data_description=args.data)
    started = time.monotonic()
    result = trainer.run()
    train_seconds = time.monotonic() - started
    model = trainer.model
    if trainer.best.state is not None:
        model.load_state_dict(trainer.best.state)
    key = "valid_ll" if config.select_by == "ll" else "valid_monitor"
    best_epoch = max((h.to_dict() for h in trainer.history if getattr(h, key) is not None),
                     key=lambda h: h[key], default={"epoch": None})["epoch"]
    evaluation = evaluate_model(model, [p.roll for p in corpus.valid[:args.valid_pieces]], "valid",
                                chains=args.chains, n_betas=args.betas, acc_samples=args.acc_samples, seed=0)
    row = {"name": args.name, "data": Path(args.data).name, "status": result.status,
           "epochs": result.epochs_completed, "best_epoch": best_epoch, "train_seconds": round(train_seconds, 1),
           "pretraining": trainer.pretraining, "valid_frames": evaluation.frames,
           "valid_ll": round(evaluation.log_likelihood.mean, 4), "valid_ll_se": round(evaluation.log_likelihood.se, 4),
           "valid_ll_upper": round(evaluation.log_likelihood.upper_bound, 4),
           "valid_acc": round(evaluation.accuracy.mean, 4) if evaluation.accuracy else None,
           "valid_ais_acc": round(evaluation.log_likelihood.accuracy, 4),
           "valid_app_acc": round(evaluation.app_accuracy.mean, 4) if evaluation.app_accuracy else None,
           "valid_monitor": round(evaluation.monitor, 4), "eval_seconds": round(evaluation.seconds, 1),
           "ais": f"{args.chains}x{args.betas}", "train_config": asdict(config), "model_config": asdict(model_config),
           "when": time.strftime("%Y-%m-%d %H:%M")}
    print(json.dumps(row))
    with open(args.log, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
