"""Commands measuring the model: eval (the paper's log-likelihood and accuracy, and the tutorial's monitor)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from ..errors import StudioError
from ..limits import MODEL_FIELDS, SEED_MAX, THREADS_MAX
from .options import from_limits, int_in

SPLITS = ("train", "valid", "test")
# Converged runs left at most ~1% of frames below the sure bound (docs/quality.md); more means AIS is off.
UNCONVERGED_FRACTION = 0.02
MAX_CHAINS = 10_000  # (chains and predictions per frame are held in memory for all frames at once)
MAX_BETAS = 1_000_000
MAX_PIECES = 1_000_000


def register(subparsers) -> None:
    from ..quality.accuracy import DEFAULT_ACC_GIBBS_STEPS, DEFAULT_ACC_SAMPLES
    from ..quality.ais import DEFAULT_BETAS, DEFAULT_CHAINS

    ev = subparsers.add_parser(
        "eval", help="measure a model on a corpus: log-likelihood per step (AIS), frame accuracy, monitor",
        description="Log-likelihood per time step (nats; each frame's partition function by annealed "
                    "importance sampling), expected frame-level accuracy (Bay et al. 2009) of the model's "
                    "next-frame predictions, and the Theano tutorial's training monitor (not a likelihood).")
    ev.add_argument("model", metavar="MODEL", help="a model file")
    ev.add_argument("data", metavar="DATA", help="a benchmark .pickle, a MIDI folder or a MIDI file")
    ev.add_argument("--split", choices=SPLITS, default="test", help="which split to measure (default test)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--chains", type=int_in(0, MAX_CHAINS), default=DEFAULT_CHAINS,
                    help=f"AIS chains per frame (0..{MAX_CHAINS}; default {DEFAULT_CHAINS}; 0 skips the "
                         f"log-likelihood)")
    ev.add_argument("--betas", type=int_in(1, MAX_BETAS), default=DEFAULT_BETAS,
                    help=f"AIS intermediate temperatures (1..{MAX_BETAS}; default {DEFAULT_BETAS})")
    ev.add_argument("--base", choices=("marginals", "biases"), default="marginals",
                    help="AIS base RBM: each frame's estimated marginals (default) or its visible biases")
    ev.add_argument("--acc-samples", type=int_in(0, MAX_CHAINS), default=DEFAULT_ACC_SAMPLES,
                    help=f"predictions per frame for the accuracy (0..{MAX_CHAINS}; default {DEFAULT_ACC_SAMPLES}; "
                         f"0 skips it)")
    gibbs = from_limits(MODEL_FIELDS, "gibbs_steps")
    ev.add_argument("--gibbs-steps", type=gibbs, default=DEFAULT_ACC_GIBBS_STEPS,
                    help=f"Gibbs steps per predicted frame for the ACC, from the previous frame "
                         f"({gibbs.span}; default {DEFAULT_ACC_GIBBS_STEPS})")
    ev.add_argument("--pieces", type=int_in(1, MAX_PIECES), default=None,
                    help=f"measure only the first N pieces of the split (1..{MAX_PIECES})")
    ev.add_argument("--seed", type=int_in(0, SEED_MAX), default=0, help=f"(0..{SEED_MAX}; default 0)")
    ev.add_argument("--threads", type=int_in(1, THREADS_MAX), default=None, help=f"torch threads (1..{THREADS_MAX})")
    ev.add_argument("--record", action="store_true",
                    help="also store the result in the model file (shown by `rnnrbm-studio info`)")
    ev.set_defaults(handler=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    import torch

    from ..training.checkpoint import load_checkpoint, load_model, save_checkpoint
    from ..music.corpus import load_corpus
    from ..quality.evaluate import evaluate_model

    if args.threads:
        torch.set_num_threads(args.threads)
    identity = _identity(args.model)  # before reading: a file replaced while it is measured is not recorded into
    model, checkpoint = load_model(args.model)
    corpus = load_corpus(args.data, checkpoint.data.roll_settings)
    pieces = corpus.splits[args.split][:args.pieces]
    rolls = [p.roll for p in pieces if len(p.roll)]
    if not rolls:
        raise StudioError(f"the {args.split} split of {args.data} has no music to measure")
    if rolls[0].shape[1] != model.config.n_visible:
        raise StudioError(f"the model has {model.config.n_visible} keys but the data has {rolls[0].shape[1]}")
    interactive = sys.stderr.isatty() and not args.json

    def progress(stage: str, fraction: float) -> None:
        if interactive:
            sys.stderr.write(f"\r\033[K{stage} {fraction:.0%}")
            sys.stderr.flush()

    result = evaluate_model(model, rolls, args.split, chains=args.chains, n_betas=args.betas,
                            acc_samples=args.acc_samples, seed=args.seed, gibbs_steps=args.gibbs_steps,
                            base=args.base, progress=progress)
    if interactive:
        sys.stderr.write("\r\033[K")
    values = result.to_dict()
    values.update(model=str(args.model), data=str(args.data))
    if args.record:
        from ..training.run_lock import output_lock

        with output_lock(args.model):  # a training run writing the file would overwrite the record
            current = load_checkpoint(args.model)
            if _identity(args.model) != identity or current.saved_at != checkpoint.saved_at:
                raise StudioError(f"{args.model} changed while it was being measured; the result was not recorded")
            current.evaluation = summary(values)
            try:
                save_checkpoint(args.model, current)
            except OSError as error:
                raise StudioError(f"cannot write {args.model}: {error.strerror or error}") from None
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        print(format_table(values))
    return 0


def _identity(path: str) -> tuple | None:
    """What differs once a file is replaced: checkpoints are written to a new file renamed over the old one
    (saved_at alone counts whole seconds)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def summary(values: dict) -> dict:
    """The headline numbers (plain floats, ints and strings: what a checkpoint may hold)."""
    out = {"data": Path(values["data"]).name, "split": values["split"], "frames": values["frames"],
           "measured": time.strftime("%Y-%m-%d")}
    ll, acc = values.get("log_likelihood"), values.get("accuracy")
    if ll:
        out.update(log_likelihood=round(ll["mean"], 4), log_likelihood_se=round(ll["se"], 4),
                   ais=f"{ll['chains']} chains x {ll['betas']} betas, {ll['base']} base",
                   accuracy_ais_weighted=round(ll["accuracy"], 4))
    if acc:
        out.update(accuracy=round(acc["mean"], 4), accuracy_se=None if math.isnan(acc["se"]) else round(acc["se"], 4),
                   accuracy_protocol=f"{acc['samples']} samples x {acc['gibbs_steps']} Gibbs steps from v_(t-1)",
                   app_sampler_accuracy=round(values["app_accuracy"]["mean"], 4))
    if values.get("monitor") is not None:
        out["tutorial_monitor"] = round(values["monitor"], 4)
    return out


