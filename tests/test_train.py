"""The trainer: it learns, stops when asked, resumes exactly, guards against NaN, batches correctly."""
from __future__ import annotations

import math
from dataclasses import replace
import threading

import numpy as np
import pytest
import torch

from rnnrbm_studio.training.checkpoint import CheckpointError, load_checkpoint, load_model
from rnnrbm_studio.model import BernoulliSampler, RnnRbm, RnnRbmConfig
from rnnrbm_studio.training.batches import pad
from rnnrbm_studio.training.trainer import TrainConfig, Trainer, TrainProgress

from midi_fixtures import arpeggio_roll
from test_model import ThresholdSampler

CHORDS = ((60, 64, 67, 72), (57, 60, 64, 69))
CHORD_KEYS = np.array(sorted(set(CHORDS[0]) | set(CHORDS[1]))) - 21


def arpeggios(n: int = 8, frames: int = 48) -> list[np.ndarray]:
    return [arpeggio_roll(frames + 3 * (i % 3), CHORDS[i % 2]) for i in range(n)]


def small_model(hidden: int = 32, recurrent: int = 16, cd_k: int = 3, seed: int = 0) -> RnnRbm:
    torch.manual_seed(seed)
    return RnnRbm(RnnRbmConfig(n_hidden=hidden, n_hidden_recurrent=recurrent, cd_k=cd_k))


def counting_cd_loss(model, monkeypatch) -> list[int]:
    """Counts updates: every update computes exactly one cd_loss on the training batch."""
    calls = []
    original = model.cd_loss

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "cd_loss", counted)
    return calls


# ----------------------------------------------------------------------------- learning
def test_training_learns_repeating_arpeggios():
    rolls = arpeggios()
    model = small_model()
    untrained = model.generate(64, seed=0)
    events = []
    config = TrainConfig(epochs=8, learning_rate=0.03, optimizer="adam", batch_seqs=4, seq_len=16, seed=0)
    result = Trainer(model, rolls, rolls[:2], config, progress=events.append, progress_interval=0).run()
    assert result.status == "finished" and result.epochs_completed == 8
    monitors = [h.monitor for h in result.history]
    assert monitors[-1] > monitors[0] + 20, monitors  # from ~-40 to ~-2 nats per frame
    assert monitors[-1] > -6
    assert result.history[-1].valid_monitor > -6 and result.best_valid_monitor >= result.history[-1].valid_monitor
    assert all(math.isfinite(h.loss) for h in result.history)
    # the generated music resembles the corpus: about one note per step, from the two chords
    generated = model.generate(64, seed=0)
    assert 0.5 < generated.sum(1).mean() < 2.0
    assert generated[:, CHORD_KEYS].sum() / generated.sum() > 0.9
    assert untrained.sum(1).mean() > 20  # before training: about half of all keys at every step
    # progress: steps within epochs, one 'epoch' event per epoch, then 'finished'
    kinds = [e.event for e in events]
    assert kinds.count("epoch") == 8 and kinds[-1] == "finished" and "step" in kinds
    epoch_events = [e for e in events if e.event == "epoch"]
    assert [e.epoch for e in epoch_events] == list(range(1, 9))
    assert all(isinstance(e, TrainProgress) and 0 <= e.fraction <= 1 for e in events)
    assert epoch_events[-1].fraction == 1.0 and epoch_events[-1].valid_monitor is not None


def test_the_tutorial_schedule_uses_one_subsequence_per_update_in_order():
    rolls = [(np.random.default_rng(i).random((35, 88)) < 0.3).astype(np.uint8) for i in range(3)]
    trainer = Trainer(small_model(), rolls, (), TrainConfig(seq_len=10, seed=4))
    batches = trainer._epoch_batches()
    assert [b.shape[1] for b, _ in batches] == [10, 10, 10, 5] * 3
    assert all(b.shape[0] == 1 and mask is None for b, mask in batches)
    # subsequences of a sequence come in order; the sequences in a shuffled order
    pieces = [torch.cat([b[0] for b, _ in batches[4 * i:4 * i + 4]]) for i in range(3)]
    matched = sorted(j for piece in pieces for j, roll in enumerate(rolls)
                     if torch.equal(piece, torch.from_numpy(roll.astype(np.float32))))
    assert matched == [0, 1, 2]


