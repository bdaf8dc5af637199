"""Harmonising Bach's soprano: the model fills the lower voices (rnnrbm_studio/quality/harmonisation.py).

    .venv/bin/python benchmarks/harmonisation.py MODEL "../shared/data/benchmarks/JSB Chorales.pickle" \\
        [--split test] [--frames 1500] [--samples 4] [--gibbs-steps 200] [--chains 16] [--betas 300] [--json]

For each frame (a uniform random subset of --frames of the split's frames; the true history drives
the RNN over every piece), the soprano (highest sounding key; no key above it) is clamped and the
model's RBM fills the keys below. Prints a table: the ACC of the lower voices (each sample's own
TP / (TP + FP + FN), averaged over the samples, then the frames) for the clamped model, the model
sampling the whole frame, and "repeat the previous frame's lower voices"; log p(lower voices |
soprano, history) and log p(frame | history) by AIS. Errors are standard errors over pieces.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnnrbm_studio.music.corpus import load_corpus  # noqa: E402
from rnnrbm_studio.quality import harmonisation as harm  # noqa: E402
from rnnrbm_studio.training.checkpoint import load_model  # noqa: E402
from rnnrbm_studio.training.state import kept_epoch  # noqa: E402


def model_summary(checkpoint) -> dict:
    """Epochs trained, the kept epoch and its validation log-likelihood, from the checkpoint's history."""
    history = checkpoint.history or []
    last = history[-1] if history else None
    kept = kept_epoch(checkpoint)
    kept_record = next((r for r in history if r.epoch == kept), None)
    planned = checkpoint.training.train_config.epochs if checkpoint.training else None
    return {"epochs_trained": last.epoch if last else None, "epochs_planned": planned, "kept_epoch": kept,
            "kept_valid_ll": kept_record.valid_ll if kept_record else None}


def pm(measure, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    if measure is None:
        return "not measured"
    return f"{measure['mean'] * scale:.{digits}f}{unit} ± {measure['se'] * scale:.{digits}f}{unit}"


def table(values: dict) -> str:
    percent = dict(scale=100, digits=1, unit=" %")
    m = values["model"]
    rows = [
        "| answer for the lower voices | ACC (lower voices) | log-likelihood, nats per frame |",
        "|---|---|---|",
        f"| the model, soprano clamped | **{pm(values['accuracy_clamped'], **percent)}** "
        f"(AIS-weighted {pm(values['accuracy_clamped_ais'], **percent)}) "
        f"| log p(lower voices \\| soprano, history) **{pm(values['ll_lower_given_soprano'])}** |",
        f"| the model, nothing clamped (its own soprano: Bach's in "
        f"{values['soprano_kept_unconditional']:.0%} of samples) | {pm(values['accuracy_unconditional'], **percent)} "
        f"| log p(frame \\| history) {pm(values['ll_frame'])}; so log p(soprano \\| history) {pm(values['ll_soprano'])} |",
        f"| repeat the previous frame's lower voices | {pm(values['accuracy_repeat'], **percent)} "
        f"| none: {values['ll_repeat']} |",
    ]
    notes = [
        f"model: {values['model_file']} (epoch {m['kept_epoch']} kept of {m['epochs_trained']} trained, "
        f"{m['epochs_planned']} planned; valid LL at the kept epoch {m['kept_valid_ll']:.3f})"
        if m["kept_valid_ll"] is not None else f"model: {values['model_file']}",
        f"data: {values['data']}, {values['split']} split: {values['frames']} frames measured of "
        f"{values['frames_total']} in {values['pieces']} pieces ({values['silent_frames']} silent frames drawn, left out)",
        f"samples: {values['samples']} per frame and answer, each a block-Gibbs chain of {values['gibbs_steps']} "
        f"steps from the true previous frame; AIS {values['chains']} chains x {values['betas']} temperatures, "
        f"{values['ais_below_bound']:.1%} of estimates below their sure bound",
        f"exact lower voices: repeat {values['exact_lower_repeat']:.1%} of frames, clamped samples "
        f"{values['exact_lower_clamped']:.1%}; both silent: {values['both_empty_rule']}",
        f"± : standard error over pieces (cluster-robust); runtime {values['seconds']:.0f} s "
        f"(wall {values['wall_seconds']:.0f} s with loading)",
        f"command: {values['command']}",
    ]
    return "\n".join(rows) + "\n\n" + "\n".join(notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test")
    parser.add_argument("--frames", type=int, default=None, help="measure a random subset of N frames (default all)")
    parser.add_argument("--samples", type=int, default=harm.DEFAULT_SAMPLES)
    parser.add_argument("--gibbs-steps", type=int, default=harm.DEFAULT_GIBBS_STEPS)
    parser.add_argument("--chains", type=int, default=harm.DEFAULT_CHAINS, help="AIS chains (0 skips the LL)")
    parser.add_argument("--betas", type=int, default=harm.DEFAULT_BETAS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.frames is not None and args.frames < 1 or args.samples < 1 or args.gibbs_steps < 1 or args.chains < 0:
        parser.error("--frames, --samples and --gibbs-steps must be at least 1, --chains at least 0")

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    model, checkpoint = load_model(args.model)
    corpus = load_corpus(args.data, checkpoint.data.roll_settings)
    rolls = [p.roll for p in corpus.splits[args.split] if len(p.roll)]
    if not rolls:
        parser.error(f"the {args.split} split of {args.data} is empty")

    def progress(stage: str, fraction: float) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r\033[K{stage} {fraction:.0%}")
            sys.stderr.flush()

    result = harm.harmonisation(model, rolls, max_frames=args.frames, samples=args.samples,
                                gibbs_steps=args.gibbs_steps, chains=args.chains, n_betas=args.betas,
                                seed=args.seed, progress=progress)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    values = result.to_dict()
    values.update(model_file=args.model, model=model_summary(checkpoint), data=Path(args.data).name,
                  split=args.split, wall_seconds=time.perf_counter() - started,
                  command=" ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/harmonisation.py",
                                                            *sys.argv[1:]]))
    print(json.dumps(values, indent=2) if args.json else table(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
