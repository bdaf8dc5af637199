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
    from ..quality.accuracy import (DEFAULT_ACC_GIBBS_STEPS, DEFAULT_ACC_SAMPLES, DEFAULT_AUTHOR_BURN_IN,
                                    DEFAULT_AUTHOR_CHAINS, DEFAULT_AUTHOR_SAMPLES, DEFAULT_AUTHOR_THIN)
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
    gibbs = from_limits(MODEL_FIELDS, "gibbs_steps")
    ev.add_argument("--acc-author-samples", type=int_in(0, MAX_CHAINS), default=DEFAULT_AUTHOR_SAMPLES,
                    help=f"samples per frame for the ACC under the paper author's protocol (each sample's own "
                         f"accuracy, averaged, then the mean over frames) (0..{MAX_CHAINS}, a multiple of "
                         f"--acc-author-chains; default {DEFAULT_AUTHOR_SAMPLES}; 0 skips it)")
    ev.add_argument("--acc-author-chains", type=int_in(1, MAX_CHAINS), default=DEFAULT_AUTHOR_CHAINS,
                    help=f"Gibbs chains per frame those samples come from (1..{MAX_CHAINS}; "
                         f"default {DEFAULT_AUTHOR_CHAINS})")
    ev.add_argument("--acc-author-burn-in", type=gibbs, default=DEFAULT_AUTHOR_BURN_IN,
                    help=f"Gibbs steps from the previous frame before a chain's first sample "
                         f"({gibbs.span}; default {DEFAULT_AUTHOR_BURN_IN})")
    ev.add_argument("--acc-author-thin", type=gibbs, default=DEFAULT_AUTHOR_THIN,
                    help=f"Gibbs steps between a chain's samples ({gibbs.span}; default {DEFAULT_AUTHOR_THIN})")
    ev.add_argument("--acc-samples", type=int_in(0, MAX_CHAINS), default=DEFAULT_ACC_SAMPLES,
                    help=f"predictions per frame for the pooled accuracy (0..{MAX_CHAINS}; "
                         f"default {DEFAULT_ACC_SAMPLES}; 0 skips it)")
    ev.add_argument("--gibbs-steps", type=gibbs, default=DEFAULT_ACC_GIBBS_STEPS,
                    help=f"Gibbs steps per predicted frame for the pooled ACC, from the previous frame "
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

    if args.acc_author_samples % args.acc_author_chains:
        raise StudioError(f"--acc-author-samples ({args.acc_author_samples}) must be a multiple of "
                          f"--acc-author-chains ({args.acc_author_chains})")
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
                            base=args.base, progress=progress, author_samples=args.acc_author_samples,
                            author_chains=args.acc_author_chains, author_burn_in=args.acc_author_burn_in,
                            author_thin=args.acc_author_thin)
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
                   log_likelihood_capped=round(ll["mean_floored"], 4), log_likelihood_sure_bound=round(ll["upper_bound"], 4),
                   ais=f"{ll['chains']} chains x {ll['betas']} betas, {ll['base']} base",
                   accuracy_ais_weighted=round(ll["accuracy"], 4))
    if acc:
        out.update(accuracy=round(acc["mean"], 4), accuracy_se=None if math.isnan(acc["se"]) else round(acc["se"], 4),
                   accuracy_protocol=f"{acc['samples']} samples x {acc['gibbs_steps']} Gibbs steps from v_(t-1)",
                   app_sampler_accuracy=round(values["app_accuracy"]["mean"], 4))
    if values.get("acc_author_percent") is not None:
        author = values["author_accuracy"]
        out.update(acc_author_percent=round(values["acc_author_percent"], 2), acc_author_sampler=author["sampler"],
                   acc_author_samples_per_frame=author["samples"])
    if values.get("monitor") is not None:
        out["tutorial_monitor"] = round(values["monitor"], 4)
    return out


