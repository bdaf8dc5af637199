"""Commands over the engine: generate, info, export-params (and train, from training.py)."""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..assets import default_model_path
from ..errors import StudioError
from ..limits import FRAMES_MAX, MODEL_FIELDS, SEED_MAX
from ..music.dynamics import SUMMARY as DYNAMICS
from .options import float_in, from_limits, int_in

MIN_BPM, MAX_BPM = 3.6, 1000.0  # mido cannot store a tempo slower than 3.6 bpm (24-bit microseconds per beat)
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    from . import training

    training.register(subparsers)
    generate = subparsers.add_parser("generate", help="write a generated piece to a .mid file")
    generate.add_argument("model", nargs="?", help="a model file (default: the bundled model)")
    generate.add_argument("--out", required=True, help="the .mid file to write")
    generate.add_argument("--frames", type=int_in(1, FRAMES_MAX), default=400,
                          help=f"steps to generate (1..{FRAMES_MAX}; default 400)")
    generate.add_argument("--primer", help="a MIDI file whose music the piece continues")
    generate.add_argument("--bpm", type=float_in(MIN_BPM, MAX_BPM), default=None,
                          help=f"tempo ({MIN_BPM:g}..{MAX_BPM:g}, 3.6 being the slowest a MIDI file can hold; "
                               f"default 120, or the model's own pace if it was trained on a seconds grid)")
    generate.add_argument("--gibbs-steps", type=from_limits(MODEL_FIELDS, "gibbs_steps"), default=None,
                          help=f"Gibbs steps per frame ({from_limits(MODEL_FIELDS, 'gibbs_steps').span}; "
                               f"default: the model's)")
    generate.add_argument("--temperature", type=float_in(MIN_TEMPERATURE, MAX_TEMPERATURE), default=1.0,
                          help=f"sampling temperature ({MIN_TEMPERATURE:g}..{MAX_TEMPERATURE:g}; 1 = the model)")
    generate.add_argument("--seed", type=int_in(0, SEED_MAX), default=None, help=f"(0..{SEED_MAX})")
    generate.add_argument("--wav", metavar="OUT.wav",
                          help="also render the piece to this WAV file with the built-in synth")
    generate.add_argument("--soundfont", metavar="SF2", help="the SoundFont --wav plays with (see `render --help`)")
    generate.add_argument("--dynamics", action=argparse.BooleanOptionalAction, default=True,
                          help=f"velocities around 80: {DYNAMICS} (default on; off: every note 80)")
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


def check_output_file(out: Path, *, not_over: Path | None = None) -> None:
    """StudioError unless `out` can be written in an existing folder (a typo should not make folders),
    and is not the file `not_over` (the model being read: `export-params m.pt m.pt` would replace the model)."""
    from ..music.atomic_files import check_writable

    if not out.parent.is_dir():
        raise StudioError(f"cannot write {out}: no such folder {out.parent}")
    if not_over is not None and out.exists() and os.path.samefile(out, not_over):
        raise StudioError(f"cannot write {out}: it is the model being read; name another file")
    check_writable(out)


# --------------------------------------------------------------------------------- generate
def generate_command(args: argparse.Namespace) -> int:
    from ..training.checkpoint import load_model
    from ..music.midi_files import roll_to_midi
    from ..music.pianoroll import playback_grid
    from ..music.primer import read_primer

    path = model_path_or_default(args.model)
    model, checkpoint = load_model(path)
    check_output_file(Path(args.out), not_over=path)  # before generating, which can take minutes
    if args.wav:
        check_output_file(Path(args.wav), not_over=path)
    settings = checkpoint.data.roll_settings
    primer = read_primer(args.primer, settings, label="--primer") if args.primer else None
    started = time.perf_counter()
    roll = model.generate(args.frames, primer=primer, seed=args.seed, gibbs_steps=args.gibbs_steps,
                          inverse_temperature=1.0 / args.temperature)
    seconds = time.perf_counter() - started
    bpm, steps_per_beat = playback_grid(settings, args.bpm)  # a seconds-grid model at its own pace
    try:
        roll_to_midi(roll, args.out, bpm=bpm, steps_per_beat=steps_per_beat, dynamics=args.dynamics)
    except OSError as error:
        raise StudioError(f"cannot write {args.out}: {error.strerror or error}") from None
    notes = int(np.count_nonzero(np.diff(np.vstack([np.zeros((1, roll.shape[1])), roll]), axis=0) > 0))
    print(f"wrote {args.out}: {args.frames} steps, {notes} notes ({seconds * 1e3 / args.frames:.2f} ms per step)")
    if args.wav:
        from ..live.audio_render import render_midi_file

        result = render_midi_file(args.out, args.wav, soundfont=args.soundfont)  # the .mid just written, heard
        print(f"wrote {args.wav}: {result.seconds:.1f} s of audio, played with {result.soundfont}")
    return 0


# ------------------------------------------------------------------------------------- info
def info_command(args: argparse.Namespace) -> int:
    from ..training.checkpoint import load_checkpoint
    from .model_info import summary_lines

    path = model_path_or_default(args.model)
    for line in summary_lines(path, load_checkpoint(path)):
        print(line)
    return 0


def export_params_command(args: argparse.Namespace) -> int:
    from ..music.atomic_files import write_atomically
    from ..training.checkpoint import load_model

    model, _ = load_model(args.model)
    if model.gated:
        raise StudioError(f"{args.model} has the gated (gru) recurrence: only models with the paper's tanh RNN "
                          "can be exported as the Theano tutorial's parameters")
    arrays = model.tutorial_arrays()
    out = Path(args.out)
    check_output_file(out, not_over=Path(args.model))
    try:
        write_atomically(out, lambda stream: np.savez(stream, **arrays))
    except OSError as error:
        raise StudioError(f"cannot write {out}: {error.strerror or error}") from None
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0
