"""The trainer: a plain object that trains an RnnRbm on piano-rolls.

It reports progress through a callback, honours a stop flag within one update, writes a checkpoint
atomically after every epoch (and on stop), resumes from one, and stops with a message, keeping the
last good checkpoint, if the loss or the weights stop being finite.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .checkpoint import (CheckpointError, load_checkpoint, model_from_payload, rng_state_as_tuples,
                         rng_state_from_lists, rng_state_to_lists, save_checkpoint)
from .model import BernoulliSampler, RnnRbm
from .pianoroll import RollSettings, transpose_roll
from .evaluate import conditional_frames, leading_frames, log_likelihood
from .recipe import learning_rate_factor, pretrain_rbm, pretrain_rnn

log = logging.getLogger(__name__)

RNN_PARAMETERS = ("Wuh", "Wuv", "Wvu", "Wuu", "bu", "u0")


@dataclass
class TrainConfig:
    epochs: int = 200
    learning_rate: float = 0.001
    optimizer: str = "sgd"  # "sgd" (the tutorial's) or "adam"
    momentum: float = 0.0  # for sgd
    batch_seqs: int = 1  # subsequences per update; 1 is the tutorial's schedule
    seq_len: int = 100  # frames per subsequence
    rnn_lr_scale: float = 1.0  # learning rate of the RNN's parameters relative to the RBM's
    grad_clip: float | None = None  # clip the gradient's global norm
    key_shift: int = 0  # augmentation: transpose each piece by up to +-key_shift steps, drawn anew each epoch
    key_shift_step: int = 1  # shifts are multiples of this: 12 moves pieces by octaves and keeps their keys
    key_shift_fraction: float = 1.0  # ...during this fraction of the epochs (the rest: the pieces' own keys)
    patience: int | None = None  # stop after this many epochs without a better valid monitor
    seed: int = 0
    threads: int | None = None  # torch threads; None leaves torch's default
    prefetch_random: bool = False  # draw random numbers ahead on a background thread (a free core helps)
    # recipe options (docs/quality.md); the defaults leave the tutorial's training unchanged
    lr_schedule: str = "constant"  # "cosine": decays to lr_min_ratio x the learning rates at the last epoch
    lr_min_ratio: float = 0.05
    rnn_pretrain_epochs: int = 0  # first train the RNN alone (W = 0: exact likelihood, no sampling); a cap:
    # with valid data it keeps the best epoch by the exact valid log-likelihood and stops 10 epochs after it
    rbm_pretrain_epochs: int = 0  # first train W, bv, bh as an RBM on the frames, shuffled (CD-k)
    pretrain_lr: float = 0.003  # Adam's learning rate in both pretraining phases
    # "ll": keep the best weights (and stop early) by the log-likelihood per step (a small AIS with a
    # fixed seed) of the first select_frames valid frames, not by the tutorial's monitor
    select_by: str = "monitor"
    select_frames: int = 2000
    # at least this many updates: `epochs` is raised to reach it on a small corpus, so that one command
    # line gives a small corpus (JSB: 16 updates per epoch) as much training as a big one (Nottingham: 125)
    min_updates: int = 0
    cd_start: str = "data"  # where CD's negative chains start: "data" (the tutorial), "previous", "silence"
    weight_decay: float = 0.0  # decoupled decay of W each update: W -= lr * weight_decay * W
    rnn_weight_decay: float = 0.0  # the same for the RNN's weight matrices (Wuh, Wuv, Wvu, Wuu), at the RNN's lr
    # keep an exponential moving average of the weights (this decay per update; 0: off); the average is
    # what is validated, selected and kept as the model, the raw weights go on training
    average: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})


# The quality recipe (docs/quality.md): how the bundled model was trained. The app's Train uses it
# unless switched off; the command line spells it out (benchmarks/quality.py, resources/default_model.md).
QUALITY_RECIPE: dict[str, Any] = dict(
    optimizer="adam", learning_rate=0.002, lr_schedule="cosine", batch_seqs=4, cd_start="persistent",
    weight_decay=0.01, rnn_weight_decay=0.1, rnn_pretrain_epochs=100, rbm_pretrain_epochs=5, select_by="ll",
    epochs=60, min_updates=28000)


# Gibbs steps per generated frame stored in a model the recipe trains: its sharp RBMs need about
# 1,000 to mix from silence (25, the tutorial's, leaves half the steps silent: resources/default_model.md)
QUALITY_GIBBS_STEPS = 1000


def quality_recipe(**overrides: Any) -> TrainConfig:
    """The quality recipe's TrainConfig, with some fields changed."""
    return TrainConfig(**{**QUALITY_RECIPE, **overrides})


