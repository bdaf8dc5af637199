"""The RNN-RBM's mathematics against direct formulas, on tiny float64 models.

Sizes are tiny (V=5 visible, H=4 hidden, R=3 recurrent) so that every distribution can be computed
exactly by enumerating all 2^V visible and 2^H hidden states.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from rnnrbm_studio.model import BernoulliSampler, FreeEnergyGap, RnnRbm, RnnRbmConfig, TanhRecurrence

from model_fixtures import random_weights_model

V, H, R = 5, 4, 3
ALL_V = np.array(list(itertools.product([0, 1], repeat=V)), dtype=np.float64)  # (32, V)
ALL_H = np.array(list(itertools.product([0, 1], repeat=H)), dtype=np.float64)  # (16, H)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(0.0, x)


def tiny_model(seed: int = 0, learned_u0: bool = False, scale: float = 0.8, **config) -> RnnRbm:
    """A float64 model with weights large enough that every term matters (the init is ~1e-2)."""
    return random_weights_model(seed, scale, torch.float64, n_visible=V, n_hidden=H, n_hidden_recurrent=R,
                                learned_u0=learned_u0, **config)


def random_rolls(batch: int, frames: int, seed: int = 1, p: float = 0.4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, frames, V, generator=generator, dtype=torch.float64) < p).double()


class ThresholdSampler:
    """Deterministic stand-in for BernoulliSampler: every uniform draw is 0.5, so a 'sample' is p > 0.5.

    Makes the negative phase a deterministic function of each frame alone, so costs can be compared
    across batch layouts and against formulas.
    """

    def fill_uniform(self, out):
        return out.fill_(0.5)

    def uniform(self, shape, dtype=torch.float32):
        return torch.full(shape, 0.5, dtype=dtype)

    def uniform16(self, n, dtype=torch.float32):
        return torch.full((n,), 0.5, dtype=dtype)

    def __call__(self, probabilities):
        return (probabilities > 0.5).to(probabilities.dtype)


def numpy_params(model: RnnRbm) -> dict[str, np.ndarray]:
    return {name: p.detach().numpy().copy() for name, p in model.named_parameters()}


# ---------------------------------------------------------------------------------- the RBM
def test_free_energy_matches_the_direct_formula():
    model = tiny_model()
    rng = np.random.default_rng(0)
    v = ALL_V
    bv = rng.normal(size=(len(v), V))
    bh = rng.normal(size=(len(v), H))
    W = model.W.detach().numpy()
    expected = -(v * bv).sum(1) - softplus(v @ W + bh).sum(1)
    got = model.free_energy(torch.from_numpy(v), torch.from_numpy(bv), torch.from_numpy(bh))
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    # batch dimensions (B, T, V) are kept
    got_3d = model.free_energy(torch.from_numpy(v).reshape(4, 8, V), torch.from_numpy(bv).reshape(4, 8, V),
                               torch.from_numpy(bh).reshape(4, 8, H))
    assert got_3d.shape == (4, 8)
    np.testing.assert_allclose(got_3d.detach().numpy().ravel(), expected, rtol=1e-12)


def test_marginal_of_visible_units_is_exp_of_minus_free_energy():
    """p(v) = sum_h exp(-E(v, h)) / Z, E = -v.bv - h.bh - v W h, must be proportional to exp(-F(v))."""
    model = tiny_model(seed=3)
    W = model.W.detach().numpy()
    bv = model.bv.detach().numpy()
    bh = model.bh.detach().numpy()
    energy = -(ALL_V @ bv)[:, None] - (ALL_H @ bh)[None, :] - ALL_V @ W @ ALL_H.T  # (32, 16)
    joint = np.exp(-energy)
    p_v_enumerated = joint.sum(1) / joint.sum()
    free = model.free_energy(torch.from_numpy(ALL_V), model.bv.expand(len(ALL_V), V),
                             model.bh.expand(len(ALL_V), H)).detach().numpy()
    p_v_free = np.exp(-free) / np.exp(-free).sum()
    np.testing.assert_allclose(p_v_free, p_v_enumerated, rtol=1e-10)
    assert p_v_free.max() / p_v_free.min() > 5  # not a flat distribution: the check has teeth

    # the conditionals, also from the enumerated joint distribution
    p_h1_given_v = (joint[:, :, None] * ALL_H[None]).sum(1) / joint.sum(1, keepdims=True)  # (32, H)
    got_h = model.hidden_probabilities(torch.from_numpy(ALL_V), model.bh.expand(len(ALL_V), H))
    np.testing.assert_allclose(got_h.detach().numpy(), p_h1_given_v, rtol=1e-10)
    p_v1_given_h = (joint.T[:, :, None] * ALL_V[None]).sum(1) / joint.T.sum(1, keepdims=True)  # (16, V)
    got_v = model.visible_probabilities(torch.from_numpy(ALL_H), model.bv.expand(len(ALL_H), V))
    np.testing.assert_allclose(got_v.detach().numpy(), p_v1_given_h, rtol=1e-10)


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_conditionals_are_sigmoids_of_scaled_logits(beta):
    model = tiny_model(seed=4)
    rng = np.random.default_rng(1)
    v = ALL_V[rng.permutation(32)[:10]]
    h = ALL_H[rng.permutation(16)[:10]]
    bv = rng.normal(size=(10, V))
    bh = rng.normal(size=(10, H))
    W = model.W.detach().numpy()
    got_h = model.hidden_probabilities(torch.from_numpy(v), torch.from_numpy(bh), beta=beta)
    got_v = model.visible_probabilities(torch.from_numpy(h), torch.from_numpy(bv), beta=beta)
    np.testing.assert_allclose(got_h.detach().numpy(), sigmoid(beta * (v @ W + bh)), rtol=1e-12)
    np.testing.assert_allclose(got_v.detach().numpy(), sigmoid(beta * (h @ W.T + bv)), rtol=1e-12)


# ------------------------------------------------------------------------------ the RNN
@pytest.mark.parametrize("learned_u0", [False, True])
@pytest.mark.parametrize("with_u_start", [False, True])
def test_recurrence_matches_a_plain_loop(learned_u0, with_u_start):
    model = tiny_model(seed=5, learned_u0=learned_u0)
    v = random_rolls(3, 7)
    u_start = torch.randn(3, R, dtype=torch.float64) if with_u_start else None
    fast = model.recurrence(v, u_start)
    reference = model.recurrence_reference(v, u_start)
    assert fast.shape == (3, 7, R)
    torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12)
    # and against numpy, written from the paper's equation
    p = numpy_params(model)
    u_prev = (u_start.numpy() if with_u_start
              else np.broadcast_to(p["u0"], (3, R)) if learned_u0 else np.zeros((3, R)))
    for t in range(7):
        u_prev = np.tanh(p["bu"] + v[:, t].numpy() @ p["Wvu"] + u_prev @ p["Wuu"])
        np.testing.assert_allclose(fast[:, t].detach().numpy(), u_prev, rtol=1e-12, atol=1e-12)


def test_learned_u0_changes_the_recurrence():
    model = tiny_model(seed=5, learned_u0=True)
    v = random_rolls(2, 4)
    with_u0 = model.recurrence(v)
    with_zero = model.recurrence(v, torch.zeros(2, R, dtype=torch.float64))
    assert (with_u0 - with_zero).abs().max() > 1e-3
    assert torch.equal(model.initial_state(), model.u0.detach())


@pytest.mark.parametrize("learned_u0", [False, True])
def test_conditional_biases_use_the_previous_state_with_u0_first(learned_u0):
    model = tiny_model(seed=6, learned_u0=learned_u0)
    v = random_rolls(2, 5)
    bv_t, bh_t, u = model.conditional_biases(v)
    p = numpy_params(model)
    u0 = p["u0"] if learned_u0 else np.zeros(R)
    u_np = u.detach().numpy()
    for b in range(2):
        for t in range(5):
            u_prev = u0 if t == 0 else u_np[b, t - 1]
            np.testing.assert_allclose(bv_t[b, t].detach().numpy(), p["bv"] + u_prev @ p["Wuv"], rtol=1e-12)
            np.testing.assert_allclose(bh_t[b, t].detach().numpy(), p["bh"] + u_prev @ p["Wuh"], rtol=1e-12)
    # an explicit start state is used for the first frame's biases
    u_start = torch.randn(2, R, dtype=torch.float64)
    bv_s, bh_s, _ = model.conditional_biases(v, u_start)
    np.testing.assert_allclose(bv_s[:, 0].detach().numpy(), p["bv"] + u_start.numpy() @ p["Wuv"], rtol=1e-12)
    np.testing.assert_allclose(bh_s[:, 0].detach().numpy(), p["bh"] + u_start.numpy() @ p["Wuh"], rtol=1e-12)


def test_tanh_recurrence_backward_passes_gradcheck():
    """The hand-written numpy backward pass against finite differences (float64)."""
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(2, 6, R, dtype=torch.float64, generator=generator, requires_grad=True)
    u_start = torch.randn(2, R, dtype=torch.float64, generator=generator, requires_grad=True)
    w = (torch.randn(R, R, dtype=torch.float64, generator=generator) * 0.7).requires_grad_()
    assert torch.autograd.gradcheck(TanhRecurrence.apply, (x, u_start, w), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_tanh_recurrence_backward_equals_autograd_through_the_loop():
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(3, 9, R, dtype=torch.float64, generator=generator)
    u_start = torch.randn(3, R, dtype=torch.float64, generator=generator)
    w = torch.randn(R, R, dtype=torch.float64, generator=generator)
    weights = torch.randn(3, 9, R, dtype=torch.float64, generator=generator)

    def loop(x, u_start, w):
        outputs, u = [], u_start
        for t in range(x.shape[1]):
            u = torch.tanh(x[:, t] + u @ w)
            outputs.append(u)
        return torch.stack(outputs, 1)

    grads = []
    for function in (TanhRecurrence.apply, loop):
        inputs = [t.clone().requires_grad_() for t in (x, u_start, w)]
        (function(*inputs) * weights).sum().backward()
        grads.append([t.grad for t in inputs])
    for fast, reference in zip(*grads):
        torch.testing.assert_close(fast, reference, rtol=1e-11, atol=1e-12)


# ------------------------------------------------------------------------- the CD-k cost
def capture_negative_sample(model, monkeypatch):
    """Record the negative sample cd_loss draws (the chain's output) so tests can hold it constant."""
    captured = {}
    original = model.gibbs_chain

    def recording_chain(*args, **kwargs):
        result = original(*args, **kwargs)
        captured["v_sample"] = result.clone()
        return result

    monkeypatch.setattr(model, "gibbs_chain", recording_chain)
    return captured


def test_cd_gradient_of_rbm_parameters_matches_the_analytic_formula(monkeypatch):
    """dCost/dW = mean_t [v*_t sigma(v*_t W + bh_t)^T - v_t sigma(v_t W + bh_t)^T], similar for bv, bh."""
    model = tiny_model(seed=9)
    v = random_rolls(2, 6)
    captured = capture_negative_sample(model, monkeypatch)
    cost, _ = model.cd_loss(v, BernoulliSampler(0), k=3)
    model.zero_grad()
    cost.backward()
    v_neg = captured["v_sample"].numpy()  # (B*T, V)
    assert not np.array_equal(v_neg, v.reshape(-1, V).numpy())  # the chain moved: both terms matter

    p = numpy_params(model)
    vv = v.reshape(-1, V).numpy()
    # biases per frame from the plain-loop recurrence in numpy
    bv_t, bh_t = [], []
    for b in range(2):
        u_prev = np.zeros(R)
        for t in range(6):
            bv_t.append(p["bv"] + u_prev @ p["Wuv"])
            bh_t.append(p["bh"] + u_prev @ p["Wuh"])
            u_prev = np.tanh(p["bu"] + v[b, t].numpy() @ p["Wvu"] + u_prev @ p["Wuu"])
    bv_t, bh_t = np.array(bv_t), np.array(bh_t)
    n = vv.shape[0]
    sig_pos = sigmoid(vv @ p["W"] + bh_t)
    sig_neg = sigmoid(v_neg @ p["W"] + bh_t)
    expected_w = (v_neg.T @ sig_neg - vv.T @ sig_pos) / n
    expected_bv = (v_neg - vv).sum(0) / n
    expected_bh = (sig_neg - sig_pos).sum(0) / n
    np.testing.assert_allclose(model.W.grad.numpy(), expected_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.bv.grad.numpy(), expected_bv, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.bh.grad.numpy(), expected_bh, rtol=1e-10, atol=1e-12)
    # and the cost's value itself
    free_pos = -(vv * bv_t).sum(1) - softplus(vv @ p["W"] + bh_t).sum(1)
    free_neg = -(v_neg * bv_t).sum(1) - softplus(v_neg @ p["W"] + bh_t).sum(1)
    assert float(cost.detach()) == pytest.approx((free_pos - free_neg).mean(), rel=1e-10)


def test_cd_gradient_of_all_parameters_passes_finite_differences():
    """gradcheck over all eight parameters of the cost with the negative sample held constant."""
    model = tiny_model(seed=10, scale=0.5)
    v = random_rolls(2, 4, seed=2)
    v_negative = random_rolls(2, 4, seed=3)
    names = [name for name, _ in model.named_parameters()]

    wrapper = _FixedNegativeCost(model)

    def cost(*tensors):
        # the model's own conditional_biases (through TanhRecurrence) and free_energy, with these tensors
        return functional_call(wrapper, {f"model.{k}": t for k, t in zip(names, tensors)}, (v, v_negative))

    inputs = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(cost, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


class _FixedNegativeCost(torch.nn.Module):
    """mean over frames of F(v_t) - F(v*_t), v* given: the CD cost as a function of the parameters."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, v, v_negative):
        bv_t, bh_t, _ = self.model.conditional_biases(v)
        n = v.shape[0] * v.shape[1]
        return (self.model.free_energy(v, bv_t, bh_t) - self.model.free_energy(v_negative, bv_t, bh_t)).sum() / n


def test_cd_gradient_flows_into_the_rnn_and_matches_autograd_through_the_loop(monkeypatch):
    model = tiny_model(seed=11)
    v = random_rolls(3, 8, seed=4)
    generator = torch.Generator().manual_seed(5)
    v_negative = (torch.rand(3 * 8, V, generator=generator, dtype=torch.float64) < 0.5).double()
    # the chain's output fixed: both passes see the same negative sample
    monkeypatch.setattr(model, "gibbs_chain", lambda *args, **kwargs: v_negative.clone())

    cost_fast, _ = model.cd_loss(v, BernoulliSampler(0))
    model.zero_grad()
    cost_fast.backward()
    fast = {name: p.grad.clone() for name, p in model.named_parameters()}
    for name in ("Wuv", "Wuh", "Wvu", "Wuu", "bu"):
        assert fast[name].abs().max() > 1e-4, f"no gradient reaches {name}"

    monkeypatch.setattr(model, "recurrence", model.recurrence_reference)
    cost_reference, _ = model.cd_loss(v, BernoulliSampler(0))
    model.zero_grad()
    cost_reference.backward()
    torch.testing.assert_close(cost_fast, cost_reference, rtol=1e-12, atol=1e-12)
    for name, p in model.named_parameters():
        torch.testing.assert_close(fast[name], p.grad, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")


def test_learned_u0_receives_a_gradient(monkeypatch):
    model = tiny_model(seed=12, learned_u0=True)
    v = random_rolls(2, 5)
    v_negative = (torch.rand(10, V, dtype=torch.float64) < 0.5).double()
    monkeypatch.setattr(model, "gibbs_chain", lambda *args, **kwargs: v_negative.clone())
    cost, _ = model.cd_loss(v, BernoulliSampler(0))
    cost.backward()
    fast = model.u0.grad.clone()
    model.zero_grad()
    monkeypatch.setattr(model, "recurrence", model.recurrence_reference)
    model.cd_loss(v, BernoulliSampler(0))[0].backward()
    assert fast.abs().max() > 1e-4
    torch.testing.assert_close(fast, model.u0.grad, rtol=1e-10, atol=1e-12)


def test_monitor_is_the_tutorials_reconstruction_log_likelihood():
    """monitor = mean_t sum_i v log p + (1 - v) log(1 - p), p the mean of one Gibbs step from v*."""
    model = tiny_model(seed=13)
    v = random_rolls(2, 5)
    sampler = ThresholdSampler()
    _, monitor = model.cd_loss(v, sampler, k=2)
    p = numpy_params(model)
    bv_t, bh_t, _ = model.conditional_biases(v)
    bv_t = bv_t.detach().reshape(-1, V).numpy()
    bh_t = bh_t.detach().reshape(-1, H).numpy()
    x = v.reshape(-1, V).numpy()
    chain = x
    for _ in range(2):  # threshold 'samples': p > 0.5
        h = (sigmoid(chain @ p["W"] + bh_t) > 0.5).astype(float)
        chain = (sigmoid(h @ p["W"].T + bv_t) > 0.5).astype(float)
    h = (sigmoid(chain @ p["W"] + bh_t) > 0.5).astype(float)
    mean_v = sigmoid(h @ p["W"].T + bv_t)
    expected = (x * np.log(mean_v) + (1 - x) * np.log(1 - mean_v)).sum(1).mean()
    assert monitor == pytest.approx(expected, rel=1e-10)


def test_cd_cost_with_k_zero_is_zero_and_masked_frames_are_left_out():
    model = tiny_model(seed=14)
    v = random_rolls(2, 6)
    cost, _ = model.cd_loss(v, BernoulliSampler(0), k=0)
    assert float(cost.detach()) == 0.0  # v* = v: the two free energies cancel
    mask = torch.ones(2, 6, dtype=torch.float64)
    mask[1, 3:] = 0
    sampler = ThresholdSampler()
    masked, _ = model.cd_loss(v, sampler, mask=mask, k=2)
    # by hand: the per-frame cost with the same deterministic chain, averaged over the 9 real frames
    per_frame = []
    for b, length in ((0, 6), (1, 3)):
        c, _ = model.cd_loss(v[b:b + 1, :length], sampler, k=2)
        per_frame.append(float(c.detach()) * length)
    assert float(masked.detach()) == pytest.approx(sum(per_frame) / 9, rel=1e-12)


# ------------------------------------------------------------------------------ sampling
def test_bernoulli_sampler_frequencies_match_probabilities():
    sampler = BernoulliSampler(123)
    p = torch.linspace(0.02, 0.98, 13, dtype=torch.float32)
    n = 40_000
    draws = sampler(p.expand(n, 13).contiguous())
    assert draws.dtype == torch.float32 and set(draws.unique().tolist()) <= {0.0, 1.0}
    frequency = draws.mean(0)
    tolerance = 5 * torch.sqrt(p * (1 - p) / n)  # five standard errors
    assert ((frequency - p).abs() < tolerance).all(), (frequency, p)
    # float64 path and fill_uniform give U(0, 1) too
    u = sampler.fill_uniform(torch.empty(n, dtype=torch.float64))
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.01


def test_bernoulli_sampler_is_reproducible_and_its_state_round_trips():
    a, b = BernoulliSampler(7), BernoulliSampler(7)
    p = torch.full((50,), 0.5)
    assert torch.equal(a(p), b(p))
    state = a.get_state()
    first = a(p)
    a.set_state(state)
    assert torch.equal(a(p), first)
    assert not torch.equal(BernoulliSampler(8)(p), BernoulliSampler(9)(p))


def test_logistic_noise_gives_bernoulli_sigmoid():
    sampler = BernoulliSampler(5)
    x = torch.tensor([-2.0, -0.5, 0.0, 0.7, 2.5], dtype=torch.float64)
    n = 40_000
    noise = sampler.logistic((n, 5), torch.float64)
    frequency = ((x + noise) > 0).double().mean(0)
    p = torch.sigmoid(x)
    assert ((frequency - p).abs() < 5 * torch.sqrt(p * (1 - p) / n)).all()


def exact_chain_distribution(model, u_prev: np.ndarray, steps: int, beta: float,
                             start: np.ndarray | None = None) -> np.ndarray:
    """Distribution over all 2^V frames after `steps` Gibbs steps from v = 0 (the tutorial's start), or
    from the distribution `start` over the 2^V frames."""
    p = numpy_params(model)
    bv = beta * (p["bv"] + u_prev @ p["Wuv"])
    bh = beta * (p["bh"] + u_prev @ p["Wuh"])
    W = beta * p["W"]

    def bernoulli_prob(states, probabilities):  # P(states | independent probabilities)
        return np.prod(np.where(states[None] > 0, probabilities[:, None], 1 - probabilities[:, None]), axis=-1)

    p_h_given_v = bernoulli_prob(ALL_H, sigmoid(ALL_V @ W + bh))  # (32, 16)
    p_v_given_h = bernoulli_prob(ALL_V, sigmoid(ALL_H @ W.T + bv))  # (16, 32)
    transition = p_h_given_v @ p_v_given_h  # (32, 32)
    distribution = np.zeros(32)
    distribution[0] = 1.0  # all keys up
    if start is not None:
        distribution = start
    for _ in range(steps):
        distribution = distribution @ transition
    return distribution


def frame_histogram(frames: np.ndarray) -> np.ndarray:
    index = (frames.astype(int) * (2 ** np.arange(V - 1, -1, -1))).sum(1)  # same order as ALL_V
    return np.bincount(index, minlength=32) / len(frames)


@pytest.mark.parametrize("steps,beta", [(1, 1.0), (3, 1.0), (2, 0.5)])
def test_sample_frame_matches_the_exact_gibbs_distribution(steps, beta):
    model = tiny_model(seed=15, scale=1.0)
    u_prev_row = torch.tensor([0.3, -0.6, 0.9], dtype=torch.float64)
    n = 30_000
    frames = model.sample_frame(u_prev_row.expand(n, R).contiguous(), BernoulliSampler(2), steps,
                                inverse_temperature=beta).numpy()
    exact = exact_chain_distribution(model, u_prev_row.numpy(), steps, beta)
    empirical = frame_histogram(frames)
    total_variation = 0.5 * np.abs(empirical - exact).sum()
    assert total_variation < 0.025, total_variation
    # plain Gibbs with BernoulliSampler and the model's own conditionals: the same distribution
    sampler = BernoulliSampler(3)
    bv = model.bv + u_prev_row @ model.Wuv
    bh = model.bh + u_prev_row @ model.Wuh
    v = torch.zeros(n, V, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(steps):
            h = sampler(model.hidden_probabilities(v, bh.expand(n, H), beta))
            v = sampler(model.visible_probabilities(h, bv.expand(n, V), beta))
    assert 0.5 * np.abs(frame_histogram(v.numpy()) - exact).sum() < 0.025


def test_inverse_temperature_changes_the_distribution_as_the_scaled_logits_predict():
    model = tiny_model(seed=15, scale=1.0)
    u_prev_row = torch.tensor([0.3, -0.6, 0.9], dtype=torch.float64)
    hot = exact_chain_distribution(model, u_prev_row.numpy(), 2, 0.3)
    cold = exact_chain_distribution(model, u_prev_row.numpy(), 2, 1.0)
    assert 0.5 * np.abs(hot - cold).sum() > 0.1  # the temperature matters for this model
    frames = model.sample_frame(u_prev_row.expand(30_000, R).contiguous(), BernoulliSampler(4), 2,
                                inverse_temperature=0.3).numpy()
    empirical = frame_histogram(frames)
    assert 0.5 * np.abs(empirical - hot).sum() < 0.025
    assert 0.5 * np.abs(empirical - cold).sum() > 0.08


def test_gibbs_chain_matches_the_exact_transition():
    """gibbs_chain (the training chain, u < p on reused buffers) has the exact k-step distribution."""
    model = tiny_model(seed=16, scale=1.0)
    n = 30_000
    bv = model.bv.detach().expand(n, V).contiguous()
    bh = model.bh.detach().expand(n, H).contiguous()
    v = model.gibbs_chain(torch.zeros(n, V, dtype=torch.float64), bv, bh, 2, BernoulliSampler(6))
    exact = exact_chain_distribution(model, np.zeros(R), 2, 1.0)
    assert 0.5 * np.abs(frame_histogram(v.numpy()) - exact).sum() < 0.025


# ---------------------------------------------------------------------------- generation
def test_step_shapes_and_state_update():
    model = tiny_model(seed=17)
    state = model.initial_state()
    assert state.shape == (R,) and not state.any()
    frame, new_state = model.step(state, BernoulliSampler(0))
    assert frame.shape == (V,) and new_state.shape == (R,)
    assert set(frame.unique().tolist()) <= {0.0, 1.0}
    # the new state is u_t = tanh(bu + v_t Wvu + u_{t-1} Wuu), from a state where every term counts
    state = torch.tensor([0.5, -0.7, 0.2], dtype=torch.float64)
    frame, new_state = model.step(state, BernoulliSampler(0))
    assert frame.any()
    expected = model.recurrence_reference(frame.reshape(1, 1, V), state.reshape(1, R))[0, 0]
    torch.testing.assert_close(new_state, expected, rtol=1e-12, atol=1e-12)
    frames, states = model.step(torch.zeros(4, R, dtype=torch.float64), BernoulliSampler(0), gibbs_steps=3)
    assert frames.shape == (4, V) and states.shape == (4, R)


def test_generate_shapes_seeds_and_reproducibility():
    model = tiny_model(seed=18)
    a = model.generate(40, seed=1)
    b = model.generate(40, seed=1)
    c = model.generate(40, seed=2)
    assert a.shape == (40, V) and a.dtype == np.uint8 and set(np.unique(a)) <= {0, 1}
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0 < a.mean() < 1  # neither silent nor every key held (weights are big enough to matter)


def test_prime_is_the_recurrences_last_state_and_generation_continues_it():
    model = tiny_model(seed=19)
    primer = random_rolls(1, 9, seed=6)[0].numpy().astype(np.uint8)
    state = model.prime(primer)
    expected = model.recurrence_reference(torch.from_numpy(primer).double().unsqueeze(0))[0, -1]
    torch.testing.assert_close(state, expected, rtol=1e-12, atol=1e-12)
    # priming in two halves, carrying the state, equals priming at once
    half = model.prime(primer[5:], state=model.prime(primer[:5]))
    torch.testing.assert_close(half, state, rtol=1e-12, atol=1e-12)
    # an empty primer leaves the initial state
    assert torch.equal(model.prime(np.zeros((0, V))), model.initial_state())
    # generate(primer=...) is: prime, then step with a sampler seeded the same way
    generated = model.generate(12, primer=primer, seed=3)
    sampler = BernoulliSampler(3)
    manual = []
    for _ in range(12):
        frame, state = model.step(state, sampler)
        manual.append(frame.numpy())
    assert np.array_equal(generated, np.array(manual, dtype=np.uint8))
    assert not np.array_equal(generated, model.generate(12, seed=3))  # the primer matters


# ------------------------------------------------------------------------- initialisation
def test_initialisation_scales_and_parameter_names():
    torch.manual_seed(0)
    model = RnnRbm()
    names = [name for name, _ in model.named_parameters()]
    assert names == list(RnnRbm.PARAMETER_NAMES)
    assert set(names) == {"W", "bv", "bh", "Wuh", "Wuv", "Wvu", "Wuu", "bu"}
    assert model.W.shape == (88, 150)
    assert model.W.std().item() == pytest.approx(0.01, rel=0.05)
    for name in ("Wuh", "Wuv", "Wvu", "Wuu"):
        assert getattr(model, name).std().item() == pytest.approx(1e-4, rel=0.1), name
    for name in ("bv", "bh", "bu"):
        assert not getattr(model, name).any(), name
    assert model.u0 is None
    assert model.n_parameters() == 88 * 150 + 88 + 150 + 100 * 150 + 100 * 88 + 88 * 100 + 100 * 100 + 100
    learned = RnnRbm(RnnRbmConfig(learned_u0=True))
    assert [n for n, _ in learned.named_parameters()][-1] == "u0" and not learned.u0.any()


def test_tutorial_arrays_use_the_tutorials_orientation():
    model = tiny_model(seed=20).float()
    arrays = model.tutorial_arrays()
    assert list(arrays) == list(RnnRbm.PARAMETER_NAMES)
    shapes = {"W": (V, H), "bv": (V,), "bh": (H,), "Wuh": (R, H), "Wuv": (R, V), "Wvu": (V, R),
              "Wuu": (R, R), "bu": (R,)}
    for name, array in arrays.items():
        assert array.dtype == np.float64 and array.shape == shapes[name], name
    # v @ W + bh is the hidden input, u @ Wuv the visible bias shift, as in rnnrbm.py
    v = ALL_V[:7]
    got = model.hidden_probabilities(torch.from_numpy(v).float(), model.bh.expand(7, H)).detach().numpy()
    np.testing.assert_allclose(got, sigmoid(v @ arrays["W"] + arrays["bh"]), rtol=1e-5)
    u = np.array([[0.1, -0.4, 0.8]])
    bv_t, _, _ = model.conditional_biases(torch.zeros(1, 1, V), torch.from_numpy(u).float())
    np.testing.assert_allclose(bv_t[0, 0].detach().numpy(), arrays["bv"] + u[0] @ arrays["Wuv"], rtol=1e-5)


def test_config_round_trips_through_a_dict():
    config = RnnRbmConfig(n_hidden=7, cd_k=3, learned_u0=True)
    assert RnnRbmConfig.from_dict({**config.to_dict(), "unknown_future_key": 1}) == config


@pytest.mark.parametrize("chain_start", ["previous", "silence"])
def test_cd_chains_can_start_at_the_previous_frame_or_at_silence(chain_start):
    """With k = 0 the negative sample is the chain's start, so the cost is F(v_t) - F(start_t) exactly,
    padding excluded; the frame before a subsequence's first one is silence."""
    model = tiny_model(seed=11)
    v = random_rolls(2, 5, seed=3)
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    cost, _ = model.cd_loss(v, BernoulliSampler(0), mask, k=0, chain_start=chain_start)
    bv_t, bh_t, _ = model.conditional_biases(v)
    if chain_start == "previous":
        start = torch.cat([torch.zeros(2, 1, V, dtype=v.dtype), v[:, :-1]], dim=1)
    else:
        start = torch.zeros_like(v)
    gap = model.free_energy(v, bv_t, bh_t) - model.free_energy(start, bv_t, bh_t)  # (B, T)
    expected = (gap * mask).sum() / mask.sum()
    assert float(cost.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    data_cost, _ = model.cd_loss(v, BernoulliSampler(0), mask, k=0)
    assert float(data_cost.detach()) == 0.0  # the tutorial's start: a zero-step chain goes nowhere


def test_the_monitor_reconstructs_the_data_wherever_the_negative_chain_starts():
    """With persistent chains the training monitor is still the data's reconstruction (as on the valid
    split), not the persistent chain's end: with deterministic draws it equals the data-started one."""
    model = tiny_model(seed=13)
    v = random_rolls(2, 5)
    parked = 1 - v  # persistent chains far from the data
    _, from_data = model.cd_loss(v, ThresholdSampler(), k=2)
    _, persistent = model.cd_loss(v, ThresholdSampler(), k=2, chain_start=parked, monitor_sampler=ThresholdSampler())
    assert persistent == pytest.approx(from_data, rel=1e-12)
    # what the monitor read before: one Gibbs step from the persistent chain's end, a different number
    bv_t, bh_t, _ = model.conditional_biases(v)
    bv_t, bh_t, x = bv_t.detach().reshape(-1, V), bh_t.detach().reshape(-1, H), v.reshape(-1, V)
    end = model.gibbs_chain(parked.reshape(-1, V), bv_t, bh_t, 2, ThresholdSampler())
    h = (model.hidden_probabilities(end, bh_t) > 0.5).double()
    logits = h @ model.W.detach().t() + bv_t
    chain_end_reading = float((x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum() / len(x))
    assert abs(chain_end_reading - from_data) > 1.0


def test_with_many_frames_the_persistent_monitor_reads_a_spread_of_them(monkeypatch):
    """More frames than MONITOR_FRAMES: the monitor averages evenly spaced frames, first and last included."""
    import rnnrbm_studio.model as model_module
    monkeypatch.setattr(model_module, "MONITOR_FRAMES", 3)
    model = tiny_model(seed=13)
    v = random_rolls(1, 9)
    _, persistent = model.cd_loss(v, ThresholdSampler(), k=2, chain_start=1 - v, monitor_sampler=ThresholdSampler())
    monkeypatch.setattr(model_module, "MONITOR_FRAMES", 10**6)
    bv_t, bh_t, _ = model.conditional_biases(v)
    bv_t, bh_t, x = bv_t.detach().reshape(-1, V), bh_t.detach().reshape(-1, H), v.reshape(-1, V)
    chain = model.gibbs_chain(x, bv_t, bh_t, 2, ThresholdSampler())
    h = (model.hidden_probabilities(chain, bh_t) > 0.5).double()
    logits = h @ model.W.detach().t() + bv_t
    per_frame = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(1)
    assert persistent == pytest.approx(float(per_frame[[0, 4, 8]].mean()), rel=1e-12)

def test_an_unknown_chain_start_is_refused():
    with pytest.raises(ValueError, match="chain_start"):
        tiny_model().cd_loss(random_rolls(1, 3), BernoulliSampler(0), chain_start="noise")


def exact_conditional_distribution(model, u_prev: np.ndarray, keep: np.ndarray, held: np.ndarray) -> np.ndarray:
    """p(v | v[keep] = held[keep], u_{t-1}) over all 2^V frames: the RBM's marginal exp(-F), renormalised."""
    p = numpy_params(model)
    bv = p["bv"] + u_prev @ p["Wuv"]
    bh = p["bh"] + u_prev @ p["Wuh"]
    free_energy = -(ALL_V @ bv) - np.logaddexp(0, ALL_V @ p["W"] + bh).sum(-1)
    consistent = np.all(ALL_V[:, keep] == held[keep], axis=1)
    weights = np.where(consistent, np.exp(-free_energy), 0.0)
    return weights / weights.sum()


@pytest.mark.parametrize("keep,held", [([True, False, False, False, False], [1, 0, 0, 0, 0]),
                                       ([False, True, False, True, False], [0, 0, 0, 1, 0])])
def test_clamped_sampling_holds_the_clamped_keys_and_samples_the_exact_conditional(keep, held):
    model = tiny_model(seed=15, scale=1.0)
    u_prev_row = torch.tensor([0.3, -0.6, 0.9], dtype=torch.float64)
    keep_t = torch.tensor(keep)
    held_t = torch.tensor(held, dtype=torch.float64)
    n = 30_000
    frames = model.sample_frame(u_prev_row.expand(n, R).contiguous(), BernoulliSampler(5), 60,
                                clamp_mask=keep_t, clamp_values=held_t).numpy()
    assert (frames[:, keep_t.numpy()] == held_t.numpy()[keep_t.numpy()]).all()
    exact = exact_conditional_distribution(model, u_prev_row.numpy(), np.array(keep), np.array(held))
    unclamped = exact_conditional_distribution(model, u_prev_row.numpy(), np.zeros(V, bool), np.zeros(V))
    empirical = frame_histogram(frames)
    assert 0.5 * np.abs(empirical - exact).sum() < 0.025
    assert 0.5 * np.abs(unclamped - exact).sum() > 0.1  # the clamp really changes the distribution


def test_step_with_a_clamp_advances_the_rnn_on_the_whole_frame():
    model = tiny_model(seed=15, scale=1.0)
    state = torch.tensor([0.3, -0.6, 0.9], dtype=torch.float64)
    keep = torch.tensor([False, False, True, False, False])
    frame, after = model.step(state, BernoulliSampler(1), 5, clamp_mask=keep,
                              clamp_values=torch.tensor([0, 0, 1, 0, 0], dtype=torch.float64))
    assert frame[2] == 1
    assert torch.allclose(after, model.advance(state[None], frame[None])[0])


def test_free_energy_gap_gradient_passes_finite_differences_and_equals_autograd():
    """The CD cost's hand-written node (FreeEnergyGap) against finite differences and autograd's own graph."""
    generator = torch.Generator().manual_seed(21)
    n = 7
    v = (torch.rand(n, V, generator=generator, dtype=torch.float64) < 0.5).double()
    v_sample = (torch.rand(n, V, generator=generator, dtype=torch.float64) < 0.5).double()
    bv = torch.randn(n, V, generator=generator, dtype=torch.float64, requires_grad=True)
    bh = torch.randn(n, H, generator=generator, dtype=torch.float64, requires_grad=True)
    W = torch.randn(V, H, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: FreeEnergyGap.apply(v, v_sample, *t), (bv, bh, W))
    model = tiny_model()
    with torch.no_grad():
        model.W.copy_(W)
    reference = (model.free_energy(v, bv, bh) - model.free_energy(v_sample, bv, bh)).sum() / n
    gap = FreeEnergyGap.apply(v, v_sample, bv, bh, model.W)
    torch.testing.assert_close(gap, reference, rtol=1e-12, atol=1e-12)
    fast = torch.autograd.grad(gap * 1.7, (bv, bh, model.W))
    slow = torch.autograd.grad(reference * 1.7, (bv, bh, model.W))
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)



@pytest.mark.parametrize("steps,beta", [(0, 1.0), (2, 1.0), (1, 0.5)])
def test_a_chain_from_the_rnns_prediction_has_the_exact_distribution(steps, beta):
    """start="prediction": the chain starts at keys drawn independently with p = sigmoid(beta bv_t)."""
    model = tiny_model(seed=15, scale=1.0)
    u_prev_row = torch.tensor([0.3, -0.6, 0.9], dtype=torch.float64)
    p = numpy_params(model)
    p_start = sigmoid(beta * (p["bv"] + u_prev_row.numpy() @ p["Wuv"]))
    start = np.prod(np.where(ALL_V > 0, p_start, 1 - p_start), axis=-1)  # (32,)
    exact = exact_chain_distribution(model, u_prev_row.numpy(), steps, beta, start)
    n = 30_000
    frames = model.sample_frame(u_prev_row.expand(n, R).contiguous(), BernoulliSampler(7), steps,
                                inverse_temperature=beta, start="prediction").numpy()
    assert 0.5 * np.abs(frame_histogram(frames) - exact).sum() < 0.025
    silence = exact_chain_distribution(model, u_prev_row.numpy(), steps, beta)
    assert 0.5 * np.abs(silence - exact).sum() > (0.5 if steps == 0 else 0.01)  # not the chain from silence


def test_a_chain_from_given_frames_has_the_exact_distribution_and_keeps_a_clamp():
    model = tiny_model(seed=16, scale=1.0)
    u_prev = torch.tensor([[0.1, 0.4, -0.2]], dtype=torch.float64)
    given = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    start = np.zeros(32)
    start[int((given.numpy() * 2 ** np.arange(V - 1, -1, -1)).sum())] = 1.0
    exact = exact_chain_distribution(model, u_prev[0].numpy(), 2, 1.0, start)
    n = 30_000
    frames = model.sample_frame(u_prev.expand(n, R).contiguous(), BernoulliSampler(8), 2, start=given).numpy()
    assert 0.5 * np.abs(frame_histogram(frames) - exact).sum() < 0.025
    keep = torch.tensor([True, False, False, False, True])
    held = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    frame, _ = model.step(u_prev[0], BernoulliSampler(9), 3, clamp_mask=keep, clamp_values=held, start=given)
    assert frame[0] == 0.0 and frame[4] == 1.0
    with pytest.raises(ValueError, match="chain start"):
        model.sample_frame(u_prev, BernoulliSampler(0), 1, start="elsewhere")
