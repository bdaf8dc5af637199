"""Harmonising a given soprano: how well the RNN-RBM fills the lower voices of a chorale.

For each frame of a test piece the true history drives the RNN (as every measure here does). The
soprano is the frame's highest sounding key; "the soprano is at key s" also says that no key above s
sounds, so the clamp holds key s on and every key above it off, and the model fills the keys below s
(the free units). A frame with no sounding key has no soprano and nothing to fill: it is left out of
every measure (it still drives the RNN) and counted.

The lower voices of any frame are its sounding keys but the highest. Four answers are compared on them:
  * clamped: frames drawn from the frame's RBM with the soprano clamped (exact clamped Gibbs);
  * unconditional: frames drawn from the same RBM with nothing clamped; their own top key is their
    soprano, which may differ from Bach's, and their lower voices are scored against Bach's;
  * repeat: the previous frame's lower voices (silence before a piece's first frame);
and the log-likelihoods, by AIS:
  * log p(lower voices | soprano, history) = -F'(v_free) - log Z', the clamped RBM being an RBM over
    the free units whose hidden biases take in the clamped keys: bh' = bh + v_clamped W[clamped];
  * log p(frame | history), the paper's measure, for reference; their difference is log p(soprano | history).
The repeat baseline's log-likelihood is -inf wherever it is wrong (a single guess has probability 0
elsewhere): it has none.

Accuracy is the author's ACC protocol restricted to the lower voices: each sample's own
TP / (TP + FP + FN) (both silent scores 1, as in quality/accuracy.py), averaged over the frame's
samples, then over frames. Standard errors treat pieces as the independent units (cluster-robust):
frames of one piece are not independent, and the frames may be a subsample.

Shapes: N frames, S samples per frame, V visible units, H hidden units.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..model import BernoulliSampler, RnnRbm
from .accuracy import BOTH_EMPTY_RULE, frame_accuracies
from .ais import ais_log_partition, base_marginals
from .frames import Frames, conditional_frames

# A clamped-off key's visible bias in the folded RBM: exp(-1e4) is 0 in float64, so the key never
# sounds and adds nothing to log Z, and sigmoid/softplus of it are exact zeros (no inf * 0 anywhere).
CLAMPED_OFF_BIAS = -1e4
DEFAULT_SAMPLES = 4
DEFAULT_GIBBS_STEPS = 200
DEFAULT_CHAINS = 16
DEFAULT_BETAS = 300
CHAIN_BYTES = 1 << 27  # RnnRbm.sample_frame draws all its steps' noise at once: bound one call's share


# ------------------------------------------------------------------------------ the voices
def _as_bool(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    return np.asarray(frames, dtype=bool)


def soprano_keys(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Index of each frame's highest sounding key, -1 for a silent frame. (N, V) 0/1 -> (N,) int."""
    on = _as_bool(frames)
    highest = on.shape[-1] - 1 - np.argmax(on[..., ::-1], axis=-1)
    return np.where(on.any(-1), highest, -1)


