"""How long a run will take, measured as it goes: the time per update and per validation, the plan of
a run (its epochs and updates, and why it trains more epochs than asked), and counts said in words.

The ETA reads only measured update times, never the time since the run started: that holds the
pretraining (a minute before epoch 1), and a rate of "0.01 epochs in 70 s" gave ETAs of hundreds of
hours for 10-second epochs. The first updates of a run (allocations, caches, the first batch's
threads starting) are left out, and no rate is given until enough updates are measured.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

Clock = Callable[[], float]  # monotonic seconds (time.monotonic; tests pass a fake one)

WARMUP_UPDATES = 2  # the run's first updates are slower than the rest: not measured
MIN_MEASURED_UPDATES = 5  # no rate (and no ETA) from fewer updates than this


def count_of(n: int, word: str) -> str:
    """'1 epoch', '3 epochs', '28,000 updates'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class UpdateTimer:
    """Seconds per update, from the gaps between consecutive updates (begin() marks where a run of
    updates starts, so what happens between them, validation or pretraining, is never counted)."""

    def __init__(self, clock: Clock, warmup: int = WARMUP_UPDATES, min_updates: int = MIN_MEASURED_UPDATES):
        self.clock = clock
        self.warmup = warmup
        self.min_updates = min_updates
        self.seen = 0
        self.updates = 0
        self.seconds = 0.0
        self._last: float | None = None

    def begin(self) -> None:
        self._last = self.clock()

    def tick(self) -> None:
        """One update has ended."""
        now = self.clock()
        if self._last is not None and self.seen >= self.warmup:
            self.seconds += now - self._last
            self.updates += 1
        self.seen += 1
        self._last = now

    def seconds_per_update(self) -> float | None:
        return self.seconds / self.updates if self.updates >= self.min_updates else None

    def eta(self, updates_left: float) -> float | None:
        rate = self.seconds_per_update()
        return None if rate is None else max(0.0, updates_left) * rate


@dataclass(frozen=True)
class Plan:
    """How many epochs a run trains and why (TrainConfig.min_updates can raise the epochs asked for)."""

    epochs: int
    updates_per_epoch: int
    epochs_asked: int
    min_updates: int

    @property
    def raised(self) -> bool:
        return self.epochs > self.epochs_asked

    def describe(self) -> str:
        text = (f"{count_of(self.epochs, 'epoch')} of {count_of(self.updates_per_epoch, 'update')} "
                f"({self.epochs * self.updates_per_epoch:,} updates)")
        if self.raised:
            text += (f": {self.epochs_asked} asked for, raised to reach the minimum of "
                     f"{count_of(self.min_updates, 'update')} (Min. updates, --min-updates; 0 turns it off)")
        return text


def plan(epochs: int, min_updates: int, updates_per_epoch: int) -> Plan:
    """The epochs that `epochs` asked for and `min_updates` (0: none) give on `updates_per_epoch`."""
    needed = math.ceil(min_updates / updates_per_epoch) if min_updates else 0
    return Plan(max(epochs, needed), updates_per_epoch, epochs, min_updates)


def format_seconds(seconds: float | None) -> str:
    """h:mm:ss, or m:ss; "?" for a time not known (yet)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def eta_text(progress) -> str:
    """A TrainProgress's ETA as people read it: "?" until measured, "≤ 1:10" where it is a bound."""
    if progress.eta_seconds is None:
        return "?"
    return ("≤ " if progress.eta_at_most else "") + format_seconds(progress.eta_seconds)


def ll_text(value: float, se: float | None) -> str:
    """A log-likelihood with its standard error where it has one."""
    return f"{value:.3f}" + (f" ± {se:.3f}" if se is not None else "")