def test_minibatches_cover_every_frame_once_with_a_mask():
    rolls = [arpeggio_roll(n) for n in (23, 40, 7, 31)]
    trainer = Trainer(small_model(), rolls, (), TrainConfig(seq_len=10, batch_seqs=3, seed=5))
    batches = trainer._epoch_batches()
    total = sum(len(r) for r in rolls)
    assert sum(int(mask.sum()) for _, mask in batches) == total
    for batch, mask in batches:
        assert batch.shape[0] <= 3 and batch.shape[1] <= 10
        assert not batch[mask == 0].any()  # padding is silent
        lengths = mask.sum(1).long()
        for row, length in zip(mask, lengths):
            assert row[:length].all() and not row[length:].any()  # padding only at the end
    assert sum(float(b.sum()) for b, _ in batches) == sum(float(r.sum()) for r in rolls)


def test_padded_batches_give_the_same_cost_and_gradient_as_each_sequence_alone():
    model = small_model(hidden=12, recurrent=7, cd_k=4, seed=3)
    with torch.no_grad():  # weights that matter (the init is tiny)
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    generator = torch.Generator().manual_seed(0)
    chunks = [(torch.rand(n, 88, generator=generator) < 0.2).float() for n in (10, 4, 7)]
    sampler = ThresholdSampler()  # deterministic per frame: both layouts see the same negative phase
    batch, mask = pad(chunks)
    cost, monitor = model.cd_loss(batch, sampler, mask)
    model.zero_grad()
    cost.backward()
    batched_grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    n_total = sum(len(c) for c in chunks)
    expected_cost = expected_monitor = 0.0
    expected_grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for chunk in chunks:
        c, m = model.cd_loss(chunk.unsqueeze(0), sampler)
        model.zero_grad()
        c.backward()
        weight = len(chunk) / n_total
        expected_cost += float(c.detach()) * weight
        expected_monitor += m * weight
        for n, p in model.named_parameters():
            expected_grads[n] += p.grad * weight
    assert float(cost.detach()) == pytest.approx(expected_cost, rel=1e-5, abs=1e-6)
    assert monitor == pytest.approx(expected_monitor, rel=1e-5)
    for n in batched_grads:
        torch.testing.assert_close(batched_grads[n], expected_grads[n], rtol=1e-4, atol=1e-6, msg=n)
    assert any(float(g.abs().max()) > 1e-3 for g in batched_grads.values())


