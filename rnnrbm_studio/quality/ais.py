"""The log-likelihood per time step of an RNN-RBM (Boulanger-Lewandowski et al. 2012): the mean over
frames of log p(v_t | v_<t) = -F_t(v_t) - log Z_t. Each frame's RBM (biases bv_t, bh_t from the true
history) has its own intractable partition function Z_t, estimated with annealed importance sampling
(AIS, Salakhutdinov & Murray 2008) from a factorial base RBM. All frames' chains run together, in
large batches.

Shapes: N frames, C AIS chains per frame, V visible units, H hidden units.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..model import BernoulliSampler, RnnRbm
from .accuracy import accuracy_from_counts, frame_accuracies
from .frames import Frames

DEFAULT_CHAINS = 32
DEFAULT_BETAS = 100
BASE_FLOOR = 1e-3  # the base marginals are kept in [floor, 1 - floor]: it must cover the target
BATCH_ROWS = 16384  # AIS chains advanced together (frames x chains); ~10 MB per (rows, H) buffer


def beta_schedule(n_betas: int) -> np.ndarray:
    """n_betas + 1 equally spaced inverse temperatures from 0 to 1.

    Salakhutdinov & Murray (2008) crowd their temperatures near 1 because they start from a
    data base-rate RBM, far from the target. Our base is each frame's own estimated marginals,
    already close: on a trained Nottingham model (2,115 valid frames, 16 chains) equal spacing
    erred by 0.007 nats at 100 temperatures where their spacing erred by 0.048 (docs/quality.md).
    """
    if n_betas < 1:
        raise ValueError("AIS needs at least one intermediate temperature")
    return np.linspace(0.0, 1.0, n_betas + 1)


@dataclass
class AisResult:
    log_z: np.ndarray  # (N,) float64 estimate of log Z per RBM
    log_z_se: np.ndarray  # (N,) delta-method standard error of each estimate
    ess: np.ndarray  # (N,) effective sample size of the importance weights (1..C)
    log_z_lower: np.ndarray  # (N,) log of the sum of exp(-F) over distinct final states: a sure lower bound
    expected_counts: np.ndarray | None = None  # (N, 3) E[TP], E[FP], E[FN] of a draw against the data frame
    expected_frame_accuracy: np.ndarray | None = None  # (N,) E[TP / (TP + FP + FN)] of a draw (author's ACC)


@torch.no_grad()
def ais_log_partition(W: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, chains: int, n_betas: int,
                      sampler: BernoulliSampler, base_bias: torch.Tensor | None = None,
                      extra_states: torch.Tensor | None = None, batch_rows: int = BATCH_ROWS,
                      progress: Callable[[float], None] | None = None) -> AisResult:
    """log Z of N RBMs sharing W (V, H) with their own biases bv (N, V), bh (N, H), by AIS.

    The base RBM has W = 0, hidden biases 0 and visible biases base_bias (N, V) (default bv):
    its Z is exact. Intermediate distributions p_k(v) ∝ exp((1-b_k) base.v) * exp(-b_k F(v)) with F
    the target's free energy, so p_0 is the base and p_K the target; the transition at b_k is one
    block Gibbs step v -> h -> v of p_k(v, h) ∝ exp((1-b_k) base.v + b_k (bv.v + bh.h + v W h)).
    extra_states (N, V), the data frames: they join the final chain states in log_z_lower, and the
    final states, weighted by their importance weights (a weighted sample of each RBM whether or not
    the chains mixed), give the expected TP, FP, FN of a draw against them.
    """
    n_frames = bv.shape[0]
    base_bias = bv if base_bias is None else base_bias
    betas = beta_schedule(n_betas)
    frames_per_batch = max(1, batch_rows // chains)
    out = {k: np.empty(n_frames) for k in ("log_z", "se", "ess", "lower")}
    out["counts"] = np.empty((n_frames, 3))
    out["frame_acc"] = np.empty(n_frames)
    for start in range(0, n_frames, frames_per_batch):
        stop = min(n_frames, start + frames_per_batch)
        extra = extra_states[start:stop] if extra_states is not None else None
        result = _ais_batch(W, bv[start:stop], bh[start:stop], base_bias[start:stop], betas, chains, sampler, extra)
        for key, values in zip(("log_z", "se", "ess", "lower", "counts", "frame_acc"), result):
            if values is not None:
                out[key][start:stop] = values
        if progress:
            progress(stop / n_frames)
    return AisResult(out["log_z"], out["se"], out["ess"], out["lower"],
                     out["counts"] if extra_states is not None else None,
                     out["frame_acc"] if extra_states is not None else None)


def _ais_batch(W, bv, bh, base, betas, chains, sampler, extra):
    n, V = bv.shape
    H = W.shape[1]
    rows = n * chains
    dtype = W.dtype
    bh_r = bh.repeat_interleave(chains, 0)  # (rows, H)
    base_r = base.repeat_interleave(chains, 0)  # (rows, V)
    lift_r = bv.repeat_interleave(chains, 0) - base_r  # (rows, V): bv - base, what annealing adds
    Wt = W.t().contiguous()  # (H, V)
    # v ~ p_0: independent Bernoulli(sigmoid(base)); the base's log Z sums the hidden units out too.
    v = sampler.fill_uniform(torch.empty(rows, V, dtype=dtype)).lt_(torch.sigmoid(base_r)).to(dtype)
    log_z_base = F.softplus(base.double()).sum(1) + H * math.log(2.0)  # (n,)
    log_w = torch.zeros(rows, dtype=torch.float64)
    x = torch.empty(rows, H, dtype=dtype)
    h = torch.empty(rows, H, dtype=dtype)
    a = torch.empty(rows, V, dtype=dtype)
    zero = torch.zeros((), dtype=dtype)
    n_steps = len(betas) - 1
    for k in range(1, n_steps + 1):
        b0, b1 = float(betas[k - 1]), float(betas[k])
        torch.addmm(bh_r, v, W, out=x)  # (rows, H): v W + bh for the current states
        # log p*_k(v) - log p*_{k-1}(v) = (b1-b0) (bv-base).v + sum_j softplus(b1 x_j) - softplus(b0 x_j).
        # The hidden units are summed out (Rao-Blackwellised): on 12-unit RBMs this gave ~5x lower error
        # at equal CPU time than weights on the joint (v, h) state.
        # (torch.logaddexp(z, 0) is softplus, faster than F.softplus on the CPU. Simpson's rule on
        # x sigmoid(b x) instead agreed to 2e-4 nats but saved only 10%: not worth the approximation.)
        step = torch.logaddexp(x * b1, zero).sum(1) - torch.logaddexp(x * b0, zero).sum(1)
        step += (b1 - b0) * (lift_r * v).sum(1)
        log_w += step.double()
        if k == n_steps:
            break
        # one Gibbs step of p_k: h ~ sigmoid(b1 x), v ~ sigmoid(base + b1 (bv - base + h W^T))
        h = sampler.fill_uniform(h).lt_(torch.sigmoid_(x.mul_(b1)))
        torch.addmm(lift_r, h, Wt, out=a)
        a.mul_(b1).add_(base_r).sigmoid_()
        v = sampler.fill_uniform(v).lt_(a)  # the old states are no longer needed: overwrite them
    log_w = log_w.view(n, chains)
    log_mean_w = torch.logsumexp(log_w, 1) - math.log(chains)  # (n,)
    weights = torch.exp(log_w - log_w.max(1, keepdim=True).values)  # (n, C), max weight 1
    mean_w = weights.mean(1)
    # delta method: se(log mean w) ≈ sd(w) / (sqrt(C) mean(w))
    se = weights.std(1, correction=1) / (math.sqrt(chains) * mean_w) if chains > 1 else torch.full_like(mean_w, math.inf)
    ess = weights.sum(1) ** 2 / (weights ** 2).sum(1)
    states = v.view(n, chains, V)
    lower = _log_sum_distinct(W, bv, bh, states, extra)
    counts = frame_acc = None
    if extra is not None:
        target = extra.unsqueeze(1).to(dtype)  # (n, 1, V)
        per_chain = torch.stack([(states * target).sum(-1), (states * (1 - target)).sum(-1),
                                 ((1 - states) * target).sum(-1)], dim=-1).double()  # (n, C, 3)
        normalised = (weights / weights.sum(1, keepdim=True)).numpy()  # (n, C)
        counts = (normalised[..., None] * per_chain.numpy()).sum(1)  # (n, 3)
        frame_acc = (normalised * frame_accuracies(states.numpy().transpose(1, 0, 2), extra.numpy()).T).sum(1)
    return ((log_z_base + log_mean_w).numpy(), se.numpy(), ess.numpy(), lower, counts, frame_acc)


def _log_sum_distinct(W, bv, bh, states, extra):
    """log sum over the distinct states of each RBM of exp(-F(v)). states: (n, C, V), extra: (n, V) or None.

    Every term is part of Z, so this is a lower bound on log Z that holds whatever the sampler did.
    """
    if extra is not None:
        states = torch.cat([states, extra.unsqueeze(1).to(states.dtype)], dim=1)
    n, c, V = states.shape
    bits = np.packbits(states.numpy().astype(np.uint8), axis=2).reshape(n * c, -1)
    keyed = np.concatenate([np.repeat(np.arange(n, dtype=np.int64), c).view(np.uint8).reshape(n * c, 8),
                            bits], axis=1)
    _, first = np.unique(keyed, axis=0, return_index=True)
    owner = torch.from_numpy(first // c)  # (distinct,) which RBM each distinct state belongs to
    flat = states.reshape(n * c, V)[torch.from_numpy(first)].double()
    neg_f = (flat * bv[owner].double()).sum(1) + F.softplus(flat @ W.double() + bh[owner].double()).sum(1)
    top = torch.full((n,), -math.inf, dtype=torch.float64).scatter_reduce(0, owner, neg_f, "amax")
    total = torch.zeros(n, dtype=torch.float64).index_add_(0, owner, torch.exp(neg_f - top[owner]))
    return (top + torch.log(total)).numpy()


@torch.no_grad()
def base_marginals(W: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, sampler: BernoulliSampler,
                   chains: int = 32, steps: int = 60, floor: float = BASE_FLOOR,
                   batch_rows: int = BATCH_ROWS) -> torch.Tensor:
    """Visible biases of a factorial base close to each RBM: logit of its marginals, estimated by
    averaging p(v | h) over the second half of short Gibbs chains started from p(v | h = 0).

    The closer the base is to the target, the fewer temperatures AIS needs; the floor keeps every
    state possible under the base. The chains never see the data, so the base cannot favour it.
    """
    n, V = bv.shape
    out = torch.empty(n, V, dtype=bv.dtype)
    frames_per_batch = max(1, batch_rows // chains)
    Wt = W.t().contiguous()  # (H, V)
    for start in range(0, n, frames_per_batch):
        stop = min(n, start + frames_per_batch)
        bv_r = bv[start:stop].repeat_interleave(chains, 0)  # (rows, V)
        bh_r = bh[start:stop].repeat_interleave(chains, 0)  # (rows, H)
        rows = bv_r.shape[0]
        # buffers reused in place (uniforms compared with probabilities become the 0/1 states)
        p_v = torch.sigmoid(bv_r)
        v = sampler.fill_uniform(torch.empty_like(p_v)).lt_(p_v)
        x = torch.empty(rows, W.shape[1], dtype=bv.dtype)
        h = torch.empty_like(x)
        total = torch.zeros_like(p_v)
        for step in range(steps):
            torch.addmm(bh_r, v, W, out=x)
            h = sampler.fill_uniform(h).lt_(x.sigmoid_())
            torch.addmm(bv_r, h, Wt, out=p_v).sigmoid_()
            v = sampler.fill_uniform(v).lt_(p_v)
            if step >= steps // 2:
                total += p_v
        mean = (total / (steps - steps // 2)).view(stop - start, chains, V).mean(1)
        out[start:stop] = torch.logit(mean.clamp(floor, 1 - floor))
    return out


# -------------------------------------------------------------------------- log-likelihood
@dataclass
class LogLikelihood:
    mean: float  # nats per time step
    se: float  # standard error from the AIS estimates (frames' chains are independent)
    chains: int
    betas: int
    base: str
    upper_bound: float  # mean of -F(v_t) - log(sum over distinct states seen): the true LL is below it
    # the LL with each frame's AIS log Z raised to the sure lower bound where it fell below it: closer to
    # the truth where AIS missed states it should have found (as much as mean where AIS converged)
    mean_floored: float
    frames_below_lower_bound: float  # fraction of frames whose AIS log Z fell below the sure lower bound
    mean_ess: float  # mean effective sample size of the importance weights (out of `chains`)
    seconds: float
    # expected frame accuracy sum_t E[TP] / sum_t E[TP + FP + FN] under each frame's RBM, from the
    # importance-weighted final AIS states: free with the LL, and unbiased by slow Gibbs mixing
    accuracy: float | None = None
    # the author's ACC (each frame's expected TP / (TP + FP + FN), then the mean over frames) from the
    # same weighted states: a check of the Gibbs-sampled `author_accuracy` that does not depend on mixing
    accuracy_author: float | None = None


@torch.no_grad()
def log_likelihood(model: RnnRbm, frames: Frames, chains: int = DEFAULT_CHAINS, n_betas: int = DEFAULT_BETAS,
                   sampler: BernoulliSampler | None = None, base: str = "marginals",
                   progress: Callable[[float], None] | None = None, base_chains: int = 32,
                   base_steps: int = 60) -> LogLikelihood:
    """Mean over frames of log p(v_t | history) = -F_t(v_t) - log Z_t, log Z_t by AIS."""
    started = time.perf_counter()
    sampler = sampler or BernoulliSampler()
    W = model.W.detach()
    if base == "marginals":
        base_bias = base_marginals(W, frames.bv, frames.bh, sampler, base_chains, base_steps)
    elif base == "biases":
        base_bias = frames.bv
    else:
        raise ValueError(f"unknown AIS base {base!r} (marginals or biases)")
    ais = ais_log_partition(W, frames.bv, frames.bh, chains, n_betas, sampler, base_bias,
                            extra_states=frames.v, progress=progress)
    neg_f = -model.free_energy(frames.v, frames.bv, frames.bh).double().numpy()  # (N,)
    n = len(frames)
    return LogLikelihood(
        mean=float(np.mean(neg_f - ais.log_z)), se=float(np.sqrt(np.sum(ais.log_z_se ** 2)) / n),
        chains=chains, betas=n_betas, base=base, upper_bound=float(np.mean(neg_f - ais.log_z_lower)),
        mean_floored=float(np.mean(neg_f - np.maximum(ais.log_z, ais.log_z_lower))),
        frames_below_lower_bound=float(np.mean(ais.log_z < ais.log_z_lower - 1e-6)),
        mean_ess=float(np.mean(ais.ess)), seconds=time.perf_counter() - started,
        accuracy=accuracy_from_counts(*ais.expected_counts.sum(0)),
        accuracy_author=float(np.mean(ais.expected_frame_accuracy)))


# ------------------------------------------------------------------------------- exact
@torch.no_grad()
def exact_log_partition(W: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor) -> np.ndarray:
    """log Z by enumerating all 2^V visible states (V <= 20): for testing the estimator.
    W (V, H), bv (N, V), bh (N, H) -> (N,) float64."""
    V = W.shape[0]
    if V > 20:
        raise ValueError("exact enumeration is for V <= 20")
    states = torch.tensor([[(i >> j) & 1 for j in range(V)] for i in range(2 ** V)], dtype=torch.float64)
    W64, bv64, bh64 = W.double(), bv.double(), bh.double()
    neg_f = bv64 @ states.t() + F.softplus((states @ W64).unsqueeze(0) + bh64.unsqueeze(1)).sum(-1)  # (N, 2^V)
    return torch.logsumexp(neg_f, 1).numpy()
