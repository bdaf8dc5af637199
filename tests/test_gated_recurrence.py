"""The gated (gru) recurrence, an option beside the paper's tanh RNN (RnnRbmConfig.recurrence).

Its hand-written backward pass against finite differences and against autograd through a plain loop,
generation's one-step cell against the training's loop, a gate that holds its state, and the option
end to end: a checkpoint that says which recurrence it has, the command line, export-params' refusal.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnrbm_studio.model import RnnRbm, RnnRbmConfig
from rnnrbm_studio.recurrences import GruRecurrence
from rnnrbm_studio.sampling import BernoulliSampler
from rnnrbm_studio.training.checkpoint import (CheckpointError, load_checkpoint, load_model, model_checkpoint,
                                               save_checkpoint)

from midi_fixtures import write_arpeggio_corpus
from model_fixtures import random_weights_model

V, H, R = 88, 6, 5


def gru_model(seed: int = 0, scale: float = 0.8, **config) -> RnnRbm:
    """A float64 gru model with weights large enough that the gates are far from one half."""
    return random_weights_model(seed, scale, torch.float64, n_hidden=H, n_hidden_recurrent=R, recurrence="gru",
                                **config)


def rolls(batch: int, frames: int, seed: int = 1, p: float = 0.1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, frames, V, generator=generator, dtype=torch.float64) < p).double()


def test_gru_backward_passes_gradcheck():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 3 * R, dtype=torch.float64, generator=generator, requires_grad=True)
    u_start = torch.randn(2, R, dtype=torch.float64, generator=generator, requires_grad=True)
    U = (torch.randn(R, 3 * R, dtype=torch.float64, generator=generator) * 0.7).requires_grad_()
    assert torch.autograd.gradcheck(GruRecurrence.apply, (x, u_start, U), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("learned_u0", [False, True])
def test_gru_recurrence_and_its_gradients_equal_autograd_through_the_cell(learned_u0):
    """The numpy loop (training) against model.cell in a Python loop (generation's step): values and
    every parameter's gradient, so training and playing run the same recurrence."""
    model = gru_model(seed=4, learned_u0=learned_u0)
    v = rolls(3, 9)
    weights = torch.randn(3, 9, R, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    results = []
    for run in (model.recurrence, model.recurrence_reference):
        model.zero_grad()
        u = run(v)
        (u * weights).sum().backward()
        results.append((u.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (fast, fast_grads), (loop, loop_grads) = results
    torch.testing.assert_close(fast, loop, rtol=1e-12, atol=1e-13)
    assert set(fast_grads) == set(loop_grads) >= {"Wvu", "Wuu", "bu", "Wvg", "Wug", "bg"}
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], loop_grads[name], rtol=1e-10, atol=1e-12, msg=name)


def test_gru_differs_from_tanh_and_prime_then_step_follows_the_loop():
    model = gru_model(seed=6)
    v = rolls(1, 7, seed=2)
    state = model.prime(v[0, :6])
    torch.testing.assert_close(model.advance(state.unsqueeze(0), v[:, 6])[0], model.recurrence(v)[0, -1])
    tanh = RnnRbm(RnnRbmConfig(n_hidden=H, n_hidden_recurrent=R)).double()
    tanh.load_state_dict({k: t for k, t in model.state_dict().items() if k in dict(tanh.named_parameters())})
    assert not torch.allclose(tanh.recurrence(v), model.recurrence(v))


def test_an_update_gate_held_open_keeps_the_state_for_hundreds_of_frames():
    """What tanh cannot do: with z_t = 1 the state after 300 frames is the state before them."""
    model = gru_model(seed=7)
    with torch.no_grad():
        model.bg[:R] = 40.0  # z = sigmoid(40 + ...) = 1 in float64 for these weights
        model.Wvg[:, :R] = 0.0
        model.Wug[:, :R] = 0.0
    u_start = torch.randn(2, R, dtype=torch.float64)
    u = model.recurrence(rolls(2, 300, seed=3, p=0.3), u_start)
    torch.testing.assert_close(u[:, -1], u_start, rtol=0, atol=1e-12)


def test_a_gru_checkpoint_round_trips_and_says_its_recurrence(tmp_path):
    model = gru_model(seed=8).float()
    path = tmp_path / "gru.pt"
    save_checkpoint(path, model_checkpoint(model))
    loaded, checkpoint = load_model(path)
    assert checkpoint.model_config.recurrence == "gru" and loaded.gated
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    sampler = BernoulliSampler(1)
    frame, state = loaded.step(loaded.initial_state(), sampler, gibbs_steps=3)
    assert frame.shape == (V,) and state.shape == (R,) and torch.isfinite(state).all()


def test_a_checkpoint_without_a_recurrence_is_the_papers_tanh(tmp_path):
    """Files written before the option existed name no recurrence: they are tanh models."""
    model = RnnRbm(RnnRbmConfig(n_hidden=H, n_hidden_recurrent=R))
    path = tmp_path / "old.pt"
    save_checkpoint(path, model_checkpoint(model))
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["recurrence"]
    torch.save(payload, path)
    loaded, checkpoint = load_model(path)
    assert checkpoint.model_config.recurrence == "tanh" and not loaded.gated


@pytest.mark.parametrize("change, message", [
    (lambda p: p["model_config"].update(recurrence="lstm"), "model_config.recurrence is 'lstm', not one of tanh, gru"),
    (lambda p: p["model_state"].pop("Wug"), "lacks Wug"),
    (lambda p: p["model_config"].update(recurrence="tanh"), "has unknown weights Wvg, Wug, bg"),
    (lambda p: p["model_state"].update(bg=torch.zeros(3)), "bg"),
])
def test_a_gru_checkpoint_that_does_not_hold_together_is_refused(tmp_path, change, message):
    path = tmp_path / "gru.pt"
    save_checkpoint(path, model_checkpoint(gru_model(seed=9).float()))
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(")):
        load_checkpoint(path)


def test_train_with_the_gru_option_then_generate_and_export_params_refuses(tmp_path):
    """The command line end to end: --recurrence gru trains (pretraining included), the file plays,
    and export-params, whose arrays are the tanh tutorial's, says why it cannot export it."""
    data = tmp_path / "songs"
    write_arpeggio_corpus(data, 4, n_frames=24)
    out = tmp_path / "gru.pt"
    cli = [sys.executable, "-m", "rnnrbm_studio"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    trained = subprocess.run([*cli, "train", str(data), "--out", str(out), "--recurrence", "gru", "--epochs", "2",
                              "--hidden", "12", "--recurrent", "6", "--cd-k", "2", "--seq-len", "12",
                              "--rnn-pretrain-epochs", "2", "--rnn-weight-decay", "0.1", "--threads", "1"],
                             capture_output=True, text=True, timeout=180, env=env, cwd=Path(__file__).parent.parent)
    assert trained.returncode == 0, trained.stderr
    model, checkpoint = load_model(out)
    assert model.gated and checkpoint.training.progress.epochs_completed == 2
    assert float(model.Wug.detach().abs().sum()) > 0
    generated = subprocess.run([*cli, "generate", str(out), "--out", str(tmp_path / "g.mid"), "--frames", "16"],
                               capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parent.parent)
    assert generated.returncode == 0, generated.stderr
    exported = subprocess.run([*cli, "export-params", str(out), str(tmp_path / "p.npz")],
                              capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parent.parent)
    assert exported.returncode != 0 and "Traceback" not in exported.stderr
    assert "gated (gru) recurrence" in exported.stderr and not (tmp_path / "p.npz").exists()


def test_the_gates_train_at_the_rnn_s_rate_and_their_matrices_take_the_rnn_s_decay():
    from dataclasses import replace

    from rnnrbm_studio.training.trainer import TrainConfig, Trainer
    from midi_fixtures import arpeggio_roll

    rolls = [arpeggio_roll(40, (60, 64, 67)), arpeggio_roll(40, (62, 65, 69))]
    config = TrainConfig(epochs=1, optimizer="adam", learning_rate=0.01, batch_seqs=2, rnn_lr_scale=0.5)

    def trained(**changes) -> Trainer:
        torch.manual_seed(0)
        trainer = Trainer(RnnRbm(RnnRbmConfig(n_hidden=8, n_hidden_recurrent=4, cd_k=2, recurrence="gru")),
                          rolls, (), replace(config, **changes))
        trainer.run()
        return trainer

    plain, decayed = trained(), trained(rnn_weight_decay=0.5)
    rnn_group = {id(p) for p in plain.optimizer.param_groups[1]["params"]}
    assert {id(getattr(plain.model, name)) for name in ("Wvg", "Wug", "bg")} <= rnn_group
    for name in ("Wvg", "Wug"):  # at the RNN's learning rate, 0.005
        torch.testing.assert_close(getattr(decayed.model, name), getattr(plain.model, name) * (1 - 0.005 * 0.5),
                                   rtol=1e-6, atol=0)
    torch.testing.assert_close(decayed.model.bg, plain.model.bg, rtol=0, atol=0)  # biases are not decayed