def lower_voices(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Each frame without its highest sounding key. (..., V) 0/1 -> (..., V) bool."""
    on = _as_bool(frames).copy()
    top = soprano_keys(on.reshape(-1, on.shape[-1])).reshape(on.shape[:-1])
    flat = on.reshape(-1, on.shape[-1])
    sounding = np.flatnonzero(top.reshape(-1) >= 0)
    flat[sounding, top.reshape(-1)[sounding]] = False
    return flat.reshape(on.shape)


def soprano_clamp(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The clamp saying "the soprano is at key s": keys s and above are held, s on, the rest off.
    frames (N, V) with a sounding key each -> mask (N, V) bool, values (N, V) of frames' dtype."""
    top = torch.as_tensor(soprano_keys(frames))
    if (top < 0).any():
        raise ValueError("a silent frame has no soprano to clamp")
    keys = torch.arange(frames.shape[1])
    mask = keys.unsqueeze(0) >= top.unsqueeze(1)  # (N, V)
    values = (keys.unsqueeze(0) == top.unsqueeze(1)).to(frames.dtype)
    return mask, values


def repeat_baseline(v_prev: np.ndarray | torch.Tensor) -> np.ndarray:
    """The previous frame's lower voices as the guess for this frame's. (N, V) -> (N, V) bool."""
    return lower_voices(v_prev)


# ---------------------------------------------------------------------------- sampling
@torch.no_grad()
def draw_frames(model: RnnRbm, frames: Frames, samples: int, gibbs_steps: int, sampler: BernoulliSampler,
                clamp: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """`samples` independent block-Gibbs chains per frame from its RBM (biases from the true history),
    each started at the true previous frame (with the clamp applied) and run `gibbs_steps` steps.
    clamp: (mask, values) (N, V) or None. -> (S, N, V) bool."""
    n, V = frames.v.shape
    per_row = gibbs_steps * (V + model.config.n_hidden) * frames.v.element_size()
    rows = max(1, CHAIN_BYTES // max(per_row, 1))
    out = np.empty((samples, n, V), dtype=bool)
    for s in range(samples):
        for first in range(0, n, rows):
            part = slice(first, min(n, first + rows))
            mask, values = (clamp[0][part], clamp[1][part]) if clamp is not None else (None, None)
            drawn = model.sample_frame(frames.u_prev[part], sampler, gibbs_steps, clamp_mask=mask,
                                       clamp_values=values, start=frames.v_prev[part])
            out[s, part] = drawn.numpy() > 0
    return out


# ---------------------------------------------------------------------- log-likelihoods
@dataclass
class FrameLogLikelihoods:
    values: np.ndarray  # (N,) nats: -F(v) - log Z per frame
    se: np.ndarray  # (N,) AIS standard error of each
    below_sure_bound: np.ndarray  # (N,) bool: AIS log Z fell below the sum over the distinct states seen
    ess: np.ndarray  # (N,) effective sample size of the importance weights
    expected_accuracy: np.ndarray  # (N,) E[TP / (TP + FP + FN)] of a draw over the units measured, AIS-weighted


@torch.no_grad()
def frame_log_likelihoods(model: RnnRbm, v: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, chains: int,
                          n_betas: int, sampler: BernoulliSampler,
                          progress: Callable[[float], None] | None = None) -> FrameLogLikelihoods:
    """log p(v_n) under each RBM n (its biases bv (N, V), bh (N, H); W the model's), log Z by AIS from
    a base at the RBM's estimated marginals. A key whose bias is CLAMPED_OFF_BIAS is kept off in the
    base too, so AIS never visits it."""
    W = model.W.detach()
    base = base_marginals(W, bv, bh, sampler)
    off = bv <= CLAMPED_OFF_BIAS / 2
    base = torch.where(off, bv, base)
    ais = ais_log_partition(W, bv, bh, chains, n_betas, sampler, base, extra_states=v, progress=progress)
    neg_f = -model.free_energy(v, bv, bh).double().numpy()
    values = neg_f - ais.log_z
    return FrameLogLikelihoods(values, ais.log_z_se, ais.log_z < ais.log_z_lower - 1e-6, ais.ess,
                               ais.expected_frame_accuracy)


def clamped_rbm(model: RnnRbm, frames: Frames, mask: torch.Tensor,
                values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The RBM over the free units given the clamped ones, written over all V keys: the clamped keys'
    visible terms folded into the hidden biases (bh' = bh + v_clamped W), the keys themselves held off.
    Returns (the frames' free part, bv', bh'): log p(v_free | v_clamped) = -F'(v_free) - log Z'."""
    W = model.W.detach()
    held = values * mask.to(values.dtype)  # (N, V)
    bh_clamped = frames.bh + held @ W  # (N, H)
    bv_clamped = frames.bv.masked_fill(mask, CLAMPED_OFF_BIAS)  # (N, V)
    v_free = frames.v * (~mask).to(frames.v.dtype)
    return v_free, bv_clamped, bh_clamped


@torch.no_grad()
def clamped_log_likelihoods(model: RnnRbm, frames: Frames, mask: torch.Tensor, values: torch.Tensor, chains: int,
                            n_betas: int, sampler: BernoulliSampler,
                            progress: Callable[[float], None] | None = None) -> FrameLogLikelihoods:
    """log p(v_free | v_clamped, history) of each frame, by AIS on its clamped RBM."""
    v_free, bv_clamped, bh_clamped = clamped_rbm(model, frames, mask, values)
    return frame_log_likelihoods(model, v_free, bv_clamped, bh_clamped, chains, n_betas, sampler, progress)


# -------------------------------------------------------------------------- the measure
def cluster_se(values: np.ndarray, groups: np.ndarray) -> float:
    """Standard error of the mean of `values` when the groups (pieces), not the values, are independent:
    sqrt(G / (G - 1) * sum_g (sum_{i in g} (x_i - mean))^2) / N."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    _, index = np.unique(groups, return_inverse=True)
    g = index.max() + 1 if n else 0
    if g < 2:
        return math.nan
    residual_sums = np.bincount(index, weights=values - values.mean(), minlength=g)
    return float(math.sqrt(g / (g - 1) * np.sum(residual_sums ** 2)) / n)


@dataclass
class Measure:
    mean: float
    se: float  # cluster-robust over pieces
    note: str = ""


@dataclass
class Harmonisation:
    frames: int  # measured frames (with a soprano)
    frames_total: int  # every frame of the pieces, silent ones included
    silent_frames: int  # frames with no sounding key among those drawn: left out
    pieces: int
    samples: int  # per frame and answer
    gibbs_steps: int  # per sample, from the true previous frame
    chains: int  # AIS
    betas: int
    accuracy_clamped: Measure
    accuracy_unconditional: Measure
    accuracy_repeat: Measure
    accuracy_clamped_ais: Measure  # the same expectation from the AIS-weighted final states (no mixing needed)
    soprano_kept_unconditional: float  # fraction of unconditional samples whose top key is Bach's soprano
    ll_lower_given_soprano: Measure | None
    ll_frame: Measure | None
    ll_soprano: Measure | None  # log p(frame) - log p(lower | soprano): the soprano's own log-probability
    ll_repeat: str
    exact_lower_repeat: float  # fraction of frames whose lower voices equal the previous frame's
    exact_lower_clamped: float  # fraction of clamped samples whose lower voices equal Bach's
    ais_below_bound: float  # fraction of AIS estimates (both) below their sure bound: AIS not converged
    both_empty_rule: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def pick_frames(total: int, count: int | None, seed: int) -> np.ndarray:
    """`count` distinct frame indices drawn uniformly (sorted), or all of them."""
    if count is None or count >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))


@torch.no_grad()
def harmonisation(model: RnnRbm, rolls: Sequence[np.ndarray], max_frames: int | None = None,
                  samples: int = DEFAULT_SAMPLES, gibbs_steps: int = DEFAULT_GIBBS_STEPS,
                  chains: int = DEFAULT_CHAINS, n_betas: int = DEFAULT_BETAS, seed: int = 0,
                  progress: Callable[[str, float], None] | None = None) -> Harmonisation:
    """Measure soprano harmonisation on the pieces `rolls` (module docstring). max_frames: measure a
    uniform random subset of the frames (the RNN still runs over every piece). chains=0 skips the
    log-likelihoods."""
    started = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    sampler = BernoulliSampler(seed)
    rolls = [r for r in rolls if len(r)]
    everything = conditional_frames(model, rolls)
    piece_of = np.repeat(np.arange(len(rolls)), [len(r) for r in rolls])
    picked = pick_frames(len(everything), max_frames, seed)
    sounding = soprano_keys(everything.v[picked]) >= 0
    silent = int(np.sum(~sounding))
    picked = picked[sounding]
    frames, pieces = everything.subset(torch.from_numpy(picked)), piece_of[picked]
    truth = lower_voices(frames.v)  # (N, V)
    mask, values = soprano_clamp(frames.v)

    def acc(guesses: np.ndarray) -> Measure:  # guesses (S, N, V) of lower voices
        per_frame = frame_accuracies(guesses, truth).mean(0)
        return Measure(float(per_frame.mean()), cluster_se(per_frame, pieces))

    report("clamped samples", 0.0)
    clamped = draw_frames(model, frames, samples, gibbs_steps, sampler, (mask, values))
    report("unconditional samples", 0.0)
    free = draw_frames(model, frames, samples, gibbs_steps, sampler)
    free_top = soprano_keys(free.reshape(-1, free.shape[-1])).reshape(free.shape[:2])
    clamped_lower, free_lower = lower_voices(clamped), lower_voices(free)
    guess = repeat_baseline(frames.v_prev)[None]
    ll_lower = ll_frame = ll_soprano = ais_acc = None
    below = math.nan
    if chains > 0:
        lower = clamped_log_likelihoods(model, frames, mask, values, chains, n_betas, sampler,
                                        lambda f: report("AIS, clamped", f))
        whole = frame_log_likelihoods(model, frames.v, frames.bv, frames.bh, chains, n_betas, sampler,
                                      lambda f: report("AIS, whole frame", f))
        n = len(frames)
        ll_lower = Measure(float(lower.values.mean()), cluster_se(lower.values, pieces),
                           f"AIS standard error alone {np.sqrt(np.sum(lower.se ** 2)) / n:.4f}")
        ll_frame = Measure(float(whole.values.mean()), cluster_se(whole.values, pieces),
                           f"AIS standard error alone {np.sqrt(np.sum(whole.se ** 2)) / n:.4f}")
        difference = whole.values - lower.values
        ll_soprano = Measure(float(difference.mean()), cluster_se(difference, pieces))
        ais_acc = Measure(float(lower.expected_accuracy.mean()), cluster_se(lower.expected_accuracy, pieces))
        below = float(np.mean(np.concatenate([lower.below_sure_bound, whole.below_sure_bound])))
    return Harmonisation(
        frames=len(frames), frames_total=len(everything), silent_frames=silent, pieces=len(np.unique(pieces)),
        samples=samples, gibbs_steps=gibbs_steps, chains=chains, betas=n_betas,
        accuracy_clamped=acc(clamped_lower), accuracy_unconditional=acc(free_lower), accuracy_repeat=acc(guess),
        accuracy_clamped_ais=ais_acc or Measure(math.nan, math.nan, "not measured (no AIS)"),
        soprano_kept_unconditional=float(np.mean(free_top == soprano_keys(frames.v)[None])),
        ll_lower_given_soprano=ll_lower, ll_frame=ll_frame, ll_soprano=ll_soprano,
        ll_repeat="-inf (one guess: probability 0 on every frame it gets wrong)",
        exact_lower_repeat=float(np.mean(np.all(guess[0] == truth, axis=-1))),
        exact_lower_clamped=float(np.mean(np.all(clamped_lower == truth[None], axis=-1))),
        ais_below_bound=below, both_empty_rule=BOTH_EMPTY_RULE, seconds=time.perf_counter() - started)
