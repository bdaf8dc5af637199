"""The training-recipe options: pretraining phases, learning-rate schedule, selection by log-likelihood."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnrbm_studio.training.checkpoint import load_checkpoint
from rnnrbm_studio.model import BernoulliSampler, RnnRbm, RnnRbmConfig
from rnnrbm_studio.training.candidates import valid_log_likelihoods
from rnnrbm_studio.training.pretraining import learning_rate_factor, pretrain_rbm, pretrain_rnn
from rnnrbm_studio.training.trainer import TrainConfig, Trainer


def alternating_chords(length=60, V=12) -> np.ndarray:
    """Chord A, chord B, A, B...: each frame is certain given the previous one."""
    roll = np.zeros((length, V), dtype=np.uint8)
    roll[0::2, [0, 4, 7]] = 1
    roll[1::2, [2, 5, 9]] = 1
    return roll


def exact_independent_ll(model: RnnRbm, roll: np.ndarray) -> float:
    """log-likelihood per step of the model with W = 0 (independent notes): exact."""
    v = torch.as_tensor(roll, dtype=torch.float32).unsqueeze(0)
    with torch.no_grad():
        bv_t, _, _ = model.conditional_biases(v)
        return float(-F.binary_cross_entropy_with_logits(bv_t, v, reduction="none").sum(-1).mean())


def test_learning_rate_factor():
    assert learning_rate_factor("constant", 7, 10, 0.05) == 1.0
    factors = [learning_rate_factor("cosine", e, 10, 0.05) for e in range(1, 11)]
    assert factors[0] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert learning_rate_factor("cosine", 1, 1, 0.05) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        learning_rate_factor("step", 1, 10, 0.05)


def test_rnn_pretraining_learns_the_sequence_and_touches_only_the_rnn():
    torch.manual_seed(0)
    model = RnnRbm(RnnRbmConfig(n_visible=12, n_hidden=5, n_hidden_recurrent=8))
    roll = alternating_chords()
    batch = torch.as_tensor(roll, dtype=torch.float32).unsqueeze(0)
    W, bh, Wuh = model.W.detach().clone(), model.bh.detach().clone(), model.Wuh.detach().clone()
    before = exact_independent_ll(model, roll)
    stats = pretrain_rnn(model, lambda: [(batch, None)], epochs=150, lr=0.03)
    after = exact_independent_ll(model, roll)
    assert before < -7  # about 12 log 2 for coin flips
    assert after > -0.5  # the RNN knows which chord comes next
    assert stats["epochs"] == 150 and stats["log_likelihood"] == pytest.approx(after, abs=0.3)
    # W is zeroed during the phase and restored after it; the RBM's hidden biases are not trained
    assert torch.equal(model.W, W) and torch.equal(model.bh, bh) and torch.equal(model.Wuh, Wuh)
    assert all(p.grad is None for p in model.parameters())


def test_rbm_pretraining_learns_the_chords_and_touches_only_the_rbm():
    torch.manual_seed(1)
    model = RnnRbm(RnnRbmConfig(n_visible=12, n_hidden=6, n_hidden_recurrent=4, cd_k=3))
    rnn_before = {n: p.detach().clone() for n, p in model.named_parameters() if n not in ("W", "bv", "bh")}
    W_before = model.W.detach().clone()
    stats = pretrain_rbm(model, [alternating_chords()], epochs=60, lr=0.03, sampler=BernoulliSampler(0),
                         rng=np.random.default_rng(0), batch_frames=20)
    assert stats["epochs"] == 60
    assert stats["monitor"] > -1.0  # reconstructions of the two chords are nearly right
    assert not torch.equal(model.W, W_before)
    for name, value in rnn_before.items():
        assert torch.equal(getattr(model, name), value), name
    # the RBM alone now draws chords, not noise: from silence, samples are one of the two chords
    with torch.no_grad():
        v = model.gibbs_chain(torch.zeros(200, 12), model.bv.expand(200, -1), model.bh.expand(200, -1), 50,
                              BernoulliSampler(1))
    chords = {(0, 4, 7), (2, 5, 9)}
    share = np.mean([tuple(np.flatnonzero(row)) in chords for row in v.numpy()])
    assert share > 0.8


def small_setup(tmp_path, **train):
    torch.manual_seed(2)
    model = RnnRbm(RnnRbmConfig(n_visible=88, n_hidden=10, n_hidden_recurrent=8, cd_k=2))
    rng = np.random.default_rng(2)
    rolls = [(rng.random((t, 88)) < 0.04).astype(np.uint8) for t in (90, 70, 110)]
    config = TrainConfig(optimizer="adam", learning_rate=0.01, batch_seqs=2, seq_len=30, seed=3, **train)
    return Trainer(model, rolls[:2], rolls[2:], config, tmp_path / "m.pt")


def test_trainer_pretrains_once_selects_by_ll_and_decays_the_learning_rate(tmp_path):
    trainer = small_setup(tmp_path, epochs=3, rnn_pretrain_epochs=2, rbm_pretrain_epochs=1, select_by="ll",
                          select_frames=60, lr_schedule="cosine", lr_min_ratio=0.1, rnn_lr_scale=0.5)
    trainer.run()
    assert set(trainer.pretraining) == {"rnn", "rbm"}
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.001, 0.0005])  # 0.1 x at the end
    lls = [h.valid_ll for h in trainer.history]
    assert len(lls) == 3 and all(np.isfinite(lls))
    assert trainer.best.valid_ll == max(lls)
    best_epoch = int(np.argmax(lls))
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint.training.progress.best_valid_ll == max(lls)
    assert checkpoint.training.pretraining["rnn"]["epochs"] == 2
    pretrain_seconds = sum(p["seconds"] for p in checkpoint.training.pretraining.values())
    assert checkpoint.training.progress.elapsed_seconds == pytest.approx(
        pretrain_seconds + sum(h.seconds for h in trainer.history))
    # the weights kept are those of the best epoch by LL: re-measuring them gives that epoch's number
    trainer.model.load_state_dict(checkpoint.best_model_state)
    assert trainer.validation_log_likelihood() == pytest.approx(lls[best_epoch], abs=1e-9)
    # a resumed run goes on training without pretraining again
    resumed = Trainer.resume(tmp_path / "m.pt", trainer.train_rolls, [torch.as_tensor(r).numpy()
                                                                      for r in trainer.valid_rolls], epochs=4)
    resumed.run()
    assert resumed.epochs_completed == 4
    assert resumed.pretraining == checkpoint.training.pretraining


def test_default_config_keeps_the_tutorials_training(tmp_path):
    trainer = small_setup(tmp_path, epochs=2)
    trainer.run()
    assert trainer.pretraining == {} and trainer.best.valid_ll is None
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.01, 0.01]
    assert all(h.valid_ll is None for h in trainer.history)
    # the best weights follow the tutorial's monitor
    monitors = [h.valid_monitor for h in trainer.history]
    assert trainer.best.valid_monitor == max(monitors)


def test_rnn_pretraining_stops_on_valid_and_keeps_its_best_epoch():
    torch.manual_seed(3)
    model = RnnRbm(RnnRbmConfig(n_visible=12, n_hidden=5, n_hidden_recurrent=8))
    train = torch.as_tensor(alternating_chords(), dtype=torch.float32).unsqueeze(0)
    # valid music the training music does not predict: the same chords in another order, then noise
    other = np.vstack([alternating_chords(20)[::-1], (np.random.default_rng(0).random((20, 12)) < 0.3)])
    valid = torch.as_tensor(other, dtype=torch.float32).unsqueeze(0)
    stats = pretrain_rnn(model, lambda: [(train, None)], epochs=300, lr=0.03, valid_batches=[(valid, None)],
                         patience=3)
    assert stats["epochs"] < 300  # stopped when the valid likelihood stopped improving
    W = model.W.detach().clone()
    with torch.no_grad():
        model.W.zero_()
    assert exact_independent_ll(model, other) == pytest.approx(stats["valid_log_likelihood"], abs=1e-5)
    with torch.no_grad():
        model.W.copy_(W)


def test_min_updates_raises_the_epochs_of_a_small_corpus(tmp_path):
    # 2 pieces of 90 and 70 frames in 30-frame chunks: 3 + 3 = 6 chunks, 3 updates of 2 per epoch
    trainer = small_setup(tmp_path, epochs=2, min_updates=20)
    assert trainer.updates_per_epoch() == 3
    assert trainer.config.epochs == 7  # ceil(20 / 3)
    assert small_setup(tmp_path, epochs=9, min_updates=20).config.epochs == 9  # never lowered
    assert small_setup(tmp_path, epochs=2).config.epochs == 2


def test_runs_are_compared_on_the_same_valid_frames_with_the_same_random_numbers():
    """Equal models score exactly equal (so a difference is the weights'), the frame budget is kept,
    and a model that has learnt the valid data's pattern beats one that has not."""
    torch.manual_seed(0)
    untrained = RnnRbm(RnnRbmConfig(n_visible=12, n_hidden=8, n_hidden_recurrent=6, cd_k=2))
    trained = RnnRbm(untrained.config)
    trained.load_state_dict(untrained.state_dict())
    pretrain_rnn(trained, lambda: [(torch.as_tensor(alternating_chords(), dtype=torch.float32)[None], None)],
                 epochs=150, lr=0.05)
    valid = [alternating_chords(40), alternating_chords(40)]
    twin = RnnRbm(untrained.config)
    twin.load_state_dict(untrained.state_dict())
    first, same, better = valid_log_likelihoods([untrained, twin, trained], valid, frames=50, chains=8, n_betas=100)
    assert first.mean == same.mean
    budget, = valid_log_likelihoods([trained], valid, frames=40, chains=8, n_betas=100)
    first_piece_only, = valid_log_likelihoods([trained], valid[:1], frames=1000, chains=8, n_betas=100)
    assert budget.mean == first_piece_only.mean
    assert better.mean_floored > first.mean_floored + 1.0
