"""The stats command: the music a user hears from a model against a split of a corpus, statistic by
statistic (quality/stats.py; docs/quality.md defines each one), with optional PNG plots."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import StudioError
from ..limits import FRAMES_MAX, SEED_MAX, THREADS_MAX
from .engine import MAX_TEMPERATURE, MIN_TEMPERATURE, model_path_or_default
from .options import float_in, int_in

MAX_PIECES = 1000
PLOTS_MISSING = ("plots skipped: matplotlib is not installed "
                 "(pip install 'rnnrbm-studio[plots]', or pip install matplotlib)")


def register(subparsers) -> None:
    st = subparsers.add_parser(
        "stats", help="compare the music a model writes with a corpus: density, range, keys, lengths, repeats",
        description="Generates pieces with the sampler live playback uses (fast: each frame's chain from the "
                    "RNN's guess, 25 Gibbs steps; or exact: from silence, the model's own steps, as `generate`) "
                    "and compares them with a split of DATA on listening statistics; per statistic the data's "
                    "value, the model's, and the overlapping area of their two distributions (1 = the same).")
    st.add_argument("model", metavar="MODEL", help="a model file")
    st.add_argument("data", metavar="DATA", help="a benchmark .pickle, a MIDI folder or a MIDI file")
    st.add_argument("--split", choices=("train", "valid", "test"), default="test",
                    help="which split of DATA to compare with (default test)")
    st.add_argument("--frames", type=int_in(1, FRAMES_MAX), default=400,
                    help=f"steps per generated piece (1..{FRAMES_MAX}; default 400)")
    st.add_argument("--pieces", type=int_in(1, MAX_PIECES), default=3,
                    help=f"pieces to generate (1..{MAX_PIECES}; default 3)")
    st.add_argument("--temperature", type=float_in(MIN_TEMPERATURE, MAX_TEMPERATURE), default=1.0,
                    help=f"sampling temperature ({MIN_TEMPERATURE:g}..{MAX_TEMPERATURE:g}; 1 = the model)")
    st.add_argument("--sampler", choices=("fast", "exact"), default="fast",
                    help="fast (the default, as live playback): each frame's Gibbs chain starts at the RNN's guess "
                         "and runs 25 steps; exact: from silence with the model's own steps, as `generate`")
    st.add_argument("--gibbs-steps", type=int_in(1, 10_000), default=None,
                    help="Gibbs steps per frame, 1..10,000 (default: the sampler's)")
    st.add_argument("--seed", type=int_in(0, SEED_MAX), default=0,
                    help=f"piece k is generated with seed + k, as `generate --seed` would (0..{SEED_MAX}; default 0)")
    st.add_argument("--plots", metavar="DIR", help="also draw the distributions into a PNG in this folder")
    st.add_argument("--json", action="store_true", help="print the result as JSON")
    st.add_argument("--threads", type=int_in(1, THREADS_MAX), default=None, help=f"torch threads (1..{THREADS_MAX})")
    st.set_defaults(handler=stats_command)


def stats_command(args: argparse.Namespace) -> int:
    import torch

    from ..music.corpus import load_corpus
    from ..quality.stats import compare
    from ..training.checkpoint import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    path = model_path_or_default(args.model)
    model, checkpoint = load_model(path)
    settings = checkpoint.data.roll_settings
    plot_file = _plot_file(args, path) if args.plots else None  # checked before the minutes of generating
    rolls = [p.roll for p in load_corpus(args.data, settings).splits[args.split] if len(p.roll)]
    if not rolls:
        raise StudioError(f"the {args.split} split of {args.data} has no music to compare with")
    if rolls[0].shape[1] != model.config.n_visible:
        raise StudioError(f"the model has {model.config.n_visible} keys but the data has {rolls[0].shape[1]}")
    started = time.perf_counter()
    # one piece per seed, with the chain live playback would run (PlaybackSettings.chain)
    from ..live.settings import SAMPLERS, PlaybackSettings

    chain = PlaybackSettings(chain_start=SAMPLERS[args.sampler], gibbs_steps=args.gibbs_steps)
    gibbs_steps, start = chain.chain(model.config.gibbs_steps)
    generated = [model.generate(args.frames, seed=args.seed + k, gibbs_steps=gibbs_steps, start=start,
                                inverse_temperature=1.0 / args.temperature)
                 for k in range(args.pieces)]
    seconds = time.perf_counter() - started
    statistics = compare(rolls, generated, settings.lowest_pitch)
    values = {"model": str(path), "data": str(args.data), "split": args.split, "data_pieces": len(rolls),
              "model_pieces": args.pieces, "frames_per_piece": args.frames, "temperature": args.temperature,
              "sampler": args.sampler, "gibbs_steps": gibbs_steps, "seed": args.seed,
              "ms_per_frame": round(1000 * seconds / (args.frames * args.pieces), 2),
              "statistics": [_plain(asdict(s)) for s in statistics]}
    if plot_file is not None:
        drawn = _draw(statistics, values, plot_file)
        values["plot"] = str(plot_file) if drawn else None
    print(json.dumps(values, indent=2) if args.json else format_table(values))
    return 0


def _plain(row: dict) -> dict:
    """NaN (a silent piece has no range) as null: JSON has no NaN."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _plot_file(args, model_path: Path) -> Path:
    from ..music.atomic_files import check_writable

    folder = Path(args.plots)
    if not folder.is_dir():
        raise StudioError(f"--plots {folder}: no such folder")
    file = folder / f"stats-{model_path.stem}-{Path(args.data).stem.replace(' ', '_')}-T{args.temperature:g}.png"
    check_writable(file)
    return file


