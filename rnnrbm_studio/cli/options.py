"""Range-checked argparse types: a bad number is a usage error from argparse, never a traceback later.

    parser.add_argument("--frames", type=int_in(1, 100_000), help=f"... ({int_in(1, 100_000).span})")

Each callable rejects text, NaN, infinities and values outside its range with an argparse error such as
"argument --frames: must be an integer from 1 to 100000 (got '0')". The callables carry `low`, `high`
and `kind` so tests can walk a parser and try every numeric option's edges.
"""
from __future__ import annotations

import argparse
import math


class _Range:
    kind = ""

    def __init__(self, low, high, low_open: bool = False):
        if not low <= high:
            raise ValueError(f"empty range {low}..{high}")
        self.low = low
        self.high = high
        self.low_open = low_open
        # argparse names the type in some of its own messages
        self.__name__ = self.kind

    @property
    def span(self) -> str:
        """The range as --help shows it, e.g. "1..100000" or "> 0 and <= 10"."""
        if self.low_open:
            return f"> {_plain(self.low)} and <= {_plain(self.high)}"
        return f"{_plain(self.low)}..{_plain(self.high)}"

    def _problem(self) -> str:
        article = "an" if self.kind == "integer" else "a"
        if self.low_open:
            return f"must be {article} {self.kind} above {_plain(self.low)} and at most {_plain(self.high)}"
        return f"must be {article} {self.kind} from {_plain(self.low)} to {_plain(self.high)}"

    def _reject(self, text: str):
        return argparse.ArgumentTypeError(f"{self._problem()} (got {text!r})")

    def _in_range(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high


class _IntIn(_Range):
    kind = "integer"

    def __call__(self, text: str) -> int:
        try:
            # int() rejects "1.5", "nan" and "inf"; absurdly long digit strings raise ValueError too
            value = int(text.strip())
        except (TypeError, ValueError):
            raise self._reject(text) from None
        if not self._in_range(value):
            raise self._reject(text)
        return value


class _FloatIn(_Range):
    kind = "number"

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise self._reject(text) from None
        if not math.isfinite(value) or not self._in_range(value):
            raise self._reject(text)
        return value


def int_in(low: int, high: int) -> _IntIn:
    """An argparse `type=` accepting the integers low..high (both included)."""
    return _IntIn(int(low), int(high))


def float_in(low: float, high: float, *, low_open: bool = False) -> _FloatIn:
    """An argparse `type=` accepting finite numbers from low to high (both included, or above low when
    low_open: a learning rate of 0 would train nothing)."""
    return _FloatIn(float(low), float(high), low_open=low_open)


def from_rule(rule) -> _Range:
    """The argparse type of a limits.py rule: (low, high), or ("open", low, high) for numbers above low."""
    low_open = rule[0] == "open"
    low, high = rule[1:] if low_open else rule
    if isinstance(low, int) and isinstance(high, int):
        return int_in(low, high)
    return float_in(low, high, low_open=low_open)


def from_limits(table: dict, name: str) -> _Range:
    """The argparse type of a field of a limits.py table (the same range a model file is held to)."""
    return from_rule(table[name])


def shown(value) -> str:
    """A default as --help shows it."""
    if value is None or value is False:
        return "off"
    if value is True:
        return "on"
    return _plain(value) if isinstance(value, (int, float)) else str(value)


def _plain(number) -> str:
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)
