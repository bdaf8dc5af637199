"""Pretraining and learning-rate schedules for the RNN-RBM: the Trainer's recipe options.

Boulanger-Lewandowski et al. (2012, section 5) initialise the RNN-RBM from simpler models:
* the RBM (W, bv, bh) trained with CD-k on the training frames, shuffled (no time);
* the RNN trained alone to predict the next frame. With W = 0 the RNN-RBM's frame distribution
  is independent Bernoulli(sigmoid(bv_t)) notes: its log-likelihood is exact, so the RNN part
  (bv, Wuv, Wvu, Wuu, bu, u0) trains by plain backpropagation, without sampling, many times faster
  than CD-k. W is zeroed during it and restored afterwards.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..model import BernoulliSampler, RnnRbm
from .progress import Clock, UpdateTimer, count_of

log = logging.getLogger(__name__)

RNN_PRETRAIN_PARAMETERS = ("bv", "Wuv", "Wvu", "Wuu", "bu", "u0", "Wvg", "Wug", "bg")

Batches = Callable[[], list]  # () -> [(batch (B, T, V), mask (B, T) or None)], one epoch, shuffled
REPORT_INTERVAL_S = 0.1  # progress at most this often within an epoch (and at every epoch's end)


@dataclass(frozen=True)
class PretrainingProgress:
    phase: str  # "RBM pretraining", "RNN pretraining"
    epoch: int  # 1-based, in progress
    epochs: int  # the phase's (for the RNN phase a cap: it stops `patience` epochs after its best)
    step: int  # updates done in this epoch
    steps: int
    eta_seconds: float | None  # the phase's time left, from its measured update times; None until measured
    eta_at_most: bool = False  # the phase may end sooner than the ETA says
    message: str = ""


class _PhaseReporter:
    """Progress of one phase: its updates timed (progress.UpdateTimer), reported at most every
    REPORT_INTERVAL_S and at each epoch's end."""

    def __init__(self, phase: str, epochs: int, progress: Callable[[PretrainingProgress], None] | None,
                 clock: Clock, at_most: bool = False):
        self.phase, self.epochs, self.progress, self.clock, self.at_most = phase, epochs, progress, clock, at_most
        self.timer = UpdateTimer(clock)
        self.last = -math.inf
        self.message = ""

    def begin_epoch(self) -> None:
        self.timer.begin()

    def update(self, epoch: int, step: int, steps: int, end: bool = False) -> None:
        """After update `step` of `steps` of epoch (0-based) `epoch`; end: the epoch is over (checks done)."""
        if not end:
            self.timer.tick()
        now = self.clock()
        if self.progress is None or not (end or now - self.last >= REPORT_INTERVAL_S):
            return
        self.last = now
        left = steps - step + (self.epochs - epoch - 1) * steps
        self.progress(PretrainingProgress(self.phase, epoch + 1, self.epochs, step, steps, self.timer.eta(left),
                                          self.at_most, self.message))


def pretrain_rnn(model: RnnRbm, epoch_batches: Batches, epochs: int, lr: float, seed: int = 0,
                 stop: Callable[[], bool] = lambda: False, valid_batches: list | None = None,
                 patience: int = 10, progress: Callable[[PretrainingProgress], None] | None = None,
                 clock: Clock = time.monotonic) -> dict:
    """Train bv and the RNN to maximise sum_t log prod_i Bernoulli(v_ti; sigmoid(bv_t,i)) (W held at 0).

    With valid_batches, the exact valid log-likelihood is measured after every epoch; the best
    epoch's weights are kept and the phase ends after `patience` epochs without a better one, so
    `epochs` is a cap and the same setting suits a small corpus (few updates per epoch) and a big one.
    """
    started = clock()
    reporter = _PhaseReporter("RNN pretraining", epochs, progress, clock, at_most=bool(valid_batches))
    with torch.no_grad():
        # The tutorial's 1e-4 weights sit at a saddle: u_t ≈ tanh(bu), so Wuv gets no gradient, and
        # Wvu's goes through the tiny Wuv. Start where gradients flow (scaled like 1/sqrt(fan-in)).
        generator = torch.Generator().manual_seed(seed)
        R = model.config.n_hidden_recurrent
        scales = {"Wvu": 1 / math.sqrt(8.0), "Wuu": 1 / math.sqrt(R), "Wuv": 1 / math.sqrt(R)}
        if model.gated:  # the gates read the same inputs as the candidate
            scales.update(Wvg=1 / math.sqrt(8.0), Wug=1 / math.sqrt(R))
        for name, scale in scales.items():
            weight = getattr(model, name)
            weight.copy_(torch.randn(weight.shape, generator=generator) * scale)
    params = {n: p for n, p in model.named_parameters() if n in RNN_PRETRAIN_PARAMETERS}
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    saved_w = model.W.detach().clone()
    losses, valid_lls = [], []
    best, best_state, since_best = -math.inf, None, 0
    try:
        with torch.no_grad():
            model.W.zero_()  # only bv_t reaches the visible units; no gradient flows to W
        for epoch in range(epochs):
            total, frames = 0.0, 0
            batches = epoch_batches()
            reporter.begin_epoch()
            for step, (batch, mask) in enumerate(batches, start=1):
                if stop():
                    break
                nll, n = _independent_nll(model, batch, mask)
                loss = nll / n
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(nll.detach())
                frames += n
                reporter.update(epoch, step, len(batches))
            if not frames:
                break
            losses.append(total / frames)
            message = f"RNN pretraining epoch {epoch + 1}/{epochs}: log-likelihood {-losses[-1]:.3f} per step"
            if valid_batches:
                with torch.no_grad():
                    sums = [_independent_nll(model, b, m) for b, m in valid_batches]
                valid_lls.append(-float(sum(s for s, _ in sums)) / sum(n for _, n in sums))
                message += f", valid {valid_lls[-1]:.3f}"
                if valid_lls[-1] > best:
                    best, since_best = valid_lls[-1], 0
                    best_state = {n: p.detach().clone() for n, p in params.items()}
                else:
                    since_best += 1
            log.info(message)
            if valid_batches:
                reporter.message = (f"valid log-likelihood {valid_lls[-1]:.3f}, best {best:.3f}; stops "
                                    f"{count_of(patience, 'epoch')} after its best")
            reporter.update(epoch, len(batches), len(batches), end=True)
            if valid_batches and since_best >= patience:
                break
        if best_state is not None:
            with torch.no_grad():
                for name, value in best_state.items():
                    params[name].copy_(value)
    finally:
        with torch.no_grad():
            model.W.copy_(saved_w)
        model.zero_grad(set_to_none=True)
    return {"epochs": len(losses), "log_likelihood": -losses[-1] if losses else None,
            "valid_log_likelihood": best if valid_lls else None, "seconds": clock() - started}