def format_table(values: dict) -> str:
    lines = [f"model: {values['model']}",
             f"data:  {values['data']} ({values['split']}: {values['pieces']} pieces, {values['frames']:,} steps)",
             "",
             f"{'measure':<44} {'value':>20}  details"]
    ll = values.get("log_likelihood")
    if ll:
        lines.append(f"{'log-likelihood per step, nats (AIS)':<44} {ll['mean']:>11.4f} ± {ll['se']:<6.4f}  "
                     f"{ll['chains']} chains x {ll['betas']} betas, {ll['base']} base, {ll['seconds']:.0f} s")
        lines.append(f"{'  raised to the sure bound where below it':<44} {ll['mean_floored']:>11.4f}           "
                     f"(equal to the LL when AIS has converged)")
        lines.append(f"{'  sure upper bound (distinct states seen)':<44} {ll['upper_bound']:>11.4f}           "
                     f"AIS below it on {ll['frames_below_lower_bound']:.1%} of frames; "
                     f"mean ESS {ll['mean_ess']:.1f}/{ll['chains']}")
        if ll["frames_below_lower_bound"] > UNCONVERGED_FRACTION:
            lines.append(f"  warning: AIS has not converged ({ll['frames_below_lower_bound']:.0%} of frames below the sure "
                         f"bound), so the log-likelihood reads high: measure again with more --betas (e.g. 1000)")
        lines.append(f"{'expected frame accuracy (ACC), % (AIS-weighted)':<44} {ll['accuracy'] * 100:>11.2f}           "
                     f"E[TP] / E[TP+FP+FN] under each frame's RBM, from the weighted AIS states")
    for key, label in (("accuracy", "frame accuracy of Gibbs predictions, %"),
                       ("app_accuracy", "  ... as the app composes, %")):
        acc = values.get(key)
        if acc:
            se = " " * 7 if math.isnan(acc["se"]) else f"± {acc['se'] * 100:<5.2f}"
            start = "from v(t-1)" if acc["start"] == "previous" else "from silence"
            lines.append(f"{label:<44} {acc['mean'] * 100:>11.2f} {se}   {acc['samples']} predictions per frame, "
                         f"{acc['gibbs_steps']} Gibbs steps {start}, {acc['seconds']:.0f} s")
    if values.get("monitor") is not None:
        lines.append(f"{'tutorial monitor (reconstruction, not LL)':<44} {values['monitor']:>11.4f}")
    lines.append(f"\n{values['seconds']:.0f} s in all, seed {values['seed']}")
    return "\n".join(lines)
