"""Soprano harmonisation (quality/harmonisation.py): the voices by hand, the repeat baseline, the
accuracy on hand-made pieces, and the clamped log-likelihood against enumeration on an RNN-RBM small
enough (5 keys) to sum over every frame."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnrbm_studio.model import BernoulliSampler, RnnRbm
from rnnrbm_studio.quality.ais import exact_log_partition
from rnnrbm_studio.quality.frames import Frames, conditional_frames
from rnnrbm_studio.quality.harmonisation import (clamped_log_likelihoods, clamped_rbm, cluster_se, draw_frames,
                                                 frame_log_likelihoods, harmonisation, lower_voices,
                                                 repeat_baseline, soprano_clamp, soprano_keys)

from model_fixtures import random_weights_model

V, H, R = 5, 4, 3
ALL_V = np.array(list(itertools.product([0, 1], repeat=V)), dtype=np.float64)  # (32, V)
JSB = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks" / "JSB Chorales.pickle"


def small_model(seed: int = 0, scale: float = 1.0) -> RnnRbm:
    """float32 (what the measures run in), weights large enough that the clamp matters."""
    return random_weights_model(seed, scale, n_visible=V, n_hidden=H, n_hidden_recurrent=R)


def exact_log_conditional(model: RnnRbm, bv: np.ndarray, bh: np.ndarray, frame: np.ndarray,
                          keep: np.ndarray) -> float:
    """log p(v[~keep] | v[keep], biases) by summing exp(-F) over all 2^V frames that agree on keep."""
    W = model.W.detach().double().numpy()
    neg_f = ALL_V @ bv + np.logaddexp(0, ALL_V @ W + bh).sum(-1)  # (32,)
    consistent = np.all(ALL_V[:, keep] == frame[keep], axis=1)
    index = int(np.flatnonzero(np.all(ALL_V == frame, axis=1))[0])
    return float(neg_f[index] - np.logaddexp.reduce(neg_f[consistent]))


def test_soprano_is_the_highest_sounding_key_and_silence_has_none():
    frames = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(soprano_keys(frames), [2, -1, 4, 4, 0])


def test_lower_voices_drop_only_the_highest_key_on_any_leading_axes():
    frames = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 1, 1], [1, 0, 0, 0, 0]])
    expected = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(lower_voices(frames), expected)
    np.testing.assert_array_equal(lower_voices(np.stack([frames, frames[::-1]])), np.stack([expected, expected[::-1]]))
    assert frames[0, 2] == 1  # the input is left alone


def test_the_soprano_clamp_holds_the_soprano_on_and_every_key_above_it_off():
    frames = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.float32)
    mask, values = soprano_clamp(frames)
    np.testing.assert_array_equal(mask.numpy(), [[0, 0, 1, 1, 1], [0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(values.numpy(), [[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]])
    with pytest.raises(ValueError, match="silent"):
        soprano_clamp(torch.zeros(1, V))


def test_repeat_baseline_is_the_previous_frames_lower_voices():
    previous = np.array([[0, 0, 0, 0, 0], [1, 1, 0, 1, 0], [0, 0, 0, 1, 0]])  # silence, a chord, a lone note
    np.testing.assert_array_equal(repeat_baseline(previous), [[0, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])


def test_cluster_se_is_the_plain_standard_error_when_every_value_is_its_own_piece_and_wider_when_pieces_agree():
    values = np.array([0.1, 0.4, 0.35, 0.9, 0.2, 0.6])
    assert math.isclose(cluster_se(values, np.arange(6)), values.std(ddof=1) / math.sqrt(6), rel_tol=1e-12)
    # two pieces whose frames agree within a piece: only two independent values, a wide error
    paired = np.array([0.1, 0.1, 0.1, 0.9, 0.9, 0.9])
    assert cluster_se(paired, [0, 0, 0, 1, 1, 1]) > cluster_se(paired, np.arange(6))
    assert math.isnan(cluster_se(values, np.zeros(6)))


def test_accuracy_of_the_repeat_baseline_on_a_hand_made_piece():
    """Frames: silence, {0, 2}, {0, 2}, {1, 3}, {4}. The silent frame is left out; the repeat baseline
    guesses (lower voices) {}, {0}, {0}, {1} against Bach's {0}, {0}, {1}, {}: 0, 1, 0, 0 per frame."""
    roll = np.array([[0, 0, 0, 0, 0], [1, 0, 1, 0, 0], [1, 0, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 1]], np.uint8)
    other = np.array([[0, 0, 1, 0, 0], [1, 1, 0, 0, 1]], np.uint8)  # guesses {} vs {}: 1 (both silent), {} vs {0, 1}: 0
    result = harmonisation(small_model(), [roll, other], samples=2, gibbs_steps=3, chains=0)
    assert (result.frames, result.frames_total, result.silent_frames, result.pieces) == (6, 7, 1, 2)
    assert math.isclose(result.accuracy_repeat.mean, (0 + 1 + 0 + 0 + 1 + 0) / 6)
    assert math.isclose(result.exact_lower_repeat, 2 / 6)  # frame 3 ({0} again) and the lone soprano
    assert result.ll_lower_given_soprano is None and result.ll_repeat.startswith("-inf")
    for measure in (result.accuracy_clamped, result.accuracy_unconditional):
        assert 0.0 <= measure.mean <= 1.0 and measure.se >= 0


def small_frames(model: RnnRbm, seed: int = 3) -> Frames:
    generator = np.random.default_rng(seed)
    roll = (generator.random((12, V)) < 0.45).astype(np.uint8)
    roll[:, 0] = 1  # every frame sounds
    return conditional_frames(model, [roll])