def test_padded_batches_match_in_expectation_with_real_sampling():
    """With the real sampler the batched and per-sequence costs agree on average."""
    model = small_model(hidden=12, recurrent=7, cd_k=2, seed=4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    generator = torch.Generator().manual_seed(1)
    chunks = [(torch.rand(n, 88, generator=generator) < 0.2).float() for n in (12, 5)]
    batch, mask = pad(chunks)
    sampler = BernoulliSampler(0)
    # many copies of the batch in one call: 200 independent chains per frame at the cost of one call
    copies = 200
    with torch.no_grad():
        batched = float(model.cd_loss(batch.repeat(copies, 1, 1), sampler, mask.repeat(copies, 1))[0])
        separate = sum(float(model.cd_loss(c.unsqueeze(0).repeat(copies, 1, 1), sampler)[0]) * len(c)
                       for c in chunks) / 17
        spread = np.std([float(model.cd_loss(batch, sampler, mask)[0]) for _ in range(50)]) / np.sqrt(copies)
    assert abs(batched - separate) < 5 * spread + 1e-3, (batched, separate, spread)


# ------------------------------------------------------------------------------- stopping
def test_stop_from_the_progress_callback_takes_effect_within_one_update(tmp_path, monkeypatch):
    model = small_model()
    updates = counting_cd_loss(model, monkeypatch)
    events = []
    trainer = None

    def progress(p):
        events.append(p)
        if p.event == "step" and p.step == 3:
            trainer.request_stop()

    trainer = Trainer(model, arpeggios(), (), TrainConfig(epochs=5, seq_len=8, seed=0), tmp_path / "run.pt",
                      progress=progress, progress_interval=0)
    result = trainer.run()
    assert result.status == "stopped" and len(updates) == 3
    assert result.epochs_completed == 0 and "stopped during epoch 1" in result.message
    assert events[-1].event == "stopped"
    checkpoint = load_checkpoint(tmp_path / "run.pt")  # the weights so far are saved
    assert checkpoint.training.progress.epochs_completed == 0
    saved, _ = load_model(tmp_path / "run.pt", which="last")
    for name, p in model.state_dict().items():
        assert torch.equal(saved.state_dict()[name], p), name


def test_stop_from_another_thread_takes_effect_within_one_update(tmp_path, monkeypatch):
    model = small_model()
    updates = counting_cd_loss(model, monkeypatch)
    reached_step_2 = threading.Event()
    stop_requested = threading.Event()
    trainer = Trainer(model, arpeggios(), (), TrainConfig(epochs=5, seq_len=8, seed=0), tmp_path / "run.pt",
                      progress=lambda p: _pause_at_step_2(p, reached_step_2, stop_requested),
                      progress_interval=0)

    def stopper():
        reached_step_2.wait(timeout=60)
        trainer.request_stop()
        stop_requested.set()

    thread = threading.Thread(target=stopper, name="stopper")
    thread.start()
    result = trainer.run()
    thread.join(timeout=60)
    assert result.status == "stopped" and len(updates) == 2
    assert trainer.stop_requested
    assert load_checkpoint(tmp_path / "run.pt").training.progress.epochs_completed == 0


def _pause_at_step_2(progress, reached, released):
    """Hold the training loop at step 2 until the other thread has asked it to stop."""
    if progress.event == "step" and progress.step == 2 and not reached.is_set():
        reached.set()
        assert released.wait(timeout=60)


def test_training_in_a_background_thread_stops_from_the_main_thread(tmp_path):
    first_step = threading.Event()
    trainer = Trainer(small_model(), arpeggios(), (), TrainConfig(epochs=1000, seq_len=8, seed=0),
                      tmp_path / "run.pt", progress=lambda p: first_step.set(), progress_interval=0)
    results = []
    thread = threading.Thread(target=lambda: results.append(trainer.run()), name="trainer")
    thread.start()
    assert first_step.wait(timeout=60)
    trainer.request_stop()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert results[0].status == "stopped" and results[0].epochs_completed < 1000
    load_checkpoint(tmp_path / "run.pt")


# -------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("optimizer,batch_seqs,momentum,extra", [
    ("adam", 3, 0.0, {"key_shift": 2}),  # key_shift: the shuffle RNG matters too
    ("sgd", 1, 0.9, {"key_shift": 2}),
    ("adam", 3, 0.0, {"cd_start": "persistent", "weight_decay": 0.1}),  # the chains' states are saved too
    ("adam", 3, 0.0, {"average": 0.9}),  # the running average is saved too
])
def test_resuming_two_plus_two_epochs_equals_four_epochs_bitwise(tmp_path, optimizer, batch_seqs, momentum, extra):
    rolls = arpeggios(6, 40)
    valid = arpeggios(2, 20)
    config = dict(learning_rate=0.01, optimizer=optimizer, batch_seqs=batch_seqs, momentum=momentum,
                  seq_len=16, seed=3, **extra)

    straight = Trainer(small_model(16, 8, 2), rolls, valid, TrainConfig(epochs=4, **config), tmp_path / "full.pt")
    straight.run()

    first = Trainer(small_model(16, 8, 2), rolls, valid, TrainConfig(epochs=2, **config), tmp_path / "half.pt")
    assert first.run().epochs_completed == 2
    resumed = Trainer.resume(tmp_path / "half.pt", rolls, valid, epochs=4)
    assert resumed.epochs_completed == 2 and len(resumed.history) == 2
    assert resumed.optimizer.state_dict()["state"], "the optimiser state was not restored"
    result = resumed.run()
    assert result.status == "finished" and result.epochs_completed == 4 and len(result.history) == 4

    for name, p in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], p), f"{name} differs after resume"
    for key in ("epoch", "loss", "monitor", "valid_monitor"):
        assert [getattr(h, key) for h in resumed.history] == [getattr(h, key) for h in straight.history], key
    assert resumed.best.valid_monitor == straight.best.valid_monitor
    training = load_checkpoint(tmp_path / "half.pt").training  # the resumed run keeps writing the same file
    assert training.progress.epochs_completed == 4 and training.train_config.epochs == 4
    for state, expected in zip(resumed.chains.states if resumed.chains else [],
                               straight.chains.states if straight.chains else []):
        np.testing.assert_array_equal(state, expected)
    for name, p in (straight.best.state or {}).items():
        assert torch.equal(resumed.best.state[name], p), f"kept {name} differs after resume"