@dataclass
class TrainProgress:
    event: str  # "step", "epoch", "finished", "stopped", "diverged"
    epoch: int  # 1-based epoch in progress (or just finished)
    epochs: int
    step: int  # updates done in this epoch
    steps_in_epoch: int
    frames_per_second: float
    loss: float  # mean CD cost over the epoch so far
    monitor: float  # mean training monitor over the epoch so far (the tutorial's number)
    valid_monitor: float | None = None
    best_valid_monitor: float | None = None
    elapsed_seconds: float = 0.0
    eta_seconds: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        done = (self.epoch - 1) + (self.step / self.steps_in_epoch if self.steps_in_epoch else 0)
        return min(1.0, done / self.epochs) if self.epochs else 1.0


@dataclass
class TrainResult:
    status: str  # "finished", "stopped", "diverged", "early-stopped"
    epochs_completed: int
    message: str
    best_valid_monitor: float | None = None
    history: list[dict] = field(default_factory=list)


class Trainer:
    def __init__(self, model: RnnRbm, train_rolls: Sequence[np.ndarray], valid_rolls: Sequence[np.ndarray] = (),
                 config: TrainConfig | None = None, checkpoint_path: str | Path | None = None,
                 roll_settings: RollSettings | None = None,
                 progress: Callable[[TrainProgress], None] | None = None, progress_interval: float = 0.1,
                 data_description: str = ""):
        self.model = model
        self.config = config or TrainConfig()
        self.train_rolls = [np.asarray(r, dtype=np.uint8) for r in train_rolls if len(r)]
        self.valid_rolls = [torch.as_tensor(np.asarray(r), dtype=torch.float32) for r in valid_rolls if len(r)]
        if not self.train_rolls:
            raise ValueError("no training data: every piece is empty")
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.roll_settings = roll_settings or RollSettings()
        self.progress = progress
        self.progress_interval = progress_interval
        self.data_description = data_description
        self._stop = threading.Event()
        self.epochs_completed = 0
        self.history: list[dict] = []
        self.best_valid_monitor: float | None = None
        self.best_valid_ll: float | None = None  # with select_by="ll"
        self.best_state: dict[str, torch.Tensor] | None = None
        self.averaged_state: dict[str, torch.Tensor] | None = None  # with config.average
        self.epochs_since_best = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions of this run
        self.pretraining: dict[str, dict] = {}  # what each pretraining phase did (recipe options)
        if self.config.min_updates:
            needed = math.ceil(self.config.min_updates / self.updates_per_epoch())
            if needed > self.config.epochs:
                log.info("%d epochs of %d updates give the %d updates asked for", needed,
                         self.updates_per_epoch(), self.config.min_updates)
                self.config = replace(self.config, epochs=needed)
        self.sampler = BernoulliSampler(self.config.seed)
        # its own stream, so that what the training monitor draws never changes what training draws
        self.monitor_sampler = BernoulliSampler([self.config.seed, 1])
        self.shuffle_rng = random.Random(self.config.seed)
        torch.manual_seed(self.config.seed)
        self.optimizer = self._make_optimizer()
        # the persistent chains' states, one per training frame (they start at the data)
        self._chain_states = ([np.asarray(r, dtype=np.float32).copy() for r in self.train_rolls]
                              if self.config.cd_start == "persistent" else [])

    # ----------------------------------------------------------------------------- set-up
    def _make_optimizer(self) -> torch.optim.Optimizer:
        config = self.config
        rbm = [p for n, p in self.model.named_parameters() if n not in RNN_PARAMETERS]
        rnn = [p for n, p in self.model.named_parameters() if n in RNN_PARAMETERS]
        groups = [{"params": rbm, "lr": config.learning_rate},
                  {"params": rnn, "lr": config.learning_rate * config.rnn_lr_scale}]
        if config.optimizer == "adam":
            return torch.optim.Adam(groups, lr=config.learning_rate)
        if config.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum)
        raise ValueError(f"unknown optimizer {config.optimizer!r} (choose sgd or adam)")

    @classmethod
    def resume(cls, checkpoint_path: str | Path, train_rolls, valid_rolls=(), epochs: int | None = None,
               progress=None, **kwargs) -> "Trainer":
        """A trainer that continues the run saved in checkpoint_path (and keeps writing to it)."""
        payload = load_checkpoint(checkpoint_path)
        if "optimizer_state" not in payload:
            # a StudioError: the CLI and the app show it as one line (a ValueError was a traceback)
            raise CheckpointError(f"{checkpoint_path} holds a model but no training state to resume")
        model = model_from_payload(payload, which="last")
        model.train()
        config = TrainConfig.from_dict(payload.get("train_config"))
        if epochs is not None:
            config.epochs = epochs
        trainer = cls(model, train_rolls, valid_rolls, config, checkpoint_path,
                      RollSettings.from_dict(payload.get("roll_settings")), progress, **kwargs)
        trainer.optimizer.load_state_dict(payload["optimizer_state"])
        state = payload.get("progress", {})
        trainer.epochs_completed = int(state.get("epochs_completed", 0))
        trainer.best_valid_monitor = state.get("best_valid_monitor")
        trainer.best_valid_ll = state.get("best_valid_ll")
        trainer.epochs_since_best = int(state.get("epochs_since_best", 0))
        trainer.elapsed_before = float(state.get("elapsed_seconds", 0.0))
        trainer.history = list(payload.get("history", []))
        trainer.pretraining = dict(payload.get("pretraining") or {})
        trainer.best_state = payload.get("best_model_state")
        trainer.averaged_state = payload.get("averaged_state")
        rng = payload.get("rng", {})
        if "sampler" in rng:
            trainer.sampler.set_state(rng_state_from_lists(rng["sampler"]))
        if "monitor" in rng:
            trainer.monitor_sampler.set_state(rng_state_from_lists(rng["monitor"]))
        if "shuffle" in rng:
            trainer.shuffle_rng.setstate(rng_state_as_tuples(rng["shuffle"]))
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        packed = payload.get("chain_states")
        if packed is not None and trainer._chain_states:
            states = np.unpackbits(packed.numpy(), axis=-1, count=model.config.n_visible).astype(np.float32)
            if len(states) != sum(len(s) for s in trainer._chain_states):
                raise CheckpointError(f"{checkpoint_path} was trained on other data: its persistent chains do not fit")
            ends = np.cumsum([len(s) for s in trainer._chain_states])[:-1]
            trainer._chain_states = [part.copy() for part in np.split(states, ends)]
        return trainer

    def request_stop(self) -> None:
        """Ask the run to stop; it does within one update and writes a checkpoint."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # ---------------------------------------------------------------------------- batches
    def _epoch_batches(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """This epoch's updates, (batch, mask) each; self._batch_chunks says where each row came from."""
        config = self.config
        order = list(range(len(self.train_rolls)))
        self.shuffle_rng.shuffle(order)
        chunks = []  # (roll index, first frame, semitones transposed, frames)
        # pretraining and the first key_shift_fraction of the epochs see transposed pieces
        augment = config.key_shift and self.epochs_completed < config.key_shift_fraction * config.epochs
        for index in order:
            roll, shift = self.train_rolls[index], 0
            if augment:
                shift = config.key_shift_step * self.shuffle_rng.randint(-config.key_shift, config.key_shift)
                roll = transpose_roll(roll, shift)
            roll = torch.from_numpy(roll.astype(np.float32))
            chunks.extend((index, i, shift, roll[i:i + config.seq_len])
                          for i in range(0, roll.shape[0], config.seq_len))
        if config.batch_seqs > 1:  # (the tutorial: sequences shuffled, subsequences in order)
            self.shuffle_rng.shuffle(chunks)
        size = max(1, config.batch_seqs)
        groups = [chunks[i:i + size] for i in range(0, len(chunks), size)]
        self._batch_chunks = [[(index, first, len(chunk), shift) for index, first, shift, chunk in group]
                              for group in groups]
        if config.batch_seqs <= 1:
            return [(group[0][3].unsqueeze(0), None) for group in groups]
        return [_pad([chunk for *_, chunk in group]) for group in groups]

    def _persistent_starts(self, step: int, shape: torch.Size) -> torch.Tensor:
        """Where each frame's chain stopped the last time it was trained on (the data at first). (B, T, V).

        States are kept in the piece's own key; a chain resumes transposed with this epoch's copy of its piece.
        """
        start = torch.zeros(shape)
        for row, (index, first, length, shift) in enumerate(self._batch_chunks[step]):
            state = transpose_roll(self._chain_states[index][first:first + length], shift)
            start[row, :length] = torch.from_numpy(state)
        return start

    def _keep_chain_states(self, step: int, mask: torch.Tensor | None, negative: torch.Tensor) -> None:
        B, T = (mask.shape if mask is not None else (1, negative.shape[0]))
        full = negative.new_zeros(B * T, negative.shape[1])
        full[mask.reshape(-1) > 0 if mask is not None else slice(None)] = negative
        full = full.reshape(B, T, -1).numpy().astype(np.float32)
        for row, (index, first, length, shift) in enumerate(self._batch_chunks[step]):
            self._chain_states[index][first:first + length] = transpose_roll(full[row, :length], -shift)

    def updates_per_epoch(self) -> int:
        chunks = sum(math.ceil(len(r) / self.config.seq_len) for r in self.train_rolls)
        return chunks if self.config.batch_seqs <= 1 else math.ceil(chunks / self.config.batch_seqs)

    def _valid_batches(self, batch_seqs: int = 64):
        chunks = [r[i:i + self.config.seq_len] for r in self.valid_rolls
                  for i in range(0, r.shape[0], self.config.seq_len)]
        return [_pad(chunks[i:i + batch_seqs]) for i in range(0, len(chunks), batch_seqs)]

    # -------------------------------------------------------------------------------- run
    def validation_monitor(self) -> float | None:
        """The tutorial's monitor averaged over the valid frames (None without valid data)."""
        if not self.valid_rolls:
            return None
        total, frames = 0.0, 0
        with torch.no_grad():
            for batch, mask in self._valid_batches():
                n = int(mask.sum()) if mask is not None else batch.shape[0] * batch.shape[1]
                _, monitor = self.model.cd_loss(batch, self.sampler, mask)
                total += monitor * n
                frames += n
        return total / frames

    def validation_log_likelihood(self) -> float | None:
        """LL per step by AIS on the first select_frames valid frames (select_by="ll"); None without valid data.

        A fixed seed gives every epoch the same random numbers, so epochs differ by their weights only.
        """
        if not self.valid_rolls:
            return None
        with torch.no_grad():
            frames = conditional_frames(self.model, leading_frames(self.valid_rolls, self.config.select_frames))
            # small AIS (biased high, but alike for every epoch) keeps the check to ~2 s for 2,000 frames
            return log_likelihood(self.model, frames, chains=8, n_betas=40, sampler=BernoulliSampler(12345),
                                  base_chains=8, base_steps=30).mean

    def run(self) -> TrainResult:
        if self.config.prefetch_random:
            # Uniforms drawn ahead on another core while this thread multiplies matrices; the
            # numbers, hence the run, are exactly those of a plain generator.
            self.sampler.start_prefetch()
        try:
            return self._run()
        finally:
            self.sampler.stop_prefetch()

    def _run(self) -> TrainResult:
        config = self.config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.model.train()
        started = time.monotonic()
        epochs_at_start = self.epochs_completed
        status, message = "finished", ""
        if self.epochs_completed == 0 and not self.pretraining and (config.rnn_pretrain_epochs
                                                                     or config.rbm_pretrain_epochs):
            self._pretrain()
        while self.epochs_completed < config.epochs:
            epoch = self.epochs_completed + 1
            outcome = self._run_epoch(epoch, started, epochs_at_start)
            if outcome is not None:
                status, message = outcome
                break
            if self._should_stop_early():
                status = "early-stopped"
                message = (f"no better valid monitor for {config.patience} epochs; "
                           f"best {self.best_valid_monitor:.3f}")
                break
        else:
            message = f"finished {self.epochs_completed} epochs"
        if status == "diverged":
            self._report("diverged", self.epochs_completed + 1, 0, 0, 0.0, math.nan, math.nan, started,
                         epochs_at_start, message=message)
        else:
            if status == "stopped":
                self._save()
            self._report(status if status != "early-stopped" else "finished", self.epochs_completed, 0, 0, 0.0,
                         math.nan, math.nan, started, epochs_at_start, message=message)
        log.info("training %s: %s", status, message)
        self.model.eval()
        return TrainResult(status, self.epochs_completed, message, self.best_valid_monitor, list(self.history))

    def _pretrain(self) -> None:
        """The recipe's pretraining phases, before epoch 1 (a resumed run does not repeat them)."""
        config = self.config
        if config.rbm_pretrain_epochs:
            self.pretraining["rbm"] = pretrain_rbm(self.model, self.train_rolls, config.rbm_pretrain_epochs,
                                                   config.pretrain_lr, self.sampler,
                                                   np.random.default_rng(config.seed), stop=self._stop.is_set)
        if config.rnn_pretrain_epochs:
            self.pretraining["rnn"] = pretrain_rnn(self.model, self._epoch_batches, config.rnn_pretrain_epochs,
                                                   config.pretrain_lr, config.seed, stop=self._stop.is_set,
                                                   valid_batches=self._valid_batches() if self.valid_rolls else None)
        log.info("pretraining: %s", self.pretraining)

    def _run_epoch(self, epoch: int, started: float, epochs_at_start: int) -> tuple[str, str] | None:
        if self.config.lr_schedule != "constant":
            factor = learning_rate_factor(self.config.lr_schedule, epoch, self.config.epochs,
                                          self.config.lr_min_ratio)
            for group, base in zip(self.optimizer.param_groups, self._base_learning_rates()):
                group["lr"] = base * factor
        batches = self._epoch_batches()
        epoch_started = time.monotonic()
        last_report = 0.0
        frames = 0
        loss_sum = monitor_sum = 0.0
        for step, (batch, mask) in enumerate(batches, start=1):
            if self._stop.is_set():
                return "stopped", f"stopped during epoch {epoch}; the checkpoint holds the weights so far"
            n = int(mask.sum()) if mask is not None else batch.shape[0] * batch.shape[1]
            persistent = self.config.cd_start == "persistent"
            chain_start = self._persistent_starts(step - 1, batch.shape) if persistent else self.config.cd_start
            record = {} if persistent else None
            cost, monitor = self.model.cd_loss(batch, self.sampler, mask, chain_start=chain_start, record=record,
                                               monitor_sampler=self.monitor_sampler)
            if persistent:
                self._keep_chain_states(step - 1, mask, record["negative"])
            if not (math.isfinite(float(cost.detach())) and math.isfinite(monitor)):
                return "diverged", self._divergence_message(epoch, step)
            self.optimizer.zero_grad(set_to_none=True)
            cost.backward()
            if self.config.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            if self.config.weight_decay:
                with torch.no_grad():
                    # group 0 holds the RBM's parameters: its (scheduled) rate is W's
                    self.model.W.mul_(1.0 - self.optimizer.param_groups[0]["lr"] * self.config.weight_decay)
            if self.config.rnn_weight_decay:
                with torch.no_grad():
                    shrink = 1.0 - self.optimizer.param_groups[1]["lr"] * self.config.rnn_weight_decay
                    for name in ("Wuh", "Wuv", "Wvu", "Wuu"):
                        getattr(self.model, name).mul_(shrink)
            if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                return "diverged", self._divergence_message(epoch, step)
            if self.config.average:
                self._update_average()
            frames += n
            loss_sum += float(cost.detach()) * n
            monitor_sum += monitor * n
            now = time.monotonic()
            if self.progress and now - last_report >= self.progress_interval:
                last_report = now
                self._report("step", epoch, step, len(batches), frames / max(now - epoch_started, 1e-9),
                             loss_sum / frames, monitor_sum / frames, started, epochs_at_start)
        seconds = time.monotonic() - epoch_started
        self.epochs_completed = epoch
        by_ll = self.config.select_by == "ll"
        with self._averaged_weights():
            valid = self.validation_monitor()
            valid_ll = self.validation_log_likelihood() if by_ll else None
            kept = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if by_ll and valid is not None and (self.best_valid_monitor is None or valid > self.best_valid_monitor):
            self.best_valid_monitor = valid  # still shown; the weights kept follow the log-likelihood
        score, best = (valid_ll, self.best_valid_ll) if by_ll else (valid, self.best_valid_monitor)
        if score is not None and (best is None or score > best):
            if by_ll:
                self.best_valid_ll = score
            else:
                self.best_valid_monitor = score
            self.best_state = kept
            self.epochs_since_best = 0
        else:
            self.epochs_since_best += 1
        if score is None and self.config.average:
            self.best_state = kept  # nothing to select by: the average is the model
        self.history.append({"epoch": epoch, "loss": loss_sum / frames, "monitor": monitor_sum / frames,
                             "valid_monitor": valid, "seconds": seconds, "frames_per_second": frames / seconds,
                             **({"valid_ll": valid_ll} if by_ll else {})})
        self._save()
        self._report("epoch", epoch, len(batches), len(batches), frames / seconds, loss_sum / frames,
                     monitor_sum / frames, started, epochs_at_start, valid=valid)
        log.info("epoch %d/%d monitor %.3f valid %s (%.1f s)", epoch, self.config.epochs, monitor_sum / frames,
                 f"{valid:.3f}" if valid is not None else "-", seconds)
        return None

    def _update_average(self) -> None:
        with torch.no_grad():
            if self.averaged_state is None:  # starts at the first update's weights
                self.averaged_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                return
            for name, value in self.model.state_dict().items():
                self.averaged_state[name].lerp_(value, 1.0 - self.config.average)

    @contextlib.contextmanager
    def _averaged_weights(self):
        """The model holds the averaged weights inside the block (the raw ones without averaging)."""
        if self.averaged_state is None:
            yield
            return
        raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.averaged_state)
        try:
            yield
        finally:
            self.model.load_state_dict(raw)

    def _base_learning_rates(self) -> tuple[float, float]:
        """The RBM's and the RNN's learning rates before any schedule (the optimiser's two groups)."""
        return self.config.learning_rate, self.config.learning_rate * self.config.rnn_lr_scale

    def _should_stop_early(self) -> bool:
        patience = self.config.patience
        return bool(patience) and self.best_valid_monitor is not None and self.epochs_since_best >= patience

    def _divergence_message(self, epoch: int, step: int) -> str:
        kept = (f"the last good checkpoint (epoch {self.epochs_completed}) is kept"
                if self.checkpoint_path and self.epochs_completed else "nothing was saved")
        return (f"training diverged: the loss or the weights became NaN or infinite at epoch {epoch}, "
                f"update {step}; {kept}. Try a lower learning rate or gradient clipping.")

    def _report(self, event, epoch, step, steps, fps, loss, monitor, started, epochs_at_start, valid=None,
                message="") -> None:
        if not self.progress:
            return
        elapsed = time.monotonic() - started
        done = (self.epochs_completed - epochs_at_start) + (step / steps if steps and event == "step" else 0)
        remaining = self.config.epochs - self.epochs_completed - (step / steps if steps and event == "step" else 0)
        eta = elapsed / done * remaining if done > 0 else None
        self.progress(TrainProgress(event=event, epoch=epoch, epochs=self.config.epochs, step=step,
                                    steps_in_epoch=steps, frames_per_second=fps, loss=loss, monitor=monitor,
                                    valid_monitor=valid, best_valid_monitor=self.best_valid_monitor,
                                    elapsed_seconds=self.elapsed_before + elapsed, eta_seconds=eta,
                                    message=message))

    # -------------------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "model_config": self.model.config.to_dict(),
            "model_state": self.model.state_dict(),
            "best_model_state": self.best_state,
            "averaged_state": self.averaged_state,
            "optimizer_state": self.optimizer.state_dict(),
            "train_config": asdict(self.config),
            "roll_settings": self.roll_settings.to_dict(),
            "data": self.data_description,
            "progress": {"epochs_completed": self.epochs_completed, "best_valid_monitor": self.best_valid_monitor,
                         "best_valid_ll": self.best_valid_ll,
                         "epochs_since_best": self.epochs_since_best,
                         "elapsed_seconds": sum(h["seconds"] for h in self.history)
                         + sum(p.get("seconds", 0.0) for p in self.pretraining.values())},
            "pretraining": self.pretraining,
            "history": self.history,
            "rng": {"sampler": rng_state_to_lists(self.sampler.get_state()),
                    "monitor": rng_state_to_lists(self.monitor_sampler.get_state()),
                    "shuffle": rng_state_to_lists(self.shuffle_rng.getstate()), "torch": torch.get_rng_state()},
            # persistent chains, one bit per key and frame (a resumed run continues them exactly)
            "chain_states": (torch.from_numpy(np.packbits(np.concatenate(self._chain_states) > 0, axis=-1))
                             if self._chain_states else None),
        }

    def _save(self) -> None:
        if self.checkpoint_path is None:
            return
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            log.warning("not saving non-finite weights; the last good checkpoint is kept")
            return
        save_checkpoint(self.checkpoint_path, self.checkpoint_payload())


def _pad(chunks: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Subsequences (T_i, V) -> batch (B, T, V) padded at the end, and mask (B, T)."""
    length = max(c.shape[0] for c in chunks)
    batch = chunks[0].new_zeros(len(chunks), length, chunks[0].shape[1])
    mask = chunks[0].new_zeros(len(chunks), length)
    for i, chunk in enumerate(chunks):
        batch[i, :chunk.shape[0]] = chunk
        mask[i, :chunk.shape[0]] = 1
    return batch, mask

