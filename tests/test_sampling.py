"""Prefetched random numbers are exactly the plain generator's, in order, with the same state after."""
from __future__ import annotations

import numpy as np
import torch

from rnnrbm_studio.model import RnnRbm, RnnRbmConfig
from rnnrbm_studio.sampling import BernoulliSampler, UniformStream
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
    sampler.start_prefetch()
    draws(sampler, [1000])
    mid_state = sampler.get_state()
    sampler.stop_prefetch()
    assert same_state(mid_state, plain.get_state()) and same_state(mid_state, sampler.get_state())
    np.testing.assert_array_equal(draws(plain, [64]), draws(sampler, [64]))


def test_a_float64_draw_hands_the_stream_back_in_order():
    plain = BernoulliSampler(5)
    expected = np.concatenate([draws(plain, [10]), plain.uniform((4,), torch.float64).numpy()])
    sampler = BernoulliSampler(5)
    sampler.start_prefetch()
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