def test_resume_refuses_persistent_chains_from_other_data(tmp_path):
    Trainer(small_model(), arpeggios(4, 40), (), TrainConfig(epochs=1, cd_start="persistent"),
            tmp_path / "run.pt").run()
    with pytest.raises(CheckpointError, match="other data"):
        Trainer.resume(tmp_path / "run.pt", arpeggios(5, 40), (), epochs=2)


def test_resume_after_a_stop_continues_from_the_saved_weights(tmp_path):
    rolls = arpeggios(4, 32)
    trainer = None

    def stop_at_step_2(p):
        if p.event == "step" and p.step == 2:
            trainer.request_stop()

    trainer = Trainer(small_model(16, 8, 2), rolls, (), TrainConfig(epochs=2, seq_len=8, seed=1),
                      tmp_path / "run.pt", progress=stop_at_step_2, progress_interval=0)
    assert trainer.run().status == "stopped"
    stopped_weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    resumed = Trainer.resume(tmp_path / "run.pt", rolls)
    for name, value in stopped_weights.items():
        assert torch.equal(resumed.model.state_dict()[name], value)
    result = resumed.run()
    assert result.status == "finished" and result.epochs_completed == 2


def test_resume_refuses_a_file_without_training_state(tmp_path):
    from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint
    from rnnrbm_studio.errors import StudioError

    save_checkpoint(tmp_path / "model.pt", model_checkpoint(small_model()))
    with pytest.raises(StudioError, match="no training state"):
        Trainer.resume(tmp_path / "model.pt", arpeggios())


# ------------------------------------------------------------------------------- NaN guard
def test_a_nan_gradient_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    model = small_model()
    events = []
    after_epoch_1 = {}

    def progress(p):
        events.append(p)
        if p.event == "epoch" and p.epoch == 1:  # poison every later gradient of W
            after_epoch_1.update({k: v.clone() for k, v in model.state_dict().items()})
            model.W.register_hook(lambda grad: grad * math.nan)

    result = Trainer(model, arpeggios(), (), TrainConfig(epochs=4, seq_len=8, seed=0), tmp_path / "run.pt",
                     progress=progress).run()
    assert result.status == "diverged" and result.epochs_completed == 1
    assert "epoch 2, update 1" in result.message and "last good checkpoint (epoch 1) is kept" in result.message
    assert events[-1].event == "diverged" and events[-1].message == result.message
    assert not torch.isfinite(model.W).all()  # the guard fired for a real reason
    saved, checkpoint = load_model(tmp_path / "run.pt", which="last")
    assert checkpoint.training.progress.epochs_completed == 1
    for name, p in saved.state_dict().items():
        assert torch.isfinite(p).all() and torch.equal(p, after_epoch_1[name]), name


def test_a_nan_loss_stops_training_before_the_update(tmp_path, monkeypatch):
    model = small_model()
    original = model.cd_loss
    calls = []

    def nan_on_the_fifth(*args, **kwargs):
        calls.append(1)
        cost, monitor = original(*args, **kwargs)
        return (cost * math.nan, monitor) if len(calls) == 5 else (cost, monitor)

    monkeypatch.setattr(model, "cd_loss", nan_on_the_fifth)
    # 3 updates per epoch (24 frames, 8 per update, no valid data): the fifth is epoch 2, update 2
    trainer = Trainer(model, [arpeggio_roll(24)], (), TrainConfig(epochs=10, seq_len=8, seed=0), tmp_path / "run.pt")
    result = trainer.run()
    assert result.status == "diverged" and len(calls) == 5 and "epoch 2, update 2" in result.message
    assert all(torch.isfinite(p).all() for p in model.parameters())  # stopped before stepping on it
    assert load_checkpoint(tmp_path / "run.pt").training.progress.epochs_completed == 1


