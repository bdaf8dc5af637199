"""The author's frame accuracy (each sample's own TP / (TP + FP + FN), averaged over samples, then over
frames): hand-computed frames, and the samplers against an RNN-RBM small enough to enumerate."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from rnnrbm_studio.model import BernoulliSampler, RnnRbm
from rnnrbm_studio.quality.accuracy import (BOTH_EMPTY_SCORE, accuracy_counts, accuracy_from_counts,
                                            author_accuracy, frame_accuracies)
from rnnrbm_studio.quality.ais import log_likelihood
from rnnrbm_studio.quality.frames import conditional_frames

from model_fixtures import random_weights_model

V, H, R = 5, 4, 3
ALL_V = np.array(list(itertools.product([0, 1], repeat=V)), dtype=np.float64)  # (32, V)


def test_frame_accuracies_by_hand():
    predicted = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0]])
    target = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0]])
    # TP 1, FP 1, FN 1 -> 1/3; both silent -> the rule; a wrong note -> 0; a missed note -> 0; exact -> 1
    np.testing.assert_allclose(frame_accuracies(predicted, target), [1 / 3, BOTH_EMPTY_SCORE, 0, 0, 1])
    assert BOTH_EMPTY_SCORE == 1.0
    np.testing.assert_allclose(frame_accuracies(predicted, target, both_empty=0.0), [1 / 3, 0, 0, 0, 1])
    # a leading samples axis: each sample is scored against the same frames
    two = np.stack([predicted, target])
    np.testing.assert_allclose(frame_accuracies(two, target), [[1 / 3, 1, 0, 0, 1], [1, 1, 1, 1, 1]])
    with pytest.raises(ValueError):
        frame_accuracies(predicted[:, :3], target)


def test_the_author_averages_frames_where_pooling_sums_counts():
    """One frame of 1 note found, one of 9 notes all missed: per frame (1 + 0) / 2, pooled 1 / 10."""
    target = np.zeros((2, 12), dtype=np.uint8)
    target[0, 0] = 1
    target[1, 1:10] = 1
    predicted = np.zeros_like(target)
    predicted[0, 0] = 1
    assert frame_accuracies(predicted, target).mean() == pytest.approx(0.5)
    assert accuracy_from_counts(*accuracy_counts(predicted, target)) == pytest.approx(0.1)


# ------------------------------------------------------------------ samplers against enumeration
def tiny_model(seed: int = 3, scale: float = 2.0) -> RnnRbm:
    return random_weights_model(seed, scale, n_visible=V, n_hidden=H, n_hidden_recurrent=R)


def exact_author_accuracy(model: RnnRbm, frames) -> np.ndarray:
    """Each frame's E[TP / (TP + FP + FN)] under its RBM, by enumerating all 2^V frames (h summed out)."""
    W = model.W.detach().double().numpy()
    bv, bh = frames.bv.double().numpy(), frames.bh.double().numpy()  # (N, V), (N, H)
    neg_f = bv @ ALL_V.T + np.logaddexp(0, (ALL_V @ W)[None] + bh[:, None]).sum(-1)  # (N, 32)
    p = np.exp(neg_f - neg_f.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = frame_accuracies(np.broadcast_to(ALL_V[:, None], (32, *frames.v.shape)), frames.v.numpy())  # (32, N)
    return (p * scores.T).sum(1)


@pytest.fixture(scope="module")
def tiny_frames():
    model = tiny_model()
    rng = np.random.default_rng(5)
    rolls = [(rng.random((t, V)) < 0.35).astype(np.uint8) for t in (6, 9)]
    rolls[0][2] = 0  # a silent frame: both-empty samples occur
    frames = conditional_frames(model, rolls)
    return model, frames, exact_author_accuracy(model, frames)


def test_the_exact_expectation_differs_from_pooled_counts(tiny_frames):
    """On these frames the two protocols differ (else the tests below could not tell them apart)."""
    model, frames, exact = tiny_frames
    W = model.W.detach().double().numpy()
    bv, bh = frames.bv.double().numpy(), frames.bh.double().numpy()
    neg_f = bv @ ALL_V.T + np.logaddexp(0, (ALL_V @ W)[None] + bh[:, None]).sum(-1)
    p = np.exp(neg_f - neg_f.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    marginals = p @ ALL_V  # (N, V)
    target = frames.v.double().numpy()
    tp, fp, fn = (marginals * target).sum(), (marginals * (1 - target)).sum(), ((1 - marginals) * target).sum()
    assert 0.05 < exact.mean() < 0.95
    assert abs(exact.mean() - tp / (tp + fp + fn)) > 0.02


def test_gibbs_author_accuracy_matches_enumeration(tiny_frames):
    model, frames, exact = tiny_frames
    acc = author_accuracy(model, frames, samples=2000, chains=40, burn_in=50, thin=3, sampler=BernoulliSampler(1))
    assert acc.samples == 2000 and acc.chains == 40 and acc.frames == len(frames)
    assert 0 < acc.se < 0.01
    assert abs(acc.mean - exact.mean()) < 4 * acc.se + 1e-3, (acc.mean, exact.mean(), acc.se)
    # the both-empty rule mattered on the silent frame, and the alternative reading is reported
    assert acc.both_empty_fraction > 0
    assert acc.mean_if_both_empty_scored_zero == pytest.approx(acc.mean - acc.both_empty_fraction)
    assert "from the true v_(t-1), 50 steps, then 50 samples per chain 3 steps apart" in acc.sampler


def test_one_step_chains_have_not_mixed_and_read_otherwise(tiny_frames):
    """The burn-in is what makes the samples the model's: one step from v_{t-1} is measurably off."""
    model, frames, exact = tiny_frames
    # one sample per chain, taken after a single step from v_{t-1}: not the model's distribution
    acc = author_accuracy(model, frames, samples=4000, chains=4000, burn_in=1, thin=1, sampler=BernoulliSampler(2))
    assert abs(acc.mean - exact.mean()) > 6 * acc.se


def test_ais_weighted_author_accuracy_matches_enumeration(tiny_frames):
    model, frames, exact = tiny_frames
    ll = log_likelihood(model, frames, chains=400, n_betas=200, sampler=BernoulliSampler(3))
    assert ll.accuracy_author == pytest.approx(exact.mean(), abs=0.01)


def test_author_accuracy_is_seeded_and_checks_its_counts(tiny_frames):
    model, frames, _ = tiny_frames
    one = author_accuracy(model, frames, samples=6, chains=3, burn_in=5, thin=2, sampler=BernoulliSampler(9))
    two = author_accuracy(model, frames, samples=6, chains=3, burn_in=5, thin=2, sampler=BernoulliSampler(9))
    assert one.mean == two.mean
    for samples, chains in ((5, 3), (0, 1), (4, 0)):
        with pytest.raises(ValueError):
            author_accuracy(model, frames, samples=samples, chains=chains)


def test_long_chains_run_in_bounded_pieces(tiny_frames, monkeypatch):
    """gibbs_chain holds all its steps' uniforms at once: the ACC's chains call it a few steps at a time
    (400 steps of the full Nottingham test split in one call needed 21 GB and were killed)."""
    import rnnrbm_studio.quality.accuracy as accuracy

    model, frames, _ = tiny_frames
    calls = []
    chain = model.gibbs_chain
    monkeypatch.setattr(model, "gibbs_chain", lambda v, bv, bh, steps, sampler: calls.append(steps) or
                        chain(v, bv, bh, steps, sampler))
    rows_bytes = 2 * len(frames) * (V + H) * 4  # 2 chains per frame, float32
    monkeypatch.setattr(accuracy, "CHAIN_BYTES", 7 * rows_bytes)
    author_accuracy(model, frames, samples=4, chains=2, burn_in=30, thin=3, sampler=BernoulliSampler(0))
    assert calls == [7, 7, 7, 7, 2, 3]  # 30 steps of burn-in in pieces of 7, then one thinning of 3
