"""Commands over the engine: train, generate, info, export-params."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..assets import default_model_path
from ..errors import StudioError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a model on a MIDI folder, a MIDI file or a benchmark pickle")
    train.add_argument("data", metavar="DATA", help="a folder of MIDI files, a .mid file, or an ICML-2012 .pickle")
    train.add_argument("--out", required=True, help="the checkpoint to write (every epoch, atomically)")
    train.add_argument("--recipe", choices=("tutorial", "quality"), default="tutorial",
                       help="the defaults of the options marked [recipe]: the Theano tutorial's training, or "
                            "the quality recipe that made the bundled model (docs/quality.md); options given "
                            "on the command line win (default: tutorial)")
    train.add_argument("--epochs", type=int, default=None, help="[recipe] passes over the data (tutorial 200)")
    train.add_argument("--hidden", type=int, default=150, help="RBM hidden units (default 150)")
    train.add_argument("--recurrent", type=int, default=100, help="RNN units (default 100)")
    train.add_argument("--lr", type=float, default=None, help="[recipe] learning rate (tutorial 0.001)")
    train.add_argument("--cd-k", type=int, default=15, help="Gibbs steps of CD-k (default 15)")
    train.add_argument("--gibbs-steps", type=int, default=None,
                       help="[recipe] Gibbs steps per generated frame, stored with the model (tutorial 25)")
    train.add_argument("--optimizer", choices=("sgd", "adam"), default=None, help="[recipe] (tutorial sgd)")
    train.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    train.add_argument("--batch-seqs", type=int, default=None,
                       help="[recipe] subsequences per update (tutorial 1)")
    train.add_argument("--seq-len", type=int, default=100, help="frames per subsequence")
    train.add_argument("--rnn-lr-scale", type=float, default=1.0, help="RNN learning rate / RBM learning rate")
    train.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm")
    train.add_argument("--key-shift", type=int, default=0, help="augment: random transposition up to +-N steps")
    train.add_argument("--key-shift-step", type=int, default=1,
                       help="semitones per key-shift step (12: octaves, which keep each piece's key; default 1)")
    train.add_argument("--key-shift-fraction", type=float, default=1.0,
                       help="transpose during this fraction of the epochs only; the rest train on the "
                            "pieces' own keys (default 1: all epochs)")
    train.add_argument("--key-shift-candidate", type=int, default=0, metavar="N",
                       help="after the run, train it again with --key-shift N and keep whichever scores the "
                            "better valid log-likelihood (AIS 16 x 1,000 on --select-frames frames); the "
                            "other is kept beside --out as NAME.runner-up.pt (default 0: one run)")
    train.add_argument("--patience", type=int, default=None,
                       help="stop after N epochs without a better valid monitor")
    train.add_argument("--learned-u0", action="store_true", help="learn the initial RNN state")
    train.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None,
                       help="[recipe] cosine: decay the learning rates to --lr-min-ratio of themselves by the "
                            "last epoch (tutorial constant)")
    train.add_argument("--lr-min-ratio", type=float, default=0.05)
    train.add_argument("--rnn-pretrain-epochs", type=int, default=None,
                       help="[recipe] first train the RNN alone to predict each frame's notes independently "
                            "(exact, fast; tutorial 0)")
    train.add_argument("--rbm-pretrain-epochs", type=int, default=None,
                       help="[recipe] first train the RBM alone on the frames, shuffled (CD-k; tutorial 0)")
    train.add_argument("--pretrain-lr", type=float, default=0.003, help="Adam learning rate of the pretraining")
    train.add_argument("--select-by", choices=("monitor", "ll"), default=None,
                       help="[recipe] keep the best epoch by the tutorial's monitor or by the log-likelihood "
                            "(AIS) of the first --select-frames valid frames (tutorial monitor)")
    train.add_argument("--select-frames", type=int, default=2000)
    train.add_argument("--min-updates", type=int, default=None,
                       help="[recipe] train at least this many updates: raises --epochs on a small corpus "
                            "(tutorial 0)")
    train.add_argument("--cd-start", choices=("data", "persistent", "previous", "silence"), default=None,
                       help="[recipe] where CD's negative chains start: the data (the tutorial's CD-k), or "
                            "where each frame's chain stopped the epoch before (persistent)")
    train.add_argument("--weight-decay", type=float, default=None,
                       help="[recipe] decay of W each update, times the learning rate (tutorial 0)")
    train.add_argument("--rnn-weight-decay", type=float, default=None,
                       help="[recipe] decay of the RNN's weight matrices each update, times the RNN's "
                            "learning rate (tutorial 0)")
    train.add_argument("--average", type=float, default=0.0,
                       help="keep a moving average of the weights with this decay per update (e.g. 0.999) "
                            "and validate, select and save the average (default 0: off)")
    train.add_argument("--steps-per-beat", type=int, default=2, help="time grid for MIDI input (2 = eighths)")
    train.add_argument("--seconds-per-step", type=float, default=None,
                       help="use a seconds grid instead (the tutorial used 0.3)")
    train.add_argument("--transpose", action="store_true", help="transpose MIDI input to C major / C minor")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=None, help="torch threads")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.set_defaults(handler=train_command)

    generate = subparsers.add_parser("generate", help="write a generated piece to a .mid file")
    generate.add_argument("model", nargs="?", help="a model file (default: the bundled model)")
    generate.add_argument("--out", required=True, help="the .mid file to write")
    generate.add_argument("--frames", type=int, default=400, help="steps to generate (default 400)")
    generate.add_argument("--primer", help="a MIDI file whose music the piece continues")
    generate.add_argument("--bpm", type=float, default=None,
                          help="tempo (default 120, or the model's own pace if it was trained on a seconds grid)")
    generate.add_argument("--gibbs-steps", type=int, default=None)
    generate.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1 = the model)")
    generate.add_argument("--seed", type=int, default=None)
    generate.set_defaults(handler=generate_command)

    info = subparsers.add_parser("info", help="show a model's configuration, training progress and data settings")
    info.add_argument("model", nargs="?", help="a model file (default: the bundled model)")
    info.set_defaults(handler=info_command)

    export = subparsers.add_parser("export-params", help="export the eight parameter arrays to .npz (float64)")
    export.add_argument("model")
    export.add_argument("out")
    export.set_defaults(handler=export_params_command)


def model_path_or_default(path: str | None) -> Path:
    if path:
        return Path(path)
    default = default_model_path()
    if not default.exists():
        raise StudioError(f"no model given and the bundled default model is missing ({default})")
    return default


# ------------------------------------------------------------------------------------ train
# `train` options whose defaults come from --recipe: option dest -> TrainConfig field (gibbs_steps:
# the model's). The tutorial's values are TrainConfig's and RnnRbmConfig's own defaults.
RECIPE_OPTIONS = {"epochs": "epochs", "lr": "learning_rate", "optimizer": "optimizer", "batch_seqs": "batch_seqs",
                  "lr_schedule": "lr_schedule", "rnn_pretrain_epochs": "rnn_pretrain_epochs",
                  "rbm_pretrain_epochs": "rbm_pretrain_epochs", "select_by": "select_by",
                  "min_updates": "min_updates", "cd_start": "cd_start", "weight_decay": "weight_decay",
                  "rnn_weight_decay": "rnn_weight_decay", "gibbs_steps": "gibbs_steps"}


def recipe_defaults(recipe: str) -> dict:
    """The values --recipe gives the options in RECIPE_OPTIONS, by option dest."""
    from ..model import RnnRbmConfig
    from ..train import QUALITY_GIBBS_STEPS, QUALITY_RECIPE, TrainConfig

    base = {**asdict(TrainConfig()), "gibbs_steps": RnnRbmConfig().gibbs_steps}
    if recipe == "quality":
        base.update(QUALITY_RECIPE, gibbs_steps=QUALITY_GIBBS_STEPS)
    return {dest: base[field] for dest, field in RECIPE_OPTIONS.items()}


def with_recipe_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """`train`'s options with the recipe's values where none was given on the command line."""
    given = {dest: getattr(args, dest) for dest in RECIPE_OPTIONS if getattr(args, dest, None) is not None}
    return argparse.Namespace(**{**vars(args), **recipe_defaults(args.recipe), **given})


def train_config_from_args(args: argparse.Namespace):
    """The TrainConfig that `train`'s options describe (the recipe's values where none is given)."""
    from ..train import TrainConfig

    args = with_recipe_defaults(args)
    return TrainConfig(epochs=args.epochs, learning_rate=args.lr, optimizer=args.optimizer, momentum=args.momentum,
                       batch_seqs=args.batch_seqs, seq_len=args.seq_len, rnn_lr_scale=args.rnn_lr_scale,
                       grad_clip=args.grad_clip, key_shift=args.key_shift, key_shift_step=args.key_shift_step,
                       key_shift_fraction=args.key_shift_fraction, patience=args.patience, seed=args.seed,
                       threads=args.threads, lr_schedule=args.lr_schedule, lr_min_ratio=args.lr_min_ratio,
                       rnn_pretrain_epochs=args.rnn_pretrain_epochs, rbm_pretrain_epochs=args.rbm_pretrain_epochs,
                       pretrain_lr=args.pretrain_lr, select_by=args.select_by, select_frames=args.select_frames,
                       min_updates=args.min_updates, cd_start=args.cd_start, weight_decay=args.weight_decay,
                       rnn_weight_decay=args.rnn_weight_decay, average=args.average)


def train_command(args: argparse.Namespace) -> int:
    import torch

    from ..corpus import load_corpus
    from ..model import RnnRbm, RnnRbmConfig
    from ..pianoroll import RollSettings
    from ..train import Trainer

    out = Path(args.out)
    settings = RollSettings(steps_per_beat=args.steps_per_beat, seconds_per_step=args.seconds_per_step,
                            transpose_to_c=args.transpose)
    if args.resume:
        from ..checkpoint import CheckpointError, load_checkpoint, roll_settings_of

        payload = load_checkpoint(out)
        if "optimizer_state" not in payload:  # say so before loading the data, which can take minutes
            raise CheckpointError(f"{out} holds a model but no training state to resume")
        settings = roll_settings_of(payload)
    bar = ProgressBar(sys.stderr)
    corpus = load_corpus(args.data, settings, progress=bar.loading)
    bar.finish()
    summary = corpus.summary()
    print(f"data: {summary}; train {len(corpus.train)}, valid {len(corpus.valid)}", file=sys.stderr)
    for skipped in corpus.skipped:
        print(f"  skipped {skipped}", file=sys.stderr)
    train_rolls = [p.roll for p in corpus.train]
    valid_rolls = [p.roll for p in corpus.valid]
    if args.resume:
        # without --epochs the run goes on to the epochs it was started with
        trainer = Trainer.resume(out, train_rolls, valid_rolls, epochs=args.epochs, progress=bar.training,
                                 data_description=str(args.data))
        print(f"resuming after epoch {trainer.epochs_completed}", file=sys.stderr)
    else:
        chosen = with_recipe_defaults(args)
        config = RnnRbmConfig(n_hidden=args.hidden, n_hidden_recurrent=args.recurrent, cd_k=args.cd_k,
                              learned_u0=args.learned_u0, gibbs_steps=chosen.gibbs_steps)
        train_config = train_config_from_args(chosen)
        torch.manual_seed(args.seed)
        trainer = Trainer(RnnRbm(config), train_rolls, valid_rolls, train_config, out, settings,
                          progress=bar.training, data_description=str(args.data))
    result = _run_until_done_or_interrupted(trainer, bar)
    print(f"{result.status}: {result.message}; model in {out}", file=sys.stderr)
    if result.status == "diverged":
        return 1
    if args.key_shift_candidate and not valid_rolls:
        print("no valid pieces to choose by: kept the first run, no candidate trained", file=sys.stderr)
    elif args.key_shift_candidate and not args.resume and result.status == "finished":
        torch.manual_seed(args.seed)  # the same initial weights as the first run
        candidate = Trainer(RnnRbm(trainer.model.config), train_rolls, valid_rolls,
                            replace(trainer.config, key_shift=args.key_shift_candidate),
                            out.with_name(f"{out.stem}.candidate{out.suffix}"), settings, progress=bar.training,
                            data_description=str(args.data))
        _train_candidate_and_keep_the_better(trainer, candidate, out, valid_rolls, bar)
    elif args.key_shift_candidate and args.resume:
        print("--key-shift-candidate is not run on --resume: train the candidate as its own run", file=sys.stderr)
    return 0


def _run_until_done_or_interrupted(trainer, bar: "ProgressBar"):
    previous = signal.getsignal(signal.SIGINT)

    def stop_on_interrupt(signum, frame):  # first Ctrl+C: stop cleanly and keep the checkpoint
        print("\nstopping after this update (Ctrl+C again to abort)...", file=sys.stderr)
        trainer.request_stop()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, stop_on_interrupt)
    try:
        result = trainer.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    bar.finish()
    return result


def _train_candidate_and_keep_the_better(first, candidate, out: Path, valid_rolls, bar: "ProgressBar") -> None:
    """Train `candidate` (same recipe, other augmentation); `out` ends up holding the better of the two
    by valid log-likelihood, the other is renamed NAME.runner-up.pt (files are renamed, never rewritten
    in place, so a crash midway loses neither)."""
    from ..checkpoint import load_checkpoint, load_model, save_checkpoint
    from ..recipe import valid_log_likelihoods

    shift = candidate.config.key_shift
    print(f"candidate: the same recipe with --key-shift {shift}", file=sys.stderr)
    result = _run_until_done_or_interrupted(candidate, bar)
    if result.status != "finished":
        print(f"candidate {result.status}: kept {out} (the candidate's checkpoint is {candidate.checkpoint_path})",
              file=sys.stderr)
        return
    frames = first.config.select_frames
    print(f"choosing on the first {frames} valid frames (AIS 16 x 1,000)...", file=sys.stderr)
    estimates = valid_log_likelihoods([load_model(out)[0], load_model(candidate.checkpoint_path)[0]], valid_rolls,
                                      frames=frames)
    scores = [e.mean_floored for e in estimates]
    keep_candidate = scores[1] > scores[0]
    choice = {"criterion": f"valid LL per step, AIS 16 x 1,000 (floored), first {frames} frames",
              "key_shift": [first.config.key_shift, shift], "valid_ll": scores,
              "kept": "key_shift %d" % (shift if keep_candidate else first.config.key_shift)}
    runner_up = out.with_name(f"{out.stem}.runner-up{out.suffix}")
    if keep_candidate:
        parked = out.with_name(f"{out.stem}.swapping{out.suffix}")
        os.replace(out, parked)
        os.replace(candidate.checkpoint_path, out)
        os.replace(parked, runner_up)
    else:
        os.replace(candidate.checkpoint_path, runner_up)
    for path in (out, runner_up):
        payload = load_checkpoint(path)
        payload["candidates"] = choice
        save_checkpoint(path, payload)
    print(f"valid LL: key shift {first.config.key_shift}: {scores[0]:.3f}, key shift {shift}: {scores[1]:.3f}; "
          f"kept {choice['kept']} in {out}, the other in {runner_up}", file=sys.stderr)


class ProgressBar:
    """One self-rewriting line on a terminal; plain lines per epoch elsewhere."""

    def __init__(self, stream):
        self.stream = stream
        self.interactive = stream.isatty()
        self.open_line = False

    def _write(self, text: str) -> None:
        if self.interactive:
            self.stream.write("\r\033[K" + text)
            self.open_line = True
        self.stream.flush()

    def loading(self, done: int, total: int, name: str) -> None:
        if self.interactive:
            self._write(f"loading {done}/{total} {name[:40]}")

    def training(self, p) -> None:
        width = 24
        filled = int(p.fraction * width)
        bar = "#" * filled + "-" * (width - filled)
        eta = _format_seconds(p.eta_seconds) if p.eta_seconds is not None else "?"
        line = (f"[{bar}] epoch {p.epoch}/{p.epochs} {p.step}/{p.steps_in_epoch} "
                f"{p.frames_per_second:,.0f} frames/s monitor {p.monitor:.3f} ETA {eta}")
        if p.event == "step":
            self._write(line)
        elif p.event == "epoch":
            valid = f" valid {p.valid_monitor:.3f}" if p.valid_monitor is not None else ""
            self.finish()
            self.stream.write(f"epoch {p.epoch}/{p.epochs}: monitor {p.monitor:.3f}{valid} "
                              f"({p.frames_per_second:,.0f} frames/s, elapsed "
                              f"{_format_seconds(p.elapsed_seconds)}, ETA {eta})\n")
            self.stream.flush()
        elif p.event == "diverged":
            self.finish()
            self.stream.write(p.message + "\n")

    def finish(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# --------------------------------------------------------------------------------- generate
def generate_command(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model, roll_settings_of
    from ..pianoroll import read_midi, roll_to_midi

    path = model_path_or_default(args.model)
    model, payload = load_model(path)
    settings = roll_settings_of(payload)
    primer = None
    if args.primer:
        primer = read_midi(args.primer, settings).roll
    if args.frames <= 0:
        raise StudioError("--frames must be positive")
    if args.temperature <= 0:
        raise StudioError("--temperature must be positive")
    if args.bpm is not None and not args.bpm >= 3.6:  # else mido's ValueError on the tempo was a traceback
        raise StudioError("--bpm must be at least 3.6 (the slowest tempo a MIDI file can hold)")
    started = time.perf_counter()
    roll = model.generate(args.frames, primer=primer, seed=args.seed, gibbs_steps=args.gibbs_steps,
                          inverse_temperature=1.0 / args.temperature)
    seconds = time.perf_counter() - started
    steps_per_beat = settings.steps_per_beat if not settings.seconds_per_step else 1
    # A seconds-grid model's steps last seconds_per_step: at one step per beat that is 60/s bpm
    # (a fixed 120 bpm played a 0.3 s model 5/3 too slowly).
    bpm = args.bpm or (60.0 / settings.seconds_per_step if settings.seconds_per_step else 120.0)
    try:
        roll_to_midi(roll, args.out, bpm=bpm, steps_per_beat=steps_per_beat)
    except OSError as error:
        raise StudioError(f"cannot write {args.out}: {error.strerror or error}") from None
    notes = int(np.count_nonzero(np.diff(np.vstack([np.zeros((1, roll.shape[1])), roll]), axis=0) > 0))
    print(f"wrote {args.out}: {args.frames} steps, {notes} notes ({seconds * 1e3 / args.frames:.2f} ms per step)")
    return 0


# ------------------------------------------------------------------------------------- info
def info_command(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint, roll_settings_of

    path = model_path_or_default(args.model)
    payload = load_checkpoint(path)
    config = payload.get("model_config", {})
    print(f"model: {path}")
    print("  " + ", ".join(f"{k} {v}" for k, v in config.items()))
    n_params = sum(v.numel() for v in payload["model_state"].values())
    print(f"  parameters: {n_params:,}")
    print(f"data: {payload.get('data') or '-'}")
    print(f"  time grid: {roll_settings_of(payload).describe()}")
    progress = payload.get("progress")
    if progress:
        train = payload.get("train_config", {})
        print(f"training: {progress.get('epochs_completed', 0)}/{train.get('epochs', '?')} epochs, "
              f"{_format_seconds(progress.get('elapsed_seconds', 0))} of training")
        print("  " + ", ".join(f"{k} {v}" for k, v in train.items()))
        best = progress.get("best_valid_monitor")
        history = payload.get("history") or []
        if history:
            last = history[-1]
            shown = (("monitor", "monitor"), ("valid", "valid_monitor"))
            readings = [f"{label} {last[key]:.3f}" for label, key in shown if last.get(key) is not None]
            if readings:
                print("  last epoch: " + ", ".join(readings))
        if best is not None:
            print(f"  best valid monitor: {best:.3f}")
    for key in ("history_note", "evaluation", "recipe", "candidates"):
        if payload.get(key):
            print(f"{key}: {payload[key]}")
    print(f"saved: {payload.get('saved_at', '?')}")
    return 0


def export_params_command(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model

    model, _ = load_model(args.model)
    arrays = model.tutorial_arrays()
    out = Path(args.out)
    try:
        with open(out, "wb") as handle:
            np.savez(handle, **arrays)
    except OSError as error:
        raise StudioError(f"cannot write {out}: {error.strerror or error}") from None
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0