def test_a_huge_learning_rate_diverges_cleanly(tmp_path):
    result = Trainer(small_model(16, 8, 2), arpeggios(4, 40), (),
                     TrainConfig(epochs=3, learning_rate=1e38, seq_len=16, seed=0), tmp_path / "run.pt").run()
    assert result.status == "diverged" and "nothing was saved" in result.message
    assert not (tmp_path / "run.pt").exists()


# ------------------------------------------------------------------------------ set-up
def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        Trainer(small_model(), arpeggios(), (), TrainConfig(optimizer="rmsprop"))
    with pytest.raises(ValueError, match="no training data"):
        Trainer(small_model(), [np.zeros((0, 88))], (), TrainConfig())
    assert TrainConfig.from_dict({"epochs": 3, "future": 1}) == TrainConfig(epochs=3)


def test_rnn_learning_rate_scale_and_gradient_clipping_are_applied():
    trainer = Trainer(small_model(), arpeggios(), (), TrainConfig(learning_rate=0.1, rnn_lr_scale=0.5))
    groups = trainer.optimizer.param_groups
    assert groups[0]["lr"] == 0.1 and groups[1]["lr"] == 0.05
    rnn_ids = {id(getattr(trainer.model, n)) for n in ("Wuh", "Wuv", "Wvu", "Wuu", "bu")}
    assert {id(p) for p in groups[1]["params"]} == rnn_ids
    assert not rnn_ids & {id(p) for p in groups[0]["params"]}


def test_weight_decay_shrinks_w_after_each_update_by_the_learning_rate_times_the_decay():
    """One update with decay is the same update without it, then W scaled by (1 - lr * decay)."""
    rolls = arpeggios(n=2, frames=40)
    config = TrainConfig(epochs=1, optimizer="adam", learning_rate=0.01, batch_seqs=2)
    plain = Trainer(small_model(), rolls, (), config)
    decayed = Trainer(small_model(), rolls, (), replace(config, weight_decay=0.5))
    plain.run()
    decayed.run()
    torch.testing.assert_close(decayed.model.W, plain.model.W * (1 - 0.01 * 0.5), rtol=1e-12, atol=0)
    torch.testing.assert_close(decayed.model.bv, plain.model.bv, rtol=0, atol=0)  # biases are not decayed
    torch.testing.assert_close(decayed.model.Wuv, plain.model.Wuv, rtol=0, atol=0)
    rnn_decayed = Trainer(small_model(), rolls, (), replace(config, rnn_weight_decay=0.5, rnn_lr_scale=0.5))
    rnn_plain = Trainer(small_model(), rolls, (), replace(config, rnn_lr_scale=0.5))
    rnn_decayed.run()
    rnn_plain.run()
    for name in ("Wuh", "Wuv", "Wvu", "Wuu"):  # at the RNN's learning rate, 0.005
        expected = getattr(rnn_plain.model, name) * (1 - 0.005 * 0.5)
        torch.testing.assert_close(getattr(rnn_decayed.model, name), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(rnn_decayed.model.W, rnn_plain.model.W, rtol=0, atol=0)
    torch.testing.assert_close(rnn_decayed.model.bu, rnn_plain.model.bu, rtol=0, atol=0)


def test_the_trainer_passes_its_chain_start_to_the_cd_cost(monkeypatch):
    trainer = Trainer(small_model(), arpeggios(n=2), (), TrainConfig(epochs=1, cd_start="previous", batch_seqs=2))
    seen = []
    original = trainer.model.cd_loss

    def recording(*args, **kwargs):
        seen.append(kwargs.get("chain_start"))
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer.model, "cd_loss", recording)
    trainer.run()
    assert seen and set(seen) == {"previous"}