@torch.no_grad()
def test_the_folded_rbm_gives_the_exact_conditional_when_its_partition_function_is_enumerated():
    model = small_model(seed=1)
    frames = small_frames(model)
    mask, values = soprano_clamp(frames.v)
    v_free, bv_c, bh_c = clamped_rbm(model, frames, mask, values)
    folded = -model.free_energy(v_free, bv_c, bh_c).double().numpy() - exact_log_partition(model.W.detach(), bv_c, bh_c)
    for n in range(len(frames)):
        exact = exact_log_conditional(model, frames.bv[n].double().numpy(), frames.bh[n].double().numpy(),
                                      frames.v[n].double().numpy(), mask[n].numpy())
        assert abs(folded[n] - exact) < 1e-4, (n, folded[n], exact)


@pytest.mark.parametrize("keep", [None, [False, True, False, True, False]])
def test_clamped_log_likelihood_by_ais_matches_enumeration(keep):
    """Soprano clamps (keys at and above the top one) and an arbitrary clamp: AIS within 0.02 nats a frame."""
    model = small_model(seed=2)
    frames = small_frames(model, seed=4)
    if keep is None:
        mask, values = soprano_clamp(frames.v)
    else:
        mask = torch.tensor(keep).expand(len(frames), V).clone()
        values = frames.v.clone()
    result = clamped_log_likelihoods(model, frames, mask, values, chains=256, n_betas=200, sampler=BernoulliSampler(0))
    exact = np.array([exact_log_conditional(model, frames.bv[n].double().numpy(), frames.bh[n].double().numpy(),
                                            frames.v[n].double().numpy(), mask[n].numpy()) for n in range(len(frames))])
    np.testing.assert_allclose(result.values, exact, atol=0.02)
    # the whole frame's log-likelihood is lower: the clamp removed the soprano's own uncertainty
    whole = frame_log_likelihoods(model, frames.v, frames.bv, frames.bh, 256, 200, BernoulliSampler(1))
    full = np.array([exact_log_conditional(model, frames.bv[n].double().numpy(), frames.bh[n].double().numpy(),
                                           frames.v[n].double().numpy(), np.zeros(V, bool)) for n in range(len(frames))])
    np.testing.assert_allclose(whole.values, full, atol=0.02)
    assert np.all(whole.values <= result.values + 0.05)


def test_clamped_draws_hold_the_soprano_and_follow_the_exact_conditional():
    model = small_model(seed=5)
    frames = small_frames(model, seed=6)
    one = frames.subset(torch.tensor([4]))
    n = 20_000
    many = Frames(*(t.expand(n, -1).contiguous() for t in (one.v, one.bv, one.bh, one.u_prev, one.v_prev)))
    mask, values = soprano_clamp(many.v)
    drawn = draw_frames(model, many, 1, 30, BernoulliSampler(7), (mask, values))[0]  # (n, V)
    assert np.all(drawn[:, mask[0].numpy()] == values[0].numpy()[mask[0].numpy()].astype(bool))
    index = (drawn.astype(int) * (2 ** np.arange(V - 1, -1, -1))).sum(1)  # ALL_V's order
    empirical = np.bincount(index, minlength=32) / n
    bv, bh = one.bv[0].double().numpy(), one.bh[0].double().numpy()
    exact = np.array([math.exp(exact_log_conditional(model, bv, bh, f, mask[0].numpy()))
                      if np.all(f[mask[0].numpy()] == values[0].numpy()[mask[0].numpy()]) else 0.0 for f in ALL_V])
    assert abs(exact.sum() - 1) < 1e-6
    assert 0.5 * np.abs(empirical - exact).sum() < 0.03


def test_the_ais_weighted_accuracy_is_the_exact_expected_accuracy_of_the_filled_voices():
    model = small_model(seed=8)
    frames = small_frames(model, seed=9)
    mask, values = soprano_clamp(frames.v)
    result = clamped_log_likelihoods(model, frames, mask, values, chains=512, n_betas=100, sampler=BernoulliSampler(2))
    for n in range(len(frames)):
        keep = mask[n].numpy()
        truth = frames.v[n].numpy().astype(bool) & ~keep
        bv, bh = frames.bv[n].double().numpy(), frames.bh[n].double().numpy()
        expected = 0.0
        for f in ALL_V:
            if np.all(f[keep] == values[n].numpy()[keep]):
                guess = f.astype(bool) & ~keep
                total = np.sum(guess | truth)
                score = np.sum(guess & truth) / total if total else 1.0
                expected += math.exp(exact_log_conditional(model, bv, bh, f, keep)) * score
        assert abs(result.expected_accuracy[n] - expected) < 0.06, (n, result.expected_accuracy[n], expected)


@pytest.mark.skipif(not JSB.exists(), reason=f"the JSB Chorales pickle is not in {JSB.parent} (../shared/data)")
def test_on_jsb_chorales_the_soprano_is_a_note_in_almost_every_frame():
    from rnnrbm_studio.music.corpus import load_corpus

    corpus = load_corpus(str(JSB))
    frames = np.concatenate([p.roll for p in corpus.splits["test"] if len(p.roll)])
    top = soprano_keys(frames)
    assert np.mean(top < 0) < 0.01  # silent frames, left out of the measure, are rare
    lower = lower_voices(frames)
    assert 2.0 < lower.sum(1).mean() < 3.5  # the chorales' three lower voices, fewer where voices share a key
