"""What a run measures after each epoch, and the weights it keeps: the best epoch on validation, of
the raw weights or of their moving average (TrainConfig.select_by, .average)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..model import RnnRbm
from ..quality.ais import LogLikelihood, log_likelihood
from ..quality.frames import conditional_frames
from ..sampling import BernoulliSampler
from .batches import Batch

Weights = dict[str, torch.Tensor]


def validation_monitor(model: RnnRbm, batches: Sequence[Batch], sampler: BernoulliSampler) -> float:
    """The tutorial's monitor averaged over the valid frames."""
    total, frames = 0.0, 0
    with torch.no_grad():
        for batch, mask in batches:
            n = int(mask.sum()) if mask is not None else batch.shape[0] * batch.shape[1]
            _, monitor = model.cd_loss(batch, sampler, mask)
            total += monitor * n
            frames += n
    return total / frames


# The per-epoch estimate: few frames and chains, enough temperatures, each frame's log Z raised to its
# sure lower bound (LogLikelihood.mean_floored). It still reads sharp models optimistically (AIS with few
# temperatures is biased high: the bundled model's 300 frames read -2.02 against -2.11 at 16 x 4,000),
# alike for every epoch: a curve to compare epochs by, not the evaluation's number (`eval`).
VALIDATION_SEED = 12345
CHAINS, BETAS, BASE_CHAINS, BASE_STEPS = 8, 200, 8, 30
PIECES_PER_FRAME = 15  # draw the frames from pieces holding 15x as many: spread, yet the RNN reads few


@dataclass(frozen=True)
class ValidationFrames:
    """A fixed set of valid frames: the same pieces, cut after the same frame, the same frames of them,
    every epoch (drawn once, with a fixed seed), so that epochs differ by their weights only."""

    rolls: list  # each chosen piece up to its last chosen frame (its history conditions the frames)
    index: torch.Tensor  # the measured frames among the rolls' frames, concatenated


def fixed_valid_frames(valid_rolls: Sequence[torch.Tensor], count: int,
                       seed: int = VALIDATION_SEED) -> ValidationFrames:
    """`count` valid frames (all of them if there are fewer), drawn from pieces taken in a seeded order."""
    rng = np.random.default_rng(seed)
    chosen, held = [], 0
    for i in rng.permutation(len(valid_rolls)):
        chosen.append(int(i))
        held += len(valid_rolls[i])
        if held >= PIECES_PER_FRAME * count:
            break
    chosen.sort()
    pieces = [valid_rolls[i] for i in chosen]
    picked = np.sort(rng.choice(held, min(count, held), replace=False))
    starts = np.cumsum([0] + [len(p) for p in pieces])
    rolls, index, offset = [], [], 0
    for piece, start in zip(pieces, starts):
        mine = picked[(picked >= start) & (picked < start + len(piece))] - start
        if not len(mine):
            continue
        rolls.append(piece[:int(mine[-1]) + 1])
        index.extend(offset + mine)
        offset += int(mine[-1]) + 1
    return ValidationFrames(rolls, torch.as_tensor(np.asarray(index, dtype=np.int64)))


def validation_log_likelihood(model: RnnRbm, fixed: ValidationFrames) -> LogLikelihood:
    """LL per step by AIS on the fixed valid frames (select_by="ll"), with its standard error.

    A fixed seed gives every epoch the same random numbers, so epochs differ by their weights only.
    """
    with torch.no_grad():
        measured = conditional_frames(model, fixed.rolls).subset(fixed.index)
        return log_likelihood(model, measured, chains=CHAINS, n_betas=BETAS, sampler=BernoulliSampler(VALIDATION_SEED),
                              base_chains=BASE_CHAINS, base_steps=BASE_STEPS)


@dataclass
class Best:
    """The best epoch so far by the run's criterion, and how long ago it was."""

    valid_monitor: float | None = None  # shown with either criterion
    valid_ll: float | None = None  # with select_by="ll"
    state: Weights | None = None
    epochs_since: int = 0
    epoch: int | None = None  # the epoch kept (None: none judged yet)

    def judge(self, epoch: int, by_ll: bool, valid: float | None, valid_ll: float | None, weights: Weights,
              averaging: bool) -> None:
        """Take an epoch's readings: its weights are kept if its score is the best so far."""
        if by_ll and valid is not None and (self.valid_monitor is None or valid > self.valid_monitor):
            self.valid_monitor = valid  # still shown; the weights kept follow the log-likelihood
        score, best = (valid_ll, self.valid_ll) if by_ll else (valid, self.valid_monitor)
        if score is not None and (best is None or score > best):
            if by_ll:
                self.valid_ll = score
            else:
                self.valid_monitor = score
            self.state = weights
            self.epochs_since = 0
            self.epoch = epoch
        else:
            self.epochs_since += 1
        if score is None and averaging:
            self.state = weights  # nothing to select by: the average is the model
            self.epoch = epoch


def update_average(averaged: Weights | None, model: RnnRbm, decay: float) -> Weights:
    """The moving average of the weights after an update (it starts at the first update's weights)."""
    with torch.no_grad():
        if averaged is None:
            return {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name, value in model.state_dict().items():
            averaged[name].lerp_(value, 1.0 - decay)
    return averaged


@contextlib.contextmanager
def holding(model: RnnRbm, weights: Weights | None) -> Iterator[None]:
    """The model holds `weights` inside the block (its own without them), its own again after it."""
    if weights is None:
        yield
        return
    raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(weights)
    try:
        yield
    finally:
        model.load_state_dict(raw)