@pytest.mark.parametrize("batch_seqs", [1, 3])
def test_persistent_chains_start_where_each_frame_s_chain_stopped_the_epoch_before(monkeypatch, batch_seqs):
    """A stand-in chain that flips every key: after one epoch each frame's stored state is its data
    flipped, after two the data again, and padding never reaches the store."""
    rolls = arpeggios(n=5, frames=130)  # two subsequences each, the second one short (padding)
    trainer = Trainer(small_model(), rolls, (), TrainConfig(epochs=1, cd_start="persistent", batch_seqs=batch_seqs))
    starts = []

    def flipping_chain(v, bv, bh, steps, sampler):
        if sampler is not trainer.monitor_sampler:  # the monitor's own chains start at the data
            starts.append(v.clone())
        return 1 - v

    monkeypatch.setattr(trainer.model, "gibbs_chain", flipping_chain)
    trainer.run()
    first_epoch_starts = torch.cat(starts)
    assert first_epoch_starts.sum() == sum(float(r.sum()) for r in rolls)  # epoch 1 starts at the data
    for state, roll in zip(trainer.chains.states, rolls):
        np.testing.assert_array_equal(state, 1 - roll)
    trainer.config.epochs = 2
    trainer.run()
    for state, roll in zip(trainer.chains.states, rolls):
        np.testing.assert_array_equal(state, roll)


def test_persistent_chains_follow_their_piece_into_each_epoch_s_key(monkeypatch):
    """With a chain that does not move, every start must equal this epoch's (transposed) batch: the
    states are stored in the piece's own key and shifted into whatever key the piece has this epoch."""
    rolls = arpeggios(n=4, frames=130)
    trainer = Trainer(small_model(), rolls, (), TrainConfig(epochs=1, cd_start="persistent", key_shift=5,
                                                             batch_seqs=3))
    monkeypatch.setattr(trainer.model, "gibbs_chain", lambda v, bv, bh, steps, sampler: v.clone())
    seen, original = [], trainer.model.cd_loss

    def recording(batch, sampler, mask=None, **kwargs):
        seen.append((batch.clone(), kwargs["chain_start"].clone(), mask))
        return original(batch, sampler, mask, **kwargs)

    monkeypatch.setattr(trainer.model, "cd_loss", recording)
    shifts = []
    for epochs in (1, 2, 3):
        trainer.config.epochs = epochs
        trainer.run()
        shifts += [shift for group in trainer._batch_chunks for *_, shift in group]
    assert len(set(shifts)) > 2  # the pieces really moved between keys
    for batch, start, mask in seen:
        real = mask > 0 if mask is not None else slice(None)
        torch.testing.assert_close(start[real], batch[real], rtol=0, atol=0)
    for state, roll in zip(trainer.chains.states, rolls):
        np.testing.assert_array_equal(state, roll)