def _draw(statistics, values: dict, file: Path) -> bool:
    """One figure, a panel per statistic (data and model side by side). False, with one line, when
    matplotlib (an optional dependency) is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        sys.stderr.write(PLOTS_MISSING + "\n")
        return False
    import numpy as np

    from ..music.atomic_files import write_atomically

    columns = 2
    rows = math.ceil(len(statistics) / columns)
    figure = Figure(figsize=(12, 2.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"{Path(values['model']).name}: {values['model_pieces']} pieces x {values['frames_per_piece']} "
                    f"steps at temperature {values['temperature']:g}, {values['sampler']} sampler, "
                    f"{values['gibbs_steps']} Gibbs steps, against "
                    f"{Path(values['data']).name} ({values['split']}, {values['data_pieces']} pieces)")
    for index, statistic in enumerate(statistics):
        axes = figure.add_subplot(rows, columns, index + 1)
        x = np.arange(len(statistic.bins))
        axes.bar(x - 0.2, statistic.data_histogram, 0.4, label="data", color="#4477aa")
        axes.bar(x + 0.2, statistic.model_histogram, 0.4, label="model", color="#ee6677")
        axes.set_xticks(x, statistic.bins, fontsize=7, rotation=45 if len(statistic.bins) > 10 else 0)
        overlap = "-" if math.isnan(statistic.overlap) else f"{statistic.overlap:.2f}"
        axes.set_title(f"{statistic.name}: data {statistic.data:.2f}, model {statistic.model:.2f}, "
                       f"overlap {overlap}", fontsize=9)
        axes.tick_params(axis="y", labelsize=7)
        if index == 0:
            axes.legend(fontsize=8)
    write_atomically(file, lambda stream: figure.savefig(stream, format="png", dpi=80))
    return True


def format_table(values: dict) -> str:
    lines = [f"model: {values['model']} ({values['model_pieces']} pieces x {values['frames_per_piece']} steps, "
             f"temperature {values['temperature']:g}, {values['sampler']} sampler, {values['gibbs_steps']} Gibbs steps, "
             f"{values['ms_per_frame']:.1f} ms per step)",
             f"data:  {values['data']} ({values['split']}: {values['data_pieces']} pieces)",
             "",
             f"{'statistic':<40} {'data':>8} {'model':>8} {'overlap':>8}  value"]
    number = (lambda v: f"{v:>8.2f}" if v is not None else f"{'-':>8}")
    for row in values["statistics"]:
        lines.append(f"{row['name']:<40} {number(row['data'])} {number(row['model'])} {number(row['overlap'])}  "
                     f"{row['summary']}")
    lines.append("\noverlap: the overlapping area of the two normalised distributions (1 = the same, 0 = disjoint)")
    if values.get("plot"):
        lines.append(f"plots: {values['plot']}")
    return "\n".join(lines)
