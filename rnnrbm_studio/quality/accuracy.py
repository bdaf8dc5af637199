"""Frame accuracy (Bay et al. 2009) of an RNN-RBM's next-frame predictions, and the Theano tutorial's
training monitor (a reconstruction cross-entropy, NOT a likelihood), for reference.

Two ways of pooling: the author's protocol (`author_accuracy`: each frame's own TP / (TP + FP + FN),
averaged over samples, then over frames; the paper's ACC) and pooled counts (`expected_accuracy`:
sum_t TP / sum_t (TP + FP + FN), what this project reported before the protocol was known).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..model import BernoulliSampler, RnnRbm
from .frames import Frames

DEFAULT_ACC_SAMPLES = 5
DEFAULT_ACC_GIBBS_STEPS = 400  # enough for the chains from v_{t-1} to forget their start (docs/quality.md)


CHAIN_BYTES = 1 << 28  # RnnRbm.gibbs_chain draws all its steps' uniforms at once: bound what one call holds


def gibbs(model: RnnRbm, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, steps: int,
          sampler: BernoulliSampler) -> torch.Tensor:
    """model.gibbs_chain in calls of a few steps each, so that its uniforms (steps x rows x (V + H)
    float32 at once) stay within CHAIN_BYTES: 400 steps of 65,536 rows would need 25 GB in one call."""
    per_step = v.shape[0] * (v.shape[1] + model.config.n_hidden) * v.element_size()
    chunk = max(1, CHAIN_BYTES // max(per_step, 1))
    while steps > 0:
        v = model.gibbs_chain(v, bv, bh, min(chunk, steps), sampler)
        steps -= chunk
    return v


def accuracy_counts(predicted: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> tuple[int, int, int]:
    """(TP, FP, FN) summed over frames. predicted, target: (N, V) 0/1."""
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(target, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"predicted {p.shape} and target {t.shape} differ in shape")
    return int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t))


def accuracy_from_counts(tp: int, fp: int, fn: int) -> float:
    """Bay et al. (2009): TP / (TP + FP + FN); 1.0 when there is nothing to find and nothing was found."""
    total = tp + fp + fn
    return float(tp / total) if total else 1.0


@dataclass
class Accuracy:
    mean: float  # expected ACC over the samples, 0..1
    se: float  # standard error of that mean over the samples
    samples: int
    gibbs_steps: int
    start: str  # where each frame's chain started: "previous" (v_{t-1}) or "silence"
    per_sample: list[float] = field(default_factory=list)
    tp: int = 0  # summed over all samples
    fp: int = 0
    fn: int = 0
    seconds: float = 0.0


@torch.no_grad()
def expected_accuracy(model: RnnRbm, frames: Frames, samples: int = DEFAULT_ACC_SAMPLES,
                      sampler: BernoulliSampler | None = None, gibbs_steps: int = DEFAULT_ACC_GIBBS_STEPS,
                      start: str = "previous", batch_frames: int = 8192,
                      progress: Callable[[float], None] | None = None) -> Accuracy:
    """ACC of frames drawn from each frame's RBM (biases from the true history) by block Gibbs sampling.

    start="previous" starts each chain from the true frame v_{t-1} (part of the history the
    prediction may use), and enough steps make the number the model's own expected accuracy.
    start="silence" with the model's gibbs_steps draws from the same distribution as the app's
    composer (`RnnRbm.sample_frame`); with few steps those chains have not mixed, which is why the
    two starts can differ (docs/quality.md).
    """
    if start not in ("previous", "silence"):
        raise ValueError(f"unknown chain start {start!r} (previous or silence)")
    started = time.perf_counter()
    sampler = sampler or BernoulliSampler()
    target = frames.v.numpy().astype(bool)
    per_sample, totals = [], np.zeros(3, dtype=np.int64)
    for s in range(samples):
        counts = np.zeros(3, dtype=np.int64)
        for first in range(0, len(frames), batch_frames):
            part = slice(first, min(len(frames), first + batch_frames))
            v0 = frames.v_prev[part] if start == "previous" else torch.zeros_like(frames.v[part])
            predicted = gibbs(model, v0, frames.bv[part], frames.bh[part], gibbs_steps, sampler)  # (n, V)
            counts += accuracy_counts(predicted.numpy(), target[part])
        per_sample.append(accuracy_from_counts(*counts))
        totals += counts
        if progress:
            progress((s + 1) / samples)
    values = np.array(per_sample)
    se = float(values.std(ddof=1) / math.sqrt(samples)) if samples > 1 else math.nan
    return Accuracy(float(values.mean()), se, samples, gibbs_steps, start, per_sample, int(totals[0]),
                    int(totals[1]), int(totals[2]), time.perf_counter() - started)


# ------------------------------------------------------------------ the author's protocol
# Boulanger-Lewandowski's page for the paper: for each time step, given the true history, the
# expectation over the model's conditional of that frame's accuracy TP / (TP + FP + FN), estimated
# by sampling ("usually 20-50 samples per time step"), then the plain mean over every test frame.
BOTH_EMPTY_SCORE = 1.0
BOTH_EMPTY_RULE = "a sample and a true frame that are both silent score 1 (silence correctly predicted)"
DEFAULT_AUTHOR_SAMPLES = 40
DEFAULT_AUTHOR_CHAINS = 8
DEFAULT_AUTHOR_BURN_IN = 400  # steps from v_{t-1} before the first sample: mixed (docs/quality.md)
DEFAULT_AUTHOR_THIN = 20  # steps between a chain's samples


def frame_accuracies(predicted: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                     both_empty: float = BOTH_EMPTY_SCORE) -> np.ndarray:
    """Each frame's own TP / (TP + FP + FN). predicted (..., N, V), target (N, V) 0/1 -> (..., N) float64;
    a frame where both are silent scores `both_empty`."""
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(target, dtype=bool)
    if p.shape[-2:] != t.shape:
        raise ValueError(f"predicted {p.shape} and target {t.shape} differ in shape")
    tp = np.sum(p & t, axis=-1)
    wrong = np.sum(p ^ t, axis=-1)  # FP + FN
    total = tp + wrong
    return np.where(total > 0, tp / np.maximum(total, 1), both_empty)


@dataclass
class AuthorAccuracy:
    mean: float  # 0..1: mean over frames of each frame's mean accuracy over its samples
    se: float  # Monte Carlo standard error, from the spread between each frame's chains
    samples: int  # per frame
    chains: int  # per frame; samples / chains drawn from each
    burn_in: int  # Gibbs steps from v_{t-1} before a chain's first sample
    thin: int  # Gibbs steps between a chain's samples
    both_empty_rule: str
    both_empty_fraction: float  # of all (frame, sample) pairs: how much the rule can matter
    mean_if_both_empty_scored_zero: float
    frames: int
    seconds: float

    @property
    def sampler(self) -> str:
        per_chain = self.samples // self.chains
        return (f"{self.chains} block-Gibbs chains per frame from the true v_(t-1), {self.burn_in} steps, "
                f"then {per_chain} samples per chain {self.thin} steps apart")


@torch.no_grad()
def author_accuracy(model: RnnRbm, frames: Frames, samples: int = DEFAULT_AUTHOR_SAMPLES,
                    chains: int = DEFAULT_AUTHOR_CHAINS, burn_in: int = DEFAULT_AUTHOR_BURN_IN,
                    thin: int = DEFAULT_AUTHOR_THIN, sampler: BernoulliSampler | None = None,
                    batch_rows: int = 65536, progress: Callable[[float], None] | None = None) -> AuthorAccuracy:
    """ACC under the author's protocol: per frame, the mean over `samples` draws from its RBM of
    TP / (TP + FP + FN), then the flat mean over all frames.

    Draws come from `chains` block-Gibbs chains per frame started at the true previous frame (part of
    the history a prediction may use), each run `burn_in` steps and then sampled every `thin` steps;
    samples must be a multiple of chains. Samples of one chain are correlated, so the standard error
    is taken between chains.
    """
    if chains < 1 or samples < chains or samples % chains:
        raise ValueError(f"samples ({samples}) must be a positive multiple of chains ({chains})")
    started = time.perf_counter()
    sampler = sampler or BernoulliSampler()
    per_chain = samples // chains
    target = frames.v.numpy().astype(bool)
    n_frames = len(frames)
    chain_means = np.zeros((chains, n_frames))  # each chain's mean accuracy per frame
    both_empty = 0
    frames_per_batch = max(1, batch_rows // chains)
    for first in range(0, n_frames, frames_per_batch):
        part = slice(first, min(n_frames, first + frames_per_batch))
        n = part.stop - part.start
        v = frames.v_prev[part].repeat(chains, 1)  # (chains * n, V), chain-major
        bv, bh = frames.bv[part].repeat(chains, 1), frames.bh[part].repeat(chains, 1)
        for draw in range(per_chain):
            v = gibbs(model, v, bv, bh, burn_in if draw == 0 else thin, sampler)
            drawn = v.numpy().reshape(chains, n, -1)
            chain_means[:, part] += frame_accuracies(drawn, target[part]) / per_chain
            both_empty += int(np.sum(~drawn.any(-1) & ~target[part].any(-1)))
        if progress:
            progress(part.stop / n_frames)
    per_frame = chain_means.mean(0)
    # between-chain variance of each frame's mean, frames independent
    se = float(np.sqrt(np.sum(chain_means.var(0, ddof=1) / chains)) / n_frames) if chains > 1 else math.nan
    both_fraction = both_empty / (n_frames * samples)
    return AuthorAccuracy(float(per_frame.mean()), se, samples, chains, burn_in, thin, BOTH_EMPTY_RULE,
                          both_fraction, float(per_frame.mean()) - both_fraction * BOTH_EMPTY_SCORE,
                          n_frames, time.perf_counter() - started)


# -------------------------------------------------------------------------------- monitor
@torch.no_grad()
def tutorial_monitor(model: RnnRbm, rolls: Sequence[np.ndarray], sampler: BernoulliSampler | None = None,
                     seq_len: int = 100, batch_seqs: int = 64) -> float:
    """The Theano tutorial's monitor (reconstruction cross-entropy after CD-k, called "pseudo
    log-likelihood" there), over seq_len-frame chunks as the trainer's valid monitor. Not the LL."""
    sampler = sampler or BernoulliSampler()
    chunks = [torch.as_tensor(np.asarray(r[i:i + seq_len]), dtype=torch.float32)
              for r in rolls for i in range(0, len(r), seq_len)]
    total, count = 0.0, 0
    for i in range(0, len(chunks), batch_seqs):
        group = chunks[i:i + batch_seqs]
        length = max(c.shape[0] for c in group)
        batch = torch.zeros(len(group), length, group[0].shape[1])
        mask = torch.zeros(len(group), length)
        for j, chunk in enumerate(group):
            batch[j, :chunk.shape[0]] = chunk
            mask[j, :chunk.shape[0]] = 1
        _, monitor = model.cd_loss(batch, sampler, mask)
        n = int(mask.sum())
        total += monitor * n
        count += n
    return total / count