def format_table(values: dict) -> str:
    lines = [f"model: {values['model']}",
             f"data:  {values['data']} ({values['split']}: {values['pieces']} pieces, {values['frames']:,} steps)",
             "",
             f"{'measure':<46} {'value':>18}  details"]
    ll = values.get("log_likelihood")
    if ll:
        lines.extend(_log_likelihood_lines(ll))
    author = values.get("author_accuracy")
    if author:
        se = " " * 7 if math.isnan(author["se"]) else f"± {author['se'] * 100:<5.2f}"
        lines.append(f"{'frame accuracy (ACC), %, author protocol':<46} {author['mean'] * 100:>9.2f} {se}   "
                     f"mean over frames of each sample's TP/(TP+FP+FN); {author['sampler']}; "
                     f"{author['seconds']:.0f} s")
        lines.append(f"{'':<46} {'':>18}  {author['both_empty_rule']} ({author['both_empty_fraction']:.2%} of "
                     f"samples; scored 0 instead: {author['mean_if_both_empty_scored_zero'] * 100:.2f})")
    if ll and ll.get("accuracy_author") is not None:
        lines.append(f"{'  ... from the AIS-weighted states, %':<46} {ll['accuracy_author'] * 100:>9.2f}           "
                     f"the same expectation from {ll['chains']} weighted AIS states per frame (mixing-free)")
    if ll:
        lines.append(f"{'pooled ACC, %, AIS-weighted':<46} {ll['accuracy'] * 100:>9.2f}           "
                     f"sum E[TP] / sum E[TP+FP+FN] over all frames")
    for key, label in (("accuracy", "pooled ACC of Gibbs predictions, %"),
                       ("app_accuracy", "  ... as the app composes, %")):
        acc = values.get(key)
        if acc:
            se = " " * 7 if math.isnan(acc["se"]) else f"± {acc['se'] * 100:<5.2f}"
            start = "from v(t-1)" if acc["start"] == "previous" else "from silence"
            lines.append(f"{label:<46} {acc['mean'] * 100:>9.2f} {se}   {acc['samples']} predictions per frame, "
                         f"{acc['gibbs_steps']} Gibbs steps {start}, {acc['seconds']:.0f} s")
    if values.get("monitor") is not None:
        lines.append(f"{'tutorial monitor (reconstruction, not LL)':<46} {values['monitor']:>9.4f}")
    lines.append(f"\n{values['seconds']:.0f} s in all, seed {values['seed']}")
    return "\n".join(lines)


def _log_likelihood_lines(ll: dict) -> list[str]:
    """The LL, never above its own sure bound: each frame's AIS log Z is raised to the sure lower bound of
    log Z where it fell below it (which proves AIS wrong there), so that frame's LL is capped at its
    sure upper bound. The uncapped estimate is shown for reference, flagged when it is impossible."""
    below = ll["frames_below_lower_bound"]
    lines = [f"{'log-likelihood per step, nats (AIS)':<46} {ll['mean_floored']:>9.4f} ± {ll['se']:<6.4f}  "
             f"{ll['chains']} chains x {ll['betas']} betas, {ll['base']} base, {ll['seconds']:.0f} s; "
             f"each frame capped at its sure bound ({below:.1%} of frames were above it)",
             f"{'  sure upper bound (distinct states seen)':<46} {ll['upper_bound']:>9.4f}           "
             f"the true LL is at most this; mean ESS {ll['mean_ess']:.1f}/{ll['chains']}"]
    note = "the same where AIS has converged"
    if ll["mean"] > ll["upper_bound"]:
        note = "above the sure upper bound, so impossible: AIS has not converged"
    elif below > 0:
        note = f"higher than the capped value: AIS went above the sure bound on {below:.1%} of frames"
    lines.append(f"{'  AIS estimate uncapped':<46} {ll['mean']:>9.4f}           {note}")
    if below > UNCONVERGED_FRACTION:
        lines.append(f"  warning: AIS has not converged ({below:.0%} of frames above the sure bound), so even the "
                     f"capped log-likelihood may read high: measure again with more --betas (e.g. 1000)")
    return lines