def _independent_nll(model: RnnRbm, batch: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Summed -log p of the real frames of a batch under independent notes (W = 0), and their number."""
    bv_t, _, _ = model.conditional_biases(batch)  # (B, T, V)
    nll = F.binary_cross_entropy_with_logits(bv_t, batch, reduction="none").sum(-1)  # (B, T)
    if mask is not None:
        return (nll * mask).sum(), int(mask.sum())
    return nll.sum(), nll.numel()


def pretrain_rbm(model: RnnRbm, rolls: Sequence[np.ndarray], epochs: int, lr: float, sampler: BernoulliSampler,
                 rng: np.random.Generator, batch_frames: int = 100, k: int | None = None,
                 stop: Callable[[], bool] = lambda: False,
                 progress: Callable[[PretrainingProgress], None] | None = None, clock: Clock = time.monotonic) -> dict:
    """CD-k on the training frames in random order: W, bv, bh of an RBM with no time."""
    started = clock()
    reporter = _PhaseReporter("RBM pretraining", epochs, progress, clock)
    k = model.config.cd_k if k is None else k
    frames = torch.from_numpy(np.concatenate([np.asarray(r) for r in rolls if len(r)]).astype(np.float32))
    params = [model.W, model.bv, model.bh]
    optimizer = torch.optim.Adam(params, lr=lr)
    monitors = []
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(frames.shape[0]))
        total, count = 0.0, 0
        steps = math.ceil(frames.shape[0] / batch_frames)
        reporter.begin_epoch()
        for start in range(0, frames.shape[0], batch_frames):
            if stop():
                break
            v = frames[order[start:start + batch_frames]]  # (N, V)
            bv = model.bv.expand(v.shape[0], -1)
            bh = model.bh.expand(v.shape[0], -1)
            v_sample = model.gibbs_chain(v, bv.detach(), bh.detach(), k, sampler)
            cost = (model.free_energy(v, bv, bh) - model.free_energy(v_sample, bv, bh)).mean()
            optimizer.zero_grad(set_to_none=True)
            cost.backward()
            optimizer.step()
            with torch.no_grad():  # the reconstruction cross-entropy, as the tutorial's monitor
                p = model.visible_probabilities(sampler(model.hidden_probabilities(v_sample, bh)), bv)
                total += float((v * torch.log(p.clamp_min(1e-7))
                                + (1 - v) * torch.log((1 - p).clamp_min(1e-7))).sum())
                count += v.shape[0]
            reporter.update(epoch, start // batch_frames + 1, steps)
        if count:
            monitors.append(total / count)
            log.info("RBM pretraining epoch %d/%d: monitor %.3f", epoch + 1, epochs, monitors[-1])
            reporter.update(epoch, steps, steps, end=True)
    model.zero_grad(set_to_none=True)
    return {"epochs": len(monitors), "monitor": monitors[-1] if monitors else None,
            "seconds": clock() - started}


def pretrain(model: RnnRbm, config, train_rolls: Sequence[np.ndarray], epoch_batches: Batches,
             valid_batches: list | None, sampler: BernoulliSampler, stop: Callable[[], bool],
             progress: Callable[[PretrainingProgress], None] | None = None,
             clock: Clock = time.monotonic) -> dict[str, dict]:
    """The phases `config` (a TrainConfig) asks for before epoch 1, RBM then RNN: what each did, by name;
    `progress` hears of each phase's updates (at most every REPORT_INTERVAL_S) and epochs."""
    done = {}
    if config.rbm_pretrain_epochs:
        done["rbm"] = pretrain_rbm(model, train_rolls, config.rbm_pretrain_epochs, config.pretrain_lr, sampler,
                                   np.random.default_rng(config.seed), stop=stop, progress=progress, clock=clock)
    if config.rnn_pretrain_epochs:
        done["rnn"] = pretrain_rnn(model, epoch_batches, config.rnn_pretrain_epochs, config.pretrain_lr, config.seed,
                                   stop=stop, valid_batches=valid_batches, progress=progress, clock=clock)
    log.info("pretraining: %s", done)
    return done


def learning_rate_factor(schedule: str, epoch: int, epochs: int, min_ratio: float) -> float:
    """Multiplier of the base learning rates during epoch (1-based) of `epochs`."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":  # from 1 down to min_ratio at the last epoch
        progress = (epoch - 1) / max(1, epochs - 1)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning-rate schedule {schedule!r} (constant or cosine)")