def test_the_weights_kept_are_the_running_average_of_the_weights_after_each_update(monkeypatch):
    """average=d: a_1 = w_1, a_n = d a_(n-1) + (1 - d) w_n over the updates; with no valid data the
    average is the model kept, while the raw weights stay in the model to go on training."""
    decay = 0.8
    trainer = Trainer(small_model(), arpeggios(n=6, frames=40), (),
                      TrainConfig(epochs=2, optimizer="adam", learning_rate=0.02, batch_seqs=2, average=decay))
    after_each_update, original_step = [], trainer.optimizer.step

    def recording_step(*args, **kwargs):
        result = original_step(*args, **kwargs)
        after_each_update.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        return result

    monkeypatch.setattr(trainer.optimizer, "step", recording_step)
    trainer.run()
    assert len(after_each_update) == 2 * trainer.updates_per_epoch() > 4
    expected = dict(after_each_update[0])
    for weights in after_each_update[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    for name, value in expected.items():
        torch.testing.assert_close(trainer.best.state[name], value)
        torch.testing.assert_close(trainer.model.state_dict()[name], after_each_update[-1][name], rtol=0, atol=0)
    assert not torch.allclose(trainer.best.state["W"], trainer.model.W)


def test_selection_by_the_valid_monitor_judges_the_averaged_weights(monkeypatch):
    trainer = Trainer(small_model(), arpeggios(n=4, frames=40), arpeggios(n=2, frames=20),
                      TrainConfig(epochs=1, batch_seqs=2, average=0.5))
    judged = []
    original = trainer.validation_monitor
    monkeypatch.setattr(trainer, "validation_monitor",
                        lambda: judged.append(trainer.model.W.detach().clone()) or original())
    trainer.run()
    torch.testing.assert_close(judged[0], trainer.averaged_state["W"], rtol=0, atol=0)
    torch.testing.assert_close(trainer.best.state["W"], trainer.averaged_state["W"], rtol=0, atol=0)
    assert not torch.equal(trainer.model.W, trainer.averaged_state["W"])


def test_key_shift_augments_only_the_first_fraction_of_the_epochs():
    trainer = Trainer(small_model(16, 8, 2), arpeggios(n=6, frames=40), (),
                      TrainConfig(epochs=1, seq_len=20, key_shift=4, key_shift_fraction=0.5))
    trainer.config.epochs = 4
    shifts_by_epoch = []
    for _ in range(4):
        trainer._epoch_batches()
        shifts_by_epoch.append({shift for group in trainer._batch_chunks for *_, shift in group})
        trainer.epochs_completed += 1
    assert len(shifts_by_epoch[0]) > 1 and len(shifts_by_epoch[1]) > 1
    assert shifts_by_epoch[2] == shifts_by_epoch[3] == {0}


def test_key_shift_steps_of_twelve_move_pieces_by_whole_octaves():
    trainer = Trainer(small_model(16, 8, 2), arpeggios(n=8, frames=40), (),
                      TrainConfig(epochs=3, seq_len=20, key_shift=1, key_shift_step=12))
    shifts = set()
    for _ in range(3):
        trainer._epoch_batches()
        shifts |= {shift for group in trainer._batch_chunks for *_, shift in group}
    assert shifts == {-12, 0, 12}


def test_rnn_input_dropout_hides_keys_from_the_rnn_only(monkeypatch):
    """--rnn-input-dropout p: the RNN reads each frame with keys dropped at rate p and the rest scaled by
    1 / (1 - p); the RBM's data term is the whole frame; p = 0 draws nothing (runs stay as they were)."""
    rolls = arpeggios(n=2, frames=40)
    config = TrainConfig(epochs=1, batch_seqs=2, rnn_input_dropout=0.5)
    trainer = Trainer(small_model(), rolls, (), config)
    seen = []
    original = trainer.model.cd_loss

    def recording(batch, *args, **kwargs):
        seen.append((batch.clone(), kwargs.get("rnn_input")))
        return original(batch, *args, **kwargs)

    monkeypatch.setattr(trainer.model, "cd_loss", recording)
    trainer.run()
    assert seen
    batch, rnn_input = seen[0]
    assert rnn_input is not None and rnn_input.shape == batch.shape
    assert set(torch.unique(rnn_input).tolist()) <= {0.0, 2.0}
    assert torch.equal(rnn_input > 0, (batch > 0) & (rnn_input > 0))  # only keys down can be read
    kept = float((rnn_input > 0).sum() / (batch > 0).sum())
    assert 0.4 < kept < 0.6, kept

    plain = Trainer(small_model(), rolls, (), replace(config, rnn_input_dropout=0.0))
    plain_seen = []
    plain_original = plain.model.cd_loss
    monkeypatch.setattr(plain.model, "cd_loss",
                        lambda batch, *a, **k: plain_seen.append(k.get("rnn_input")) or plain_original(batch, *a, **k))
    plain.run()
    assert plain_seen and all(x is None for x in plain_seen)
    reference = Trainer(small_model(), rolls, (), replace(config, rnn_input_dropout=0.0))
    reference.run()
    for name, weight in reference.model.state_dict().items():
        torch.testing.assert_close(plain.model.state_dict()[name], weight, rtol=0, atol=0)


def test_cd_cost_with_an_rnn_input_conditions_on_it_but_models_the_frames():
    model = small_model()
    with torch.no_grad():  # the RNN's weights large enough that what it reads shows in the biases
        for name in ("Wvu", "Wuu", "Wuv", "Wuh"):
            getattr(model, name).mul_(1000.0)
    rolls = torch.as_tensor(np.stack([arpeggio_roll(12, chord) for chord in CHORDS[:2]]), dtype=torch.float32)
    cost_same, _ = model.cd_loss(rolls, BernoulliSampler(3), rnn_input=rolls.clone())
    cost_plain, _ = model.cd_loss(rolls, BernoulliSampler(3))
    assert float(cost_same.detach()) == float(cost_plain.detach())
    cost_silent, _ = model.cd_loss(rolls, BernoulliSampler(3), rnn_input=torch.zeros_like(rolls))
    bv_silent, _, _ = model.conditional_biases(torch.zeros_like(rolls))
    assert float(cost_silent.detach()) != float(cost_plain.detach())
    assert not torch.allclose(bv_silent, model.conditional_biases(rolls)[0])
