"""The `train` command: options (each range-checked), the run, its signals and the key-shift candidate.

Every option defaults to None so that the command knows which were given: the real defaults come
from --recipe and the engine's dataclasses (with_recipe_defaults), and --resume refuses the options
that a saved run fixes instead of silently training with the saved values.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import asdict, replace
from pathlib import Path

from ..errors import StudioError
from ..limits import MODEL_FIELDS, ROLL_FIELDS, SEED_MAX, THREADS_MAX, TRAIN_FIELDS
from .options import float_in, from_limits, int_in

log = logging.getLogger(__name__)


def _train(name: str):
    return from_limits(TRAIN_FIELDS, name)


def _span(name: str, table=TRAIN_FIELDS) -> str:
    return from_limits(table, name).span


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train a model on a MIDI folder, a MIDI file or a benchmark pickle",
        description="Train the RNN-RBM. Ctrl+C, SIGTERM or SIGHUP stop it after the current update and save; "
                    "--resume then continues exactly where it stopped. Numbers outside the ranges shown are "
                    "refused.")
    add = train.add_argument
    add("data", metavar="DATA", help="a folder of MIDI files, a .mid file, or an ICML-2012 .pickle")
    add("--out", required=True, help="the checkpoint to write (every epoch, atomically); an existing file is "
                                     "only continued (--resume) or replaced (--force)")
    add("--force", action="store_true", help="replace an existing --out file with a new run")
    add("--resume", action="store_true", help="continue the run saved in --out (with its own settings: only "
                                              "--epochs and --threads may be given)")
    add("--recipe", choices=("tutorial", "quality"), default=None,
        help="the defaults of the options marked [recipe]: the Theano tutorial's training, or the quality "
             "recipe that made the bundled model (docs/quality.md); options given on the command line win "
             "(default: tutorial)")
    add("--epochs", type=_train("epochs"), help=f"[recipe] passes over the data ({_span('epochs')}; tutorial 200)")
    add("--hidden", type=from_limits(MODEL_FIELDS, "n_hidden"),
        help=f"RBM hidden units ({_span('n_hidden', MODEL_FIELDS)}; default 150)")
    add("--recurrent", type=from_limits(MODEL_FIELDS, "n_hidden_recurrent"),
        help=f"RNN units ({_span('n_hidden_recurrent', MODEL_FIELDS)}; default 100)")
    add("--lr", type=_train("learning_rate"),
        help=f"[recipe] learning rate ({_span('learning_rate')}; tutorial 0.001)")
    add("--cd-k", type=from_limits(MODEL_FIELDS, "cd_k"),
        help=f"Gibbs steps of CD-k ({_span('cd_k', MODEL_FIELDS)}; default 15)")
    add("--gibbs-steps", type=from_limits(MODEL_FIELDS, "gibbs_steps"),
        help=f"[recipe] Gibbs steps per generated frame, stored with the model "
             f"({_span('gibbs_steps', MODEL_FIELDS)}; tutorial 25)")
    add("--optimizer", choices=("sgd", "adam"), help="[recipe] (tutorial sgd)")
    add("--momentum", type=_train("momentum"), help=f"SGD momentum ({_span('momentum')}; default 0)")
    add("--batch-seqs", type=_train("batch_seqs"),
        help=f"[recipe] subsequences per update ({_span('batch_seqs')}; tutorial 1)")
    add("--seq-len", type=_train("seq_len"), help=f"frames per subsequence ({_span('seq_len')}; default 100)")
    add("--rnn-lr-scale", type=_train("rnn_lr_scale"),
        help=f"RNN learning rate / RBM learning rate ({_span('rnn_lr_scale')}; default 1)")
    clip = float_in(0, 1e6, low_open=True)
    add("--grad-clip", type=clip, help=f"clip the gradient norm ({clip.span}; default off)")
    add("--key-shift", type=_train("key_shift"),
        help=f"augment: random transposition up to +-N steps ({_span('key_shift')}; default 0)")
    add("--key-shift-step", type=_train("key_shift_step"),
        help=f"semitones per key-shift step (12: octaves, which keep each piece's key; {_span('key_shift_step')}; "
             f"default 1)")
    add("--key-shift-fraction", type=_train("key_shift_fraction"),
        help=f"transpose during this fraction of the epochs only; the rest train on the pieces' own keys "
             f"({_span('key_shift_fraction')}; default 1: all epochs)")
    add("--key-shift-candidate", type=from_limits(TRAIN_FIELDS, "key_shift"), metavar="N",
        help="after the run, train it again with --key-shift N and keep whichever scores the better valid "
             "log-likelihood (AIS 16 x 1,000 on --select-frames frames); the other is kept beside --out as "
             f"NAME.runner-up.pt ({_span('key_shift')}; default 0: one run)")
    add("--patience", type=int_in(1, 100_000),
        help="stop after N epochs without a better valid monitor (1..100000; default off)")
    add("--learned-u0", action="store_true", default=None, help="learn the initial RNN state")
    add("--lr-schedule", choices=("constant", "cosine"),
        help="[recipe] cosine: decay the learning rates to --lr-min-ratio of themselves by the last epoch "
             "(tutorial constant)")
    add("--lr-min-ratio", type=_train("lr_min_ratio"), help=f"({_span('lr_min_ratio')}; default 0.05)")
    add("--rnn-pretrain-epochs", type=_train("rnn_pretrain_epochs"),
        help=f"[recipe] first train the RNN alone to predict each frame's notes independently (exact, fast; "
             f"{_span('rnn_pretrain_epochs')}; tutorial 0)")
    add("--rbm-pretrain-epochs", type=_train("rbm_pretrain_epochs"),
        help=f"[recipe] first train the RBM alone on the frames, shuffled (CD-k; {_span('rbm_pretrain_epochs')}; "
             f"tutorial 0). A run stopped during pretraining pretrains again from the start on --resume")
    add("--pretrain-lr", type=_train("pretrain_lr"),
        help=f"Adam learning rate of the pretraining ({_span('pretrain_lr')}; default 0.003)")
    add("--select-by", choices=("monitor", "ll"),
        help="[recipe] keep the best epoch by the tutorial's monitor or by the log-likelihood (AIS) of the first "
             "--select-frames valid frames (tutorial monitor)")
    add("--select-frames", type=_train("select_frames"), help=f"({_span('select_frames')}; default 2000)")
    add("--min-updates", type=_train("min_updates"),
        help=f"[recipe] train at least this many updates: raises --epochs on a small corpus "
             f"({_span('min_updates')}; tutorial 0)")
    add("--cd-start", choices=("data", "persistent", "previous", "silence"),
        help="[recipe] where CD's negative chains start: the data (the tutorial's CD-k), or where each frame's "
             "chain stopped the epoch before (persistent)")
    add("--weight-decay", type=_train("weight_decay"),
        help=f"[recipe] decay of W each update, times the learning rate ({_span('weight_decay')}; tutorial 0)")
    add("--rnn-weight-decay", type=_train("rnn_weight_decay"),
        help=f"[recipe] decay of the RNN's weight matrices each update, times the RNN's learning rate "
             f"({_span('rnn_weight_decay')}; tutorial 0)")
    add("--average", type=_train("average"),
        help=f"keep a moving average of the weights with this decay per update (e.g. 0.999) and validate, "
             f"select and save the average ({_span('average')}; default 0: off)")
    add("--steps-per-beat", type=from_limits(ROLL_FIELDS, "steps_per_beat"),
        help=f"time grid for MIDI input (2 = eighths; {_span('steps_per_beat', ROLL_FIELDS)}; default 2)")
    add("--seconds-per-step", type=from_limits(ROLL_FIELDS, "seconds_per_step"),
        help=f"use a seconds grid instead (the tutorial used 0.3; {_span('seconds_per_step', ROLL_FIELDS)})")
    add("--transpose", action="store_true", default=None, help="transpose MIDI input to C major / C minor")
    add("--seed", type=int_in(0, SEED_MAX), help=f"(0..{SEED_MAX}; default 0)")
    add("--threads", type=int_in(1, THREADS_MAX), help=f"torch threads (1..{THREADS_MAX})")
    # what a resumed run may still be told: how long to go on, and how many threads to use
    changeable = {"help", "data", "out", "force", "resume", "epochs", "threads"}
    fixed = {a.dest: a.option_strings[-1] for a in train._actions if a.dest not in changeable and a.option_strings}
    train.set_defaults(handler=train_command, fixed_on_resume=fixed)


# ------------------------------------------------------------------------------------ defaults
# `train` options whose defaults come from --recipe: option dest -> TrainConfig field (gibbs_steps:
# the model's). The tutorial's values are TrainConfig's and RnnRbmConfig's own defaults.
RECIPE_OPTIONS = {"epochs": "epochs", "lr": "learning_rate", "optimizer": "optimizer", "batch_seqs": "batch_seqs",
                  "lr_schedule": "lr_schedule", "rnn_pretrain_epochs": "rnn_pretrain_epochs",
                  "rbm_pretrain_epochs": "rbm_pretrain_epochs", "select_by": "select_by",
                  "min_updates": "min_updates", "cd_start": "cd_start", "weight_decay": "weight_decay",
                  "rnn_weight_decay": "rnn_weight_decay", "gibbs_steps": "gibbs_steps"}
# the others: option dest -> the field of TrainConfig (train), RnnRbmConfig (model) or RollSettings (grid)
TRAIN_OPTIONS = {"momentum": "momentum", "seq_len": "seq_len", "rnn_lr_scale": "rnn_lr_scale",
                 "grad_clip": "grad_clip", "key_shift": "key_shift", "key_shift_step": "key_shift_step",
                 "key_shift_fraction": "key_shift_fraction", "patience": "patience", "lr_min_ratio": "lr_min_ratio",
                 "pretrain_lr": "pretrain_lr", "select_frames": "select_frames", "average": "average",
                 "seed": "seed", "threads": "threads"}
MODEL_OPTIONS = {"hidden": "n_hidden", "recurrent": "n_hidden_recurrent", "cd_k": "cd_k", "learned_u0": "learned_u0"}
GRID_OPTIONS = {"steps_per_beat": "steps_per_beat", "seconds_per_step": "seconds_per_step",
                "transpose": "transpose_to_c"}


def recipe_defaults(recipe: str) -> dict:
    """The values --recipe gives the options in RECIPE_OPTIONS, by option dest."""
    from ..model import RnnRbmConfig
    from ..training.trainer import QUALITY_GIBBS_STEPS, QUALITY_RECIPE, TrainConfig

    base = {**asdict(TrainConfig()), "gibbs_steps": RnnRbmConfig().gibbs_steps}
    if recipe == "quality":
        base.update(QUALITY_RECIPE, gibbs_steps=QUALITY_GIBBS_STEPS)
    return {dest: base[field] for dest, field in RECIPE_OPTIONS.items()}


def with_recipe_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """`train`'s options with the recipe's (and the engine's) values where none was given."""
    from ..model import RnnRbmConfig
    from ..music.pianoroll import RollSettings
    from ..training.trainer import TrainConfig

    recipe = args.recipe or "tutorial"
    train, model, grid = asdict(TrainConfig()), asdict(RnnRbmConfig()), asdict(RollSettings())
    defaults = {**{dest: train[f] for dest, f in TRAIN_OPTIONS.items()},
                **{dest: model[f] for dest, f in MODEL_OPTIONS.items()},
                **{dest: grid[f] for dest, f in GRID_OPTIONS.items()},
                **recipe_defaults(recipe), "key_shift_candidate": 0, "recipe": recipe}
    given = {dest: value for dest, value in vars(args).items() if value is not None}
    return argparse.Namespace(**{**defaults, **given})


def train_config_from_args(args: argparse.Namespace):
    """The TrainConfig that `train`'s options describe (the recipe's values where none is given)."""
    from ..training.trainer import TrainConfig

    args = with_recipe_defaults(args)
    return TrainConfig(learning_rate=args.lr, **{f: getattr(args, dest) for dest, f in RECIPE_OPTIONS.items()
                                                 if dest not in ("lr", "gibbs_steps")},
                       **{f: getattr(args, dest) for dest, f in TRAIN_OPTIONS.items()})


def refuse_changes_on_resume(args: argparse.Namespace) -> None:
    """--resume trains the saved run's own model on its own grid with its own settings: an option that
    would change them is refused rather than silently ignored."""
    given = [flag for dest, flag in getattr(args, "fixed_on_resume", {}).items() if getattr(args, dest, None)
             is not None]
    if args.resume and given:
        raise StudioError(f"--resume continues {args.out} with its own settings, which {', '.join(given)} "
                          f"cannot change (only --epochs and --threads can); leave them out, or train a new model")


# --------------------------------------------------------------------------------------- train
def train_command(args: argparse.Namespace) -> int:
    from ..training.checkpoint import check_writable, load_checkpoint, roll_settings_of
    from ..music.corpus import load_corpus
    from ..model import RnnRbmConfig
    from ..music.pianoroll import RollSettings
    from ..training.run_lock import output_lock
    from ..training.trainer import Trainer, build_model
    from ..training.state import check_resumable

    refuse_changes_on_resume(args)
    chosen = with_recipe_defaults(args)
    out = Path(args.out)
    # before minutes of loading and hours of training: a run that cannot save its work must not start
    check_writable(out)
    if chosen.key_shift_candidate and not args.resume:
        for name in (f"{out.stem}.candidate{out.suffix}", f"{out.stem}.runner-up{out.suffix}"):
            check_writable(out.with_name(name))
    with output_lock(out):  # held through the candidate run and the choice between the two
        if args.resume:
            payload = load_checkpoint(out)
            check_resumable(payload, out)  # before loading the data, which can take minutes
            settings = roll_settings_of(payload)
        elif out.exists() and not args.force:
            raise StudioError(f"{out} already exists: --resume continues it, --force replaces it with a new run")
        else:
            settings = RollSettings(steps_per_beat=chosen.steps_per_beat, seconds_per_step=chosen.seconds_per_step,
                                    transpose_to_c=chosen.transpose)
        bar = ProgressBar(sys.stderr)
        corpus = load_corpus(args.data, settings, progress=bar.loading)
        bar.finish()
        print(f"data: {corpus.summary()}; train {len(corpus.train)}, valid {len(corpus.valid)}", file=sys.stderr)
        for skipped in corpus.skipped:
            print(f"  skipped {skipped}", file=sys.stderr)
        train_rolls = [p.roll for p in corpus.train]
        valid_rolls = [p.roll for p in corpus.valid]
        if args.resume:
            # without --epochs the run goes on to the epochs it was started with
            trainer = Trainer.resume(out, train_rolls, valid_rolls, epochs=args.epochs, progress=bar.training,
                                     data_description=str(args.data))
            partial = trainer.resume_epoch
            print(f"resuming after epoch {trainer.epochs_completed}"
                  + (f", update {partial['step']} of epoch {partial['epoch']}" if partial else ""), file=sys.stderr)
        else:
            config = RnnRbmConfig(n_hidden=chosen.hidden, n_hidden_recurrent=chosen.recurrent, cd_k=chosen.cd_k,
                                  learned_u0=chosen.learned_u0, gibbs_steps=chosen.gibbs_steps)
            trainer = Trainer(build_model(config, chosen.seed), train_rolls, valid_rolls,
                              train_config_from_args(chosen), out, settings, progress=bar.training,
                              data_description=str(args.data))
        result, signum = run_until_done_or_stopped(trainer, bar)
        print(f"{result.status}: {result.message}; model in {out}", file=sys.stderr)
        if signum is not None:
            return 128 + signum  # the shell's convention for "ended by this signal" (after saving)
        if result.status == "diverged":
            return 1
        if chosen.key_shift_candidate and not valid_rolls:
            print("no valid pieces to choose by: kept the first run, no candidate trained", file=sys.stderr)
        elif chosen.key_shift_candidate and result.status == "finished":
            candidate = Trainer(build_model(trainer.model.config, chosen.seed),  # the first run's initial weights
                                train_rolls, valid_rolls,
                                replace(trainer.config, key_shift=chosen.key_shift_candidate),
                                out.with_name(f"{out.stem}.candidate{out.suffix}"), settings, progress=bar.training,
                                data_description=str(args.data))
            return _train_candidate_and_keep_the_better(trainer, candidate, out, valid_rolls, bar)
    return 0


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def run_until_done_or_stopped(trainer, bar: "ProgressBar"):
    """trainer.run(), where Ctrl+C, SIGTERM and SIGHUP stop it after the current update with a checkpoint
    (a second one acts as it would have: aborts). Returns (result, the stopping signal or None)."""
    caught: list[int] = []
    previous = {}

    def stop(signum, frame):
        bar.finish()
        print(f"\n{signal.Signals(signum).name}: stopping after this update and saving "
              f"(the same signal again aborts)...", file=sys.stderr)
        caught.append(signum)
        trainer.request_stop()
        for number, handler in previous.items():
            signal.signal(number, handler)

    for number in STOP_SIGNALS:
        handler = signal.getsignal(number)
        if handler is not signal.SIG_IGN:  # nohup's ignored SIGHUP stays ignored
            previous[number] = signal.signal(number, stop)
    try:
        result = trainer.run()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        bar.finish()
    return result, (caught[0] if caught else None)


def _train_candidate_and_keep_the_better(first, candidate, out: Path, valid_rolls, bar: "ProgressBar") -> int:
    """Train `candidate` (same recipe, other augmentation); `out` ends up holding the better of the two
    by valid log-likelihood, the other is renamed NAME.runner-up.pt (files are renamed, never rewritten
    in place, so a crash midway loses neither)."""
    from ..training.checkpoint import load_checkpoint, load_model, save_checkpoint
    from ..training.recipes import valid_log_likelihoods

    shift = candidate.config.key_shift
    print(f"candidate: the same recipe with --key-shift {shift}", file=sys.stderr)
    result, signum = run_until_done_or_stopped(candidate, bar)
    if result.status != "finished":
        print(f"candidate {result.status}: kept {out} (the candidate's checkpoint is {candidate.checkpoint_path})",
              file=sys.stderr)
        return 128 + signum if signum is not None else 0
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
    try:
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
    except OSError as error:
        raise StudioError(f"cannot keep the better run: {error.strerror or error} (the runs' files are {out}, "
                          f"{candidate.checkpoint_path} and {runner_up})") from None
    print(f"valid LL: key shift {first.config.key_shift}: {scores[0]:.3f}, key shift {shift}: {scores[1]:.3f}; "
          f"kept {choice['kept']} in {out}, the other in {runner_up}", file=sys.stderr)
    return 0


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
        eta = format_seconds(p.eta_seconds) if p.eta_seconds is not None else "?"
        line = (f"[{bar}] epoch {p.epoch}/{p.epochs} {p.step}/{p.steps_in_epoch} "
                f"{p.frames_per_second:,.0f} frames/s monitor {p.monitor:.3f} ETA {eta}")
        if p.event == "step":
            self._write(line)
        elif p.event == "epoch":
            valid = f" valid {p.valid_monitor:.3f}" if p.valid_monitor is not None else ""
            self.finish()
            self.stream.write(f"epoch {p.epoch}/{p.epochs}: monitor {p.monitor:.3f}{valid} "
                              f"({p.frames_per_second:,.0f} frames/s, elapsed "
                              f"{format_seconds(p.elapsed_seconds)}, ETA {eta})\n")
            self.stream.flush()
        elif p.event == "diverged":
            self.finish()
            self.stream.write(p.message + "\n")

    def finish(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
