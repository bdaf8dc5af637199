"""The trainer: a plain object that trains an RnnRbm on piano-rolls.

It reports progress through a callback, honours a stop flag within one update, writes a checkpoint
atomically after every epoch (and on stop), resumes from one exactly where it stopped
(training_state.py), and stops with a message, keeping the last good checkpoint, if the loss or the
weights stop being finite or a checkpoint cannot be written. It holds its checkpoint's lock
(run_lock.py) while it runs, so two runs never write one file.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .checkpoint import CheckpointWriteError, save_checkpoint
from .rng_state import rng_state_to_lists
from ..quality.evaluate import conditional_frames, leading_frames, log_likelihood
from ..model import BernoulliSampler, RnnRbm, RnnRbmConfig
from ..music.pianoroll import RollSettings, transpose_roll
from .recipes import learning_rate_factor, pretrain_rbm, pretrain_rnn
from .run_lock import output_lock
# the settings and reports live in train_config.py; importers have always found them here
from .config import (QUALITY_GIBBS_STEPS, QUALITY_RECIPE, TrainConfig, TrainProgress,  # noqa: F401
                           TrainResult, quality_recipe)
from .state import resume_trainer, trainer_payload

log = logging.getLogger(__name__)

RNN_PARAMETERS = ("Wuh", "Wuv", "Wvu", "Wuu", "bu", "u0")


def build_model(config: RnnRbmConfig, seed: int) -> RnnRbm:
    """A new model whose initial weights follow from `seed`: the same seed and data train the same model,
    from the command line or the window."""
    torch.manual_seed(seed)
    return RnnRbm(config)


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
        self.epoch_in_progress: dict | None = None  # where a stop inside an epoch left it (training_state.py)
        self.resume_epoch: dict | None = None  # the same, read from a checkpoint: the epoch to finish first
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
        return resume_trainer(cls, checkpoint_path, train_rolls, valid_rolls, epochs, progress, **kwargs)

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
        """Train to the end, a stop, a divergence (a TrainResult each), or a checkpoint that cannot be
        written (CheckpointWriteError); another process writing the checkpoint raises run_lock.OutputBusy."""
        with output_lock(self.checkpoint_path) if self.checkpoint_path else contextlib.nullcontext():
            return self._run_with_prefetch()

    def _run_with_prefetch(self) -> TrainResult:
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
        if (self.epochs_completed == 0 and not self.pretraining and self.resume_epoch is None
                and (config.rnn_pretrain_epochs or config.rbm_pretrain_epochs)):
            # a stop inside pretraining saves the run's start, so that a resumed run pretrains again
            # from it and ends bitwise where an uninterrupted run would (pretraining is minutes long)
            start = copy.deepcopy(trainer_payload(self)) if self.checkpoint_path else None
            self._pretrain()
            if self._stop.is_set():
                if start is not None:
                    self.model.load_state_dict(start["model_state"])
                    self._write(start)
                message = "stopped during pretraining; --resume pretrains again from the start"
                self._report("stopped", 1, 0, 0, 0.0, math.nan, math.nan, started, epochs_at_start, message=message)
                self.model.eval()
                return TrainResult("stopped", 0, message, None, list(self.history))
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
        shuffle_at_start = self.shuffle_rng.getstate()
        batches = self._epoch_batches()
        epoch_started = time.monotonic()
        last_report = 0.0
        partial, self.resume_epoch = self.resume_epoch or {}, None  # a resumed run finishes its epoch first
        done, frames = partial.get("step", 0), partial.get("frames", 0)
        loss_sum, monitor_sum = partial.get("loss_sum", 0.0), partial.get("monitor_sum", 0.0)
        seconds_before = partial.get("seconds", 0.0)
        for step, (batch, mask) in enumerate(batches, start=1):
            if step <= done:
                continue
            if self._stop.is_set():
                self.epoch_in_progress = {
                    "epoch": epoch, "step": step - 1, "shuffle": rng_state_to_lists(shuffle_at_start),
                    "frames": frames, "loss_sum": loss_sum, "monitor_sum": monitor_sum,
                    "seconds": seconds_before + time.monotonic() - epoch_started}
                return "stopped", (f"stopped during epoch {epoch} after update {step - 1}; the checkpoint holds "
                                   f"the run so far and --resume continues it from the next update")
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
        seconds = seconds_before + time.monotonic() - epoch_started
        self.epochs_completed = epoch
        self.epoch_in_progress = None
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
        return trainer_payload(self)

    def _save(self) -> None:
        if self.checkpoint_path is None:
            return
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            log.warning("not saving non-finite weights; the last good checkpoint is kept")
            return
        self._write(self.checkpoint_payload())

    def _write(self, payload: dict[str, Any]) -> None:
        """Write the checkpoint; a failed write (a full disk) ends the run: hours more training that
        cannot be kept would be lost, and the previous checkpoint is still whole."""
        try:
            save_checkpoint(self.checkpoint_path, payload)
        except OSError as error:
            kept = (f"{self.checkpoint_path} still holds the previous checkpoint" if self.checkpoint_path.exists()
                    else "nothing was saved")
            raise CheckpointWriteError(f"cannot write the checkpoint {self.checkpoint_path}: "
                                       f"{error.strerror or error}; training stopped and {kept}") from None


def _pad(chunks: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Subsequences (T_i, V) -> batch (B, T, V) padded at the end, and mask (B, T)."""
    length = max(c.shape[0] for c in chunks)
    batch = chunks[0].new_zeros(len(chunks), length, chunks[0].shape[1])
    mask = chunks[0].new_zeros(len(chunks), length)
    for i, chunk in enumerate(chunks):
        batch[i, :chunk.shape[0]] = chunk
        mask[i, :chunk.shape[0]] = 1
    return batch, mask

