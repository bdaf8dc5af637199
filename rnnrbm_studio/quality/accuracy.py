"""Frame accuracy (Bay et al. 2009) of an RNN-RBM's next-frame predictions, and the Theano tutorial's
training monitor (a reconstruction cross-entropy, NOT a likelihood), for reference.

ACC: frame t is predicted from the true frames before it by the model's own Gibbs sampler (the one
that composes in the app); ACC = sum_t TP / sum_t (TP + FP + FN), averaged over several independent
predictions.
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
            predicted = model.gibbs_chain(v0, frames.bv[part], frames.bh[part], gibbs_steps, sampler)  # (n, V)
            counts += accuracy_counts(predicted.numpy(), target[part])
        per_sample.append(accuracy_from_counts(*counts))
        totals += counts
        if progress:
            progress((s + 1) / samples)
    values = np.array(per_sample)
    se = float(values.std(ddof=1) / math.sqrt(samples)) if samples > 1 else math.nan
    return Accuracy(float(values.mean()), se, samples, gibbs_steps, start, per_sample, int(totals[0]),
                    int(totals[1]), int(totals[2]), time.perf_counter() - started)


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
