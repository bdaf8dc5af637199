"""What a run measures after each epoch, and the weights it keeps: the best epoch on validation, of
the raw weights or of their moving average (TrainConfig.select_by, .average)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ..model import RnnRbm
from ..quality.ais import log_likelihood
from ..quality.frames import conditional_frames, leading_frames
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


def validation_log_likelihood(model: RnnRbm, valid_rolls: Sequence[torch.Tensor], frames: int) -> float:
    """LL per step by AIS on the first `frames` valid frames (select_by="ll").

    A fixed seed gives every epoch the same random numbers, so epochs differ by their weights only.
    """
    with torch.no_grad():
        measured = conditional_frames(model, leading_frames(valid_rolls, frames))
        # small AIS (biased high, but alike for every epoch) keeps the check to ~2 s for 2,000 frames
        return log_likelihood(model, measured, chains=8, n_betas=40, sampler=BernoulliSampler(12345),
                              base_chains=8, base_steps=30).mean


@dataclass
class Best:
    """The best epoch so far by the run's criterion, and how long ago it was."""

    valid_monitor: float | None = None  # shown with either criterion
    valid_ll: float | None = None  # with select_by="ll"
    state: Weights | None = None
    epochs_since: int = 0

    def judge(self, by_ll: bool, valid: float | None, valid_ll: float | None, weights: Weights,
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
        else:
            self.epochs_since += 1
        if score is None and averaging:
            self.state = weights  # nothing to select by: the average is the model


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
