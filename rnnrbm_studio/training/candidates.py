"""Two runs of one recipe that differ in their augmentation (train --key-shift-candidate), and the
choice between them by the valid log-likelihood: the better one ends up in the run's file, the other
beside it as NAME.runner-up.pt. Files are renamed, never rewritten in place, so a crash midway loses
neither run."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import StudioError
from ..model import RnnRbm
from ..quality.ais import LogLikelihood, log_likelihood
from ..quality.frames import conditional_frames, leading_frames
from ..sampling import BernoulliSampler
from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .trainer import Trainer, build_model

# the evaluation's converged setting (docs/quality.md), not the per-epoch check's 8 x 40, which reads
# sharp models optimistically
CHAINS, BETAS = 16, 1000


def candidate_path(out: Path) -> Path:
    """Where the candidate run writes while it trains."""
    return out.with_name(f"{out.stem}.candidate{out.suffix}")


def runner_up_path(out: Path) -> Path:
    """Where the run not chosen is kept."""
    return out.with_name(f"{out.stem}.runner-up{out.suffix}")


def candidate_trainer(first: Trainer, key_shift: int, **kwargs) -> Trainer:
    """A Trainer like `first` (same data, settings and initial weights) but with another key_shift,
    writing to candidate_path(first's checkpoint); kwargs as Trainer's (progress, data_description)."""
    return Trainer(build_model(first.model.config, first.config.seed), first.train_rolls, first.valid_rolls,
                   replace(first.config, key_shift=key_shift), candidate_path(first.checkpoint_path),
                   first.roll_settings, **kwargs)


def valid_log_likelihoods(models: Sequence[RnnRbm], valid_rolls: Sequence[np.ndarray], frames: int = 2000,
                          chains: int = CHAINS, n_betas: int = BETAS, seed: int = 0) -> list[LogLikelihood]:
    """Each finished model's LL per step on the first `frames` valid frames, with the same random numbers
    for every model; compare their `mean_floored`."""
    rolls = leading_frames(valid_rolls, frames)
    estimates = []
    with torch.no_grad():
        for model in models:
            model.eval()
            estimates.append(log_likelihood(model, conditional_frames(model, rolls), chains=chains,
                                            n_betas=n_betas, sampler=BernoulliSampler(seed)))
    return estimates


@dataclass
class CandidateChoice:
    frames: int  # the valid frames measured
    key_shifts: tuple[int, int]  # the first run's, the candidate's
    scores: tuple[float, float]  # their valid LL per step (AIS, floored)

    @property
    def kept_candidate(self) -> bool:
        return self.scores[1] > self.scores[0]

    @property
    def kept(self) -> str:
        return f"key_shift {self.key_shifts[1] if self.kept_candidate else self.key_shifts[0]}"

    def summary(self) -> dict:
        """What both files record (Checkpoint.candidates, shown by info)."""
        return {"criterion": f"valid LL per step, AIS {CHAINS} x {BETAS:,} (floored), first {self.frames} frames",
                "key_shift": list(self.key_shifts), "valid_ll": list(self.scores), "kept": self.kept}


def keep_the_better(out: Path, candidate: Path, key_shifts: tuple[int, int], valid_rolls: Sequence[np.ndarray],
                    frames: int) -> CandidateChoice:
    """Measure the finished runs in `out` and `candidate`; leave the better in `out`, the other in
    runner_up_path(out), both recording the choice. Raises StudioError if the files cannot be moved."""
    estimates = valid_log_likelihoods([load_model(out)[0], load_model(candidate)[0]], valid_rolls, frames=frames)
    choice = CandidateChoice(frames, key_shifts, (estimates[0].mean_floored, estimates[1].mean_floored))
    runner_up = runner_up_path(out)
    try:
        if choice.kept_candidate:
            parked = out.with_name(f"{out.stem}.swapping{out.suffix}")
            os.replace(out, parked)
            os.replace(candidate, out)
            os.replace(parked, runner_up)
        else:
            os.replace(candidate, runner_up)
        for path in (out, runner_up):
            checkpoint = load_checkpoint(path)
            checkpoint.candidates = choice.summary()
            save_checkpoint(path, checkpoint)
    except OSError as error:
        raise StudioError(f"cannot keep the better run: {error.strerror or error} (the runs' files are {out}, "
                          f"{candidate} and {runner_up})") from None
    return choice
