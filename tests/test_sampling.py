"""Prefetched random numbers are exactly the plain generator's, in order, with the same state after."""
from __future__ import annotations

import numpy as np
import torch

from rnnrbm_studio.model import RnnRbm, RnnRbmConfig
from rnnrbm_studio.sampling import FLOAT, RAW, BernoulliSampler, UniformStream
from rnnrbm_studio.training.trainer import TrainConfig, Trainer


def same_state(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    return bool(np.array_equal(a, b))


def draws(sampler: BernoulliSampler, sizes) -> np.ndarray:
    return np.concatenate([sampler.fill_uniform(torch.empty(n)).numpy() for n in sizes])


def test_prefetched_uniforms_equal_the_plain_stream_across_block_edges():
    sizes = [7, 300, 1, 1024, 513, 2048, 5]
    plain = draws(BernoulliSampler(3), sizes)
    sampler = BernoulliSampler(3)
    sampler._stream = UniformStream(sampler.rng.bit_generator.state, block_size=256, depth=2)
    try:
        prefetched = draws(sampler, sizes)
    finally:
        sampler.stop_prefetch()
    np.testing.assert_array_equal(plain, prefetched)


def test_state_after_prefetch_is_the_consumed_state():
    plain = BernoulliSampler(11)
    draws(plain, [1000])
    sampler = BernoulliSampler(11)
    sampler.start_prefetch(FLOAT)
    draws(sampler, [1000])
    mid_state = sampler.get_state()
    sampler.stop_prefetch()
    assert same_state(mid_state, plain.get_state()) and same_state(mid_state, sampler.get_state())
    np.testing.assert_array_equal(draws(plain, [64]), draws(sampler, [64]))


def test_a_float64_draw_hands_the_stream_back_in_order():
    plain = BernoulliSampler(5)
    expected = np.concatenate([draws(plain, [10]), plain.uniform((4,), torch.float64).numpy()])
    sampler = BernoulliSampler(5)
    sampler.start_prefetch(FLOAT)
    got = np.concatenate([draws(sampler, [10]), sampler.uniform((4,), torch.float64).numpy()])
    sampler.stop_prefetch()
    np.testing.assert_array_equal(expected[:10], got[:10])
    np.testing.assert_array_equal(expected[10:], got[10:])


def test_training_with_prefetch_is_bitwise_the_same_run():
    rng = np.random.default_rng(0)
    rolls = [(rng.random((120, 88)) < 0.05).astype(np.uint8) for _ in range(4)]
    results = []
    for prefetch in (False, True):
        torch.manual_seed(0)
        model = RnnRbm(RnnRbmConfig(n_hidden=16, n_hidden_recurrent=8, cd_k=2))
        trainer = Trainer(model, rolls, rolls[:1], TrainConfig(epochs=2, batch_seqs=2, optimizer="adam",
                                                                 prefetch_random=prefetch))
        trainer.run()
        results.append((model.W.detach().clone(), trainer.history, trainer.sampler.get_state()))
    assert torch.equal(results[0][0], results[1][0])
    assert [h.monitor for h in results[0][1]] == [h.monitor for h in results[1][1]]
    assert same_state(results[0][2], results[1][2])


def draws16(sampler: BernoulliSampler, sizes) -> np.ndarray:
    return np.concatenate([sampler.uniform16(n).numpy() for n in sizes])


def test_prefetched_raw_words_give_the_plain_16_bit_uniforms_and_state():
    sizes = [7, 300, 1, 1024, 513, 2048, 5, 3]  # odd sizes: each draw starts on a fresh 64-bit word
    plain = BernoulliSampler(3)
    expected = draws16(plain, sizes)
    sampler = BernoulliSampler(3)
    sampler._stream = UniformStream(sampler.rng.bit_generator.state, block_size=64, depth=2, kind=RAW)
    got = draws16(sampler, sizes)
    mid_state = sampler.get_state()
    sampler.stop_prefetch()
    np.testing.assert_array_equal(expected, got)
    assert same_state(mid_state, plain.get_state()) and same_state(sampler.get_state(), plain.get_state())
    # a float draw while raw words stream hands the stream back in order
    sampler.start_prefetch(RAW)
    np.testing.assert_array_equal(draws(plain, [10]), draws(sampler, [10]))
    np.testing.assert_array_equal(draws16(plain, [9]), draws16(sampler, [9]))
    sampler.stop_prefetch()


def test_16_bit_uniforms_are_the_2_16_midpoints_equally_often():
    u = BernoulliSampler(4).uniform16(1 << 22, torch.float64).numpy()
    k = u * 65536 - 0.5
    np.testing.assert_array_equal(k, np.round(k))  # exactly (k + 1/2) / 2^16
    counts = np.bincount(k.astype(np.int64), minlength=65536)
    assert counts.size == 65536 and counts.min() > 0
    # chi-square of 65,535 degrees of freedom: mean 65,535, sd 362; 6 sd either side
    expected = len(u) / 65536
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert abs(chi2 - 65535) < 6 * 362, chi2
    # float32 holds the same values exactly
    np.testing.assert_array_equal(BernoulliSampler(4).uniform16(1000).numpy(), u[:1000].astype(np.float32))


def test_a_16_bit_bernoulli_draw_has_p_rounded_to_2_16():
    """u < p over the 2^16 midpoints is true for exactly round(p 2^16) of them: P(1) is p to 2^-17."""
    midpoints = (np.arange(65536) + 0.5) / 65536
    for p in (0.0, 1e-6, 1 / 3, 0.5, 0.999999, 1.0):
        probability = np.count_nonzero(midpoints < p) / 65536
        assert probability == np.round(p * 65536) / 65536 and abs(probability - p) <= 2 ** -17


def test_playback_composes_from_the_rnns_prediction_with_few_steps_unless_asked_for_silence():
    from rnnrbm_studio.live.settings import PREDICTION_GIBBS_STEPS, PlaybackSettings
    import pytest

    assert PlaybackSettings().chain(1000) == (PREDICTION_GIBBS_STEPS, "prediction")  # the default
    assert PlaybackSettings(gibbs_steps=10).chain(1000) == (10, "prediction")
    assert PlaybackSettings(chain_start="silence").chain(1000) == (1000, None)  # the tutorial's chain
    assert PlaybackSettings(chain_start="silence", gibbs_steps=40).chain(1000) == (40, None)
    with pytest.raises(ValueError, match="chain starts"):
        PlaybackSettings(chain_start="elsewhere")
