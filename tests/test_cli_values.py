"""Every numeric option of the engine's commands has a range, checked by argparse (cli/options.py).

The options are found by walking the parser itself, so an option added later without a range fails
here instead of reaching the engine with 0, -5, NaN or 10^8 and ending in a traceback or a hang.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnrbm_studio.cli import build_parser
from rnnrbm_studio.cli.options import _Range, float_in, int_in

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# the positional arguments each command needs to reach its options
BASE = {"train": ["train", "DATA", "--out", "m.pt"], "generate": ["generate", "--out", "g.mid"],
        "eval": ["eval", "m.pt", "DATA"], "export-params": ["export-params", "m.pt", "p.npz"], "info": ["info"]}
VALUES = ["0", "-1", "-5", "1.5", "1e30", "99999999999999999999999", "nan", "NaN", "inf", "-inf", "abc", "", "0x10",
          "1e-300"]


def typed_options(command: str) -> list[argparse.Action]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in subparsers.choices[command]._actions if a.option_strings and a.type is not None]


def numeric_options() -> list[tuple[str, argparse.Action]]:
    return [(command, action) for command in BASE for action in typed_options(command)]


def _accepts(kind: _Range, text: str) -> bool:
    """Whether `text` is a value inside the range (what the type should let through)."""
    try:
        value = int(text) if kind.kind == "integer" else float(text)
    except ValueError:
        return False
    if not math.isfinite(value):
        return False
    above = value > kind.low if kind.low_open else value >= kind.low
    return above and value <= kind.high


def test_every_numeric_option_has_a_range():
    options = numeric_options()
    assert len(options) > 40  # the walk finds them (train alone has ~35)
    plain = [f"{command} {action.option_strings[-1]}" for command, action in options if not isinstance(action.type, _Range)]
    assert not plain, f"options without a range (use cli/options.py int_in / float_in): {plain}"
    undocumented = [f"{command} {action.option_strings[-1]}" for command, action in options
                    if action.type.span not in (action.help or "")]
    assert not undocumented, f"--help does not show the range of: {undocumented}"


@pytest.mark.parametrize("command", list(BASE))
def test_out_of_range_values_are_usage_errors_without_a_traceback(command, capsys):
    for action in typed_options(command):
        kind, flag = action.type, action.option_strings[-1]
        outside = [*VALUES, str(kind.low - 1), str(kind.high + 1)] if kind.kind == "integer" else [
            *VALUES, repr(kind.low - abs(kind.low) * 0.01 - 1e-9), repr(kind.high * 1.01 + 1e-9)]
        for text in outside:
            if _accepts(kind, text):
                continue
            with pytest.raises(SystemExit) as exit_:
                build_parser().parse_args([*BASE[command], f"{flag}={text}"])
            err = capsys.readouterr().err
            assert exit_.value.code == 2, (flag, text)
            lines = err.strip().splitlines()
            assert len(lines) == 1, (flag, text, err)  # one line, like every user error
            assert lines[0].startswith(f"rnnrbm-studio: error: argument {flag}: must be"), (flag, text, err)
            assert "Traceback" not in err
        # the bounds themselves are accepted: no range is empty or off by one
        for bound in (kind.low, kind.high):
            if bound == kind.low and kind.low_open:
                continue
            args = build_parser().parse_args([*BASE[command], f"{flag}={bound}"])
            assert getattr(args, action.dest) == bound, (flag, bound)


def test_the_range_types_reject_text_nan_and_infinity_and_say_the_range():
    frames = int_in(1, 100_000)
    assert frames("7") == 7 and frames.span == "1..100000"
    for text in ("0", "100001", "1.0", "nan", "inf", "seven", " "):
        with pytest.raises(argparse.ArgumentTypeError, match="must be an integer from 1 to 100000"):
            frames(text)
    rate = float_in(0, 10, low_open=True)
    assert rate("10") == 10.0 and rate("1e-9") == 1e-9
    for text in ("0", "-1", "10.5", "nan", "-inf", "inf", "fast"):
        with pytest.raises(argparse.ArgumentTypeError, match="must be a number above 0 and at most 10"):
            rate(text)
    with pytest.raises(ValueError):
        int_in(5, 1)


REPORTED = [  # the seven tracebacks, in fresh interpreters
    ["train", "DATA", "--out", "OUT", "--seq-len", "0"],
    ["train", "DATA", "--out", "OUT", "--hidden", "0"],
    ["train", "DATA", "--out", "OUT", "--recurrent", "-5"],
    ["train", "DATA", "--out", "OUT", "--steps-per-beat", "0"],
    ["train", "DATA", "--out", "OUT", "--key-shift", "-3"],
    ["generate", "--out", "OUT", "--gibbs-steps", "-1"],
    ["generate", "--out", "OUT", "--frames", "100000000"],
]


def test_the_reported_values_end_in_a_usage_error(tmp_path):
    out = tmp_path / "out"
    processes = [subprocess.Popen([sys.executable, "-m", "rnnrbm_studio",
                                   *[str(out) if a == "OUT" else str(tmp_path) if a == "DATA" else a for a in args]],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
                 for args in REPORTED]
    failures = []
    for args, process in zip(REPORTED, processes):
        stdout, stderr = process.communicate(timeout=120)
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        if process.returncode != 2 or "Traceback" in stdout + stderr or f"argument {args[-2]}: must be" not in last:
            failures.append(f"{args}: exit {process.returncode}, stderr {stderr!r}")
    assert not failures, "\n".join(failures)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
