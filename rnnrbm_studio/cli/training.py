"""The `train` command: options (each range-checked), the run, its signals and the key-shift candidate.

The options for the model's and the training's settings are generated from the fields of RnnRbmConfig
and TrainConfig (name, help, and whether a recipe sets them) with the ranges of limits.py, so the
command line cannot drift from the engine. Every option defaults to None so that the command knows
which were given: the real defaults come from --recipe (training/recipes.py, the same `configs` the
window uses), and --resume refuses the options that a saved run fixes instead of silently training
with the saved values.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from ..errors import StudioError
from ..limits import MODEL_FIELDS, ROLL_FIELDS, TRAIN_CLI_RANGES, TRAIN_FIELDS
from ..training.progress import eta_text, format_seconds, ll_text
from .options import from_limits, from_rule, shown

log = logging.getLogger(__name__)

CANDIDATE_FRAMES = 2000  # the key-shift candidate's choice: once per run, so it can afford more frames
PRINT_EVERY_S = 10.0  # off a terminal, pretraining prints a line at most this often (and at each phase's end)

# `train` options for RollSettings' fields (its module has no option metadata): option dest -> field
GRID_OPTIONS = {"steps_per_beat": "steps_per_beat", "seconds_per_step": "seconds_per_step",
                "transpose": "transpose_to_c"}


def setting_fields() -> list[tuple[dataclasses.Field, object]]:
    """The settings that `train` has options for, each with its rule (the range of its option)."""
    from ..model import RnnRbmConfig
    from ..training.config import TrainConfig

    settings = [(f, MODEL_FIELDS[f.name]) for f in dataclasses.fields(RnnRbmConfig)]
    settings += [(f, TRAIN_CLI_RANGES.get(f.name, TRAIN_FIELDS[f.name])) for f in dataclasses.fields(TrainConfig)]
    return [(f, rule) for f, rule in settings if "internal" not in f.metadata]


def option_of(setting: dataclasses.Field) -> str:
    return setting.metadata.get("option") or "--" + setting.name.replace("_", "-")


def _defaults_shown(setting: dataclasses.Field) -> tuple[str, str]:
    """("[recipe] " or "", the default(s) as --help shows them) of a setting."""
    from ..training.recipes import RECIPES, recipe_fields, recipe_value

    if setting.name in recipe_fields():
        return "[recipe] ", ", ".join(f"{recipe} {shown(recipe_value(recipe, setting.name))}" for recipe in RECIPES)
    if setting.default is None and "unset" in setting.metadata:
        return "", f"default: {setting.metadata['unset']}"
    return "", f"default {shown(setting.default)}"


def _add_setting(parser: argparse.ArgumentParser, setting: dataclasses.Field, rule) -> None:
    marker, defaults = _defaults_shown(setting)
    text = marker + setting.metadata["help"]
    flag = option_of(setting)
    if rule is bool:
        parser.add_argument(flag, dest=setting.name, action="store_true", default=None, help=f"{text} ({defaults})")
    elif all(isinstance(choice, str) for choice in rule) and rule[0] != "open":
        parser.add_argument(flag, dest=setting.name, choices=rule, help=f"{text} ({defaults})")
    else:
        kind = from_rule(rule)
        parser.add_argument(flag, dest=setting.name, type=kind, metavar=flag[2:].replace("-", "_").upper(),
                            help=f"{text} ({kind.span}; {defaults})")


def register(subparsers) -> None:
    from ..training.recipes import DEFAULT_RECIPE, RECIPES

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
    add("--recipe", choices=tuple(RECIPES), default=None,
        help="the defaults of the options marked [recipe]: the Theano tutorial's training, or the quality "
             "recipe that made the bundled model (docs/quality.md); options given on the command line win "
             f"(default: {DEFAULT_RECIPE})")
    for setting, rule in setting_fields():
        _add_setting(train, setting, rule)
    candidate = from_rule(TRAIN_FIELDS["key_shift"])
    add("--key-shift-candidate", type=candidate, metavar="N",
        help="after the run, train it again with --key-shift N and keep whichever scores the better valid "
             f"log-likelihood (AIS 16 x 1,000 on the first {CANDIDATE_FRAMES:,} valid frames, or --select-frames if "
             "more); the other is kept beside --out as "
             f"NAME.runner-up.pt ({candidate.span}; default 0: one run)")
    add("--steps-per-beat", type=from_limits(ROLL_FIELDS, "steps_per_beat"),
        help=f"time grid for MIDI input (2 = eighths; {from_limits(ROLL_FIELDS, 'steps_per_beat').span}; "
             f"default 2)")
    add("--seconds-per-step", type=from_limits(ROLL_FIELDS, "seconds_per_step"),
        help=f"use a seconds grid instead (the tutorial used 0.3; "
             f"{from_limits(ROLL_FIELDS, 'seconds_per_step').span})")
    add("--transpose", action="store_true", default=None, help="transpose MIDI input to C major / C minor")
    # what a resumed run may still be told: how long to go on, and how many threads to use
    changeable = {"help", "data", "out", "force", "resume", "epochs", "threads"}
    fixed = {a.dest: a.option_strings[-1] for a in train._actions if a.dest not in changeable and a.option_strings}
    train.set_defaults(handler=train_command, fixed_on_resume=fixed)


# ------------------------------------------------------------------------------------ settings
def settings_from_args(args: argparse.Namespace):
    """(RnnRbmConfig, TrainConfig, RollSettings) that `train`'s options describe: the recipe's values
    (training/recipes.py) where an option was not given."""
    from ..music.pianoroll import RollSettings
    from ..training.recipes import DEFAULT_RECIPE, configs

    names = {setting.name for setting, _ in setting_fields()}
    given = {name: value for name, value in vars(args).items() if name in names and value is not None}
    if "epochs" in given and "min_updates" not in given:
        given["min_updates"] = 0  # given options win: --epochs N trains N epochs, whatever the recipe's minimum
    model, train = configs(args.recipe or DEFAULT_RECIPE, **given)
    grid = RollSettings(**{field: getattr(args, dest) for dest, field in GRID_OPTIONS.items()
                           if getattr(args, dest, None) is not None})
    return model, train, grid


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
    from ..music.corpus import load_corpus
    from ..music.natural_order import natural_order_key
    from ..training.candidates import candidate_path, runner_up_path
    from ..music.atomic_files import check_writable
    from ..training.checkpoint import load_checkpoint
    from ..training.run_lock import output_lock
    from ..training.state import check_resumable
    from ..training.trainer import Trainer, build_model

    refuse_changes_on_resume(args)
    model_config, train_config, settings = settings_from_args(args)
    shift_candidate = args.key_shift_candidate or 0
    out = Path(args.out)
    # before minutes of loading and hours of training: a run that cannot save its work must not start
    check_writable(out)
    if shift_candidate and not args.resume:
        for path in (candidate_path(out), runner_up_path(out)):
            check_writable(path)
    with output_lock(out):  # held through the candidate run and the choice between the two
        if args.resume:
            checkpoint = load_checkpoint(out)
            check_resumable(checkpoint, out)  # before loading the data, which can take minutes
            settings = checkpoint.data.roll_settings
        elif out.exists() and not args.force:
            raise StudioError(f"{out} already exists: --resume continues it, --force replaces it with a new run")
        bar = ProgressBar(sys.stderr)
        corpus = load_corpus(args.data, settings, progress=bar.loading)
        bar.finish()
        print(f"data: {corpus.summary()}; train {len(corpus.train)}, valid {len(corpus.valid)}", file=sys.stderr)
        for skipped in sorted(corpus.skipped, key=lambda skipped: natural_order_key(skipped.path)):
            print(f"  skipped {skipped}", file=sys.stderr)
        train_rolls = [p.roll for p in corpus.train]
        valid_rolls = [p.roll for p in corpus.valid]
        if args.resume:
            # without --epochs the run goes on to the epochs it was started with
            trainer = Trainer.resume(out, train_rolls, valid_rolls, epochs=args.epochs, progress=bar.training,
                                     data_description=Path(args.data).name)
            partial = trainer.resume_epoch
            print(f"resuming after epoch {trainer.epochs_completed}"
                  + (f", update {partial.step} of epoch {partial.epoch}" if partial else ""), file=sys.stderr)
        else:
            trainer = Trainer(build_model(model_config, train_config.seed), train_rolls, valid_rolls, train_config,
                              out, settings, progress=bar.training, data_description=Path(args.data).name)
        result, signum = run_until_done_or_stopped(trainer, bar)
        print(f"{result.status}: {result.message}; model in {out}", file=sys.stderr)
        if signum is not None:
            return 128 + signum  # the shell's convention for "ended by this signal" (after saving)
        if result.status == "diverged":
            return 1
        if shift_candidate and not valid_rolls:
            print("no valid pieces to choose by: kept the first run, no candidate trained", file=sys.stderr)
        elif shift_candidate and result.status == "finished":
            return _train_candidate_and_keep_the_better(trainer, shift_candidate, out, bar, Path(args.data).name)
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


def _train_candidate_and_keep_the_better(first, shift: int, out: Path, bar: "ProgressBar", data: str) -> int:
    """Train the candidate run (the same recipe with --key-shift `shift`) and keep the better of the two
    (training/candidates.py chooses and moves the files; this prints)."""
    from ..training.candidates import candidate_trainer, keep_the_better, runner_up_path

    print(f"candidate: the same recipe with --key-shift {shift}", file=sys.stderr)
    candidate = candidate_trainer(first, shift, progress=bar.training, data_description=data)
    result, signum = run_until_done_or_stopped(candidate, bar)
    if result.status != "finished":
        print(f"candidate {result.status}: kept {out} (the candidate's checkpoint is {candidate.checkpoint_path})",
              file=sys.stderr)
        return 128 + signum if signum is not None else 0
    frames = max(first.config.select_frames, CANDIDATE_FRAMES)
    print(f"choosing on the first {frames:,} valid frames (AIS 16 x 1,000)...", file=sys.stderr)
    choice = keep_the_better(out, candidate.checkpoint_path, (first.config.key_shift, shift), first.valid_rolls,
                             frames)
    first_score, candidate_score = choice.scores
    print(f"valid LL: key shift {first.config.key_shift}: {first_score:.3f}, key shift {shift}: "
          f"{candidate_score:.3f}; kept {choice.kept} in {out}, the other in {runner_up_path(out)}", file=sys.stderr)
    return 0


class ProgressBar:
    """One self-rewriting line on a terminal; plain lines per epoch elsewhere (and for pretraining, a line
    every PRINT_EVERY_S at most), so that a log shows a run that is alive."""

    def __init__(self, stream):
        self.stream = stream
        self.interactive = stream.isatty()
        self.open_line = False
        self.printed_at = -PRINT_EVERY_S

    def _write(self, text: str) -> None:
        if self.interactive:
            self.stream.write("\r\033[K" + text)
            self.open_line = True
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.finish()
        self.stream.write(text + "\n")
        self.stream.flush()

    def loading(self, done: int, total: int, name: str) -> None:
        if self.interactive:
            self._write(f"loading {done}/{total} {name[:40]}")

    def training(self, p) -> None:
        width = 24
        filled = int(p.fraction * width)
        bar = "#" * filled + "-" * (width - filled)
        eta = eta_text(p)
        if p.event == "start":
            self._line(f"plan: {p.message}")
        elif p.event == "pretraining":
            line = (f"[{bar}] {p.phase} epoch {p.epoch}/{p.epochs}{' at most' if p.eta_at_most else ''} "
                    f"{p.step}/{p.steps_in_epoch} ETA {eta}")
            if self.interactive:
                self._write(line)
            elif p.step == p.steps_in_epoch and (p.epoch == 1 or p.elapsed_seconds - self.printed_at >= PRINT_EVERY_S):
                self.printed_at = p.elapsed_seconds
                self._line(f"{p.phase} epoch {p.epoch}/{p.epochs}{' at most' if p.eta_at_most else ''}"
                           + (f": {p.message}" if p.message else "") + f" (phase ETA {eta})")
        elif p.event == "step":
            self._write(f"[{bar}] epoch {p.epoch}/{p.epochs} {p.step}/{p.steps_in_epoch} "
                        f"{p.frames_per_second:,.0f} frames/s monitor {p.monitor:.3f} ETA {eta}")
        elif p.event == "epoch":
            valid = f", valid monitor {p.valid_monitor:.3f}" if p.valid_monitor is not None else ""
            if p.valid_ll is not None:
                valid += f", valid LL {ll_text(p.valid_ll, p.valid_ll_se)}"
            kept = f", kept epoch {p.kept_epoch}" if p.kept_epoch is not None else ""
            self._line(f"epoch {p.epoch}/{p.epochs}: monitor {p.monitor:.3f}{valid}{kept} "
                       f"({p.frames_per_second:,.0f} frames/s, elapsed {format_seconds(p.elapsed_seconds)}, ETA {eta})")
        elif p.event == "diverged":
            self._line(p.message)

    def finish(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
