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


# settings with no `train` option, each saying why in its field's metadata ("internal")
INTERNAL = {"n_visible", "lowest_pitch", "prefetch_random"}


def test_every_setting_is_a_train_option_with_the_engine_s_range_and_the_recipe_s_default():
    """Each field of RnnRbmConfig and TrainConfig is a `train` option (or one of INTERNAL), whose range is
    limits.py's and whose help shows the field's help and its default (each recipe's value, for the
    options a recipe sets); with no option given, `train` trains exactly each recipe's configs()."""
    from dataclasses import fields

    from rnnrbm_studio import limits
    from rnnrbm_studio.cli.options import shown
    from rnnrbm_studio.cli.training import option_of, settings_from_args
    from rnnrbm_studio.model import RnnRbmConfig
    from rnnrbm_studio.training.config import TrainConfig
    from rnnrbm_studio.training.recipes import RECIPES, configs, recipe_fields, recipe_value

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest: a for a in subparsers.choices["train"]._actions}
    internal = set()
    for cls, table in ((RnnRbmConfig, limits.MODEL_FIELDS), (TrainConfig, limits.TRAIN_FIELDS)):
        for field in fields(cls):
            if "internal" in field.metadata:
                internal.add(field.name)
                assert field.name not in options, field.name
                continue
            action = options.get(field.name)
            assert action is not None, f"{cls.__name__}.{field.name} has no `train` option"
            assert action.option_strings == [option_of(field)] and action.default is None, field.name
            assert field.metadata["help"] in action.help, field.name
            rule = limits.TRAIN_CLI_RANGES.get(field.name, table[field.name])
            if isinstance(action.type, _Range):
                low, high = rule[1:] if rule[0] == "open" else rule
                assert (action.type.low, action.type.high, action.type.low_open) == (low, high, rule[0] == "open")
                if rule is table[field.name]:  # (the command line may be narrower than a file, never wider)
                    assert action.type.span in action.help
            elif rule is bool:
                assert action.nargs == 0 and action.const is True, field.name
            else:
                assert tuple(action.choices) == rule, field.name
            if field.name in recipe_fields():
                assert action.help.startswith("[recipe] "), field.name
                for recipe in RECIPES:
                    assert f"{recipe} {shown(recipe_value(recipe, field.name))}" in action.help, (field.name, recipe)
            elif field.default is not None or "unset" not in field.metadata:
                assert f"default {shown(field.default)})" in action.help, field.name
    assert internal == INTERNAL
    assert configs("tutorial") == (RnnRbmConfig(), TrainConfig())  # the tutorial's values are the defaults
    for recipe in RECIPES:
        chosen = settings_from_args(parser.parse_args([*BASE["train"], "--recipe", recipe]))
        assert chosen[:2] == configs(recipe), recipe


def test_a_given_option_wins_over_every_recipe():
    from rnnrbm_studio.cli.training import setting_fields, settings_from_args
    from rnnrbm_studio.training.recipes import RECIPES, configs

    parser = build_parser()
    for setting, rule in setting_fields():
        if rule is bool:
            given, value = [f"--{setting.name.replace('_', '-')}"], True
        elif isinstance(rule[0], str) and rule[0] != "open":
            value = rule[-1] if rule[-1] != setting.default else rule[0]
            given = [setting.metadata.get("option") or f"--{setting.name.replace('_', '-')}", value]
        else:
            value = rule[-1]  # the top of its range: no recipe's value
            given = [setting.metadata.get("option") or f"--{setting.name.replace('_', '-')}", str(value)]
        for recipe in RECIPES:
            model, train, _ = settings_from_args(parser.parse_args([*BASE["train"], "--recipe", recipe, *given]))
            expected = {setting.name: value}
            if setting.name == "epochs":  # a given --epochs wins over the recipe's minimum updates too
                expected["min_updates"] = 0
            assert (model, train) == configs(recipe, **expected), (setting.name, recipe)


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
