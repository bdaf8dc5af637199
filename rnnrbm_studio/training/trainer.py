"""The trainer: a plain object that trains an RnnRbm on piano-rolls.

It reports progress through a callback, honours a stop flag within one update, writes a checkpoint
atomically after every epoch (and on stop), resumes from one exactly where it stopped (state.py),
and stops with a message, keeping the last good checkpoint, if the loss or the weights stop being
finite or a checkpoint cannot be written. It holds its checkpoint's lock (run_lock.py) while it runs,
so two runs never write one file. Its parts: batches.py (an epoch's updates, the persistent chains),
selection.py (validation and the weights kept), pretraining.py (the recipe's phases before epoch 1).
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
from typing import Callable, Sequence

import numpy as np
import torch

from ..model import BernoulliSampler, RnnRbm, RnnRbmConfig
from ..music.pianoroll import RollSettings
from .batches import Batch, PersistentChains, epoch_batches, updates_per_epoch, valid_batches
from .checkpoint_types import Checkpoint, EpochInProgress
# the settings and reports live in config.py; importers have always found them here
from .config import EpochRecord, TrainConfig, TrainProgress, TrainResult  # noqa: F401
from .pretraining import PretrainingProgress, learning_rate_factor, pretrain
from .progress import Clock, UpdateTimer, count_of, plan
from .rng_state import rng_state_to_lists
from .run_lock import output_lock
from .selection import (Best, ValidationFrames, fixed_valid_frames, holding, update_average,
                        validation_log_likelihood, validation_monitor)
from .state import resume_trainer, save_trainer, training_checkpoint

log = logging.getLogger(__name__)

RNN_PARAMETERS = ("Wuh", "Wuv", "Wvu", "Wuu", "bu", "u0", "Wvg", "Wug", "bg")
RNN_DECAYED_WEIGHTS = ("Wuh", "Wuv", "Wvu", "Wuu", "Wvg", "Wug")  # --rnn-weight-decay's: matrices, not biases


def build_model(config: RnnRbmConfig, seed: int) -> RnnRbm:
    """A new model whose initial weights follow from `seed`: the same seed and data train the same model,
    from the command line or the window."""
    torch.manual_seed(seed)
    return RnnRbm(config)


def make_optimizer(model: RnnRbm, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of a run: group 0 holds the RBM's parameters, group 1 the RNN's (their own rate)."""
    rbm = [p for n, p in model.named_parameters() if n not in RNN_PARAMETERS]
    rnn = [p for n, p in model.named_parameters() if n in RNN_PARAMETERS]
    groups = [{"params": rbm, "lr": config.learning_rate},
              {"params": rnn, "lr": config.learning_rate * config.rnn_lr_scale}]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.learning_rate)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum)
    raise ValueError(f"unknown optimizer {config.optimizer!r} (choose sgd or adam)")


def _plain_sgd(optimizer: torch.optim.Optimizer) -> bool:
    """SGD without momentum, weight decay, dampening or nesterov: p -= lr * grad, no state."""
    return type(optimizer) is torch.optim.SGD and all(
        not g["momentum"] and not g["weight_decay"] and not g["maximize"] for g in optimizer.param_groups)


class Trainer:
    def __init__(self, model: RnnRbm, train_rolls: Sequence[np.ndarray], valid_rolls: Sequence[np.ndarray] = (),
                 config: TrainConfig | None = None, checkpoint_path: str | Path | None = None,
                 roll_settings: RollSettings | None = None,
                 progress: Callable[[TrainProgress], None] | None = None, progress_interval: float = 0.1,
                 data_description: str = "", clock: Clock = time.monotonic):
        self.model = model
        # the weights --rnn-weight-decay shrinks after each update (a gated model's gates among them)
        self._rnn_decayed = [p for name, p in model.named_parameters() if name in RNN_DECAYED_WEIGHTS]
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
        self.clock = clock  # every duration and ETA reads it (tests pass a fake one)
        self.timer = UpdateTimer(clock)  # the measured time per update: the ETA's
        self.validation_seconds: float | None = None  # what the last epoch's validation and save took
        self._stop = threading.Event()
        self.epochs_completed = 0
        self.history: list[EpochRecord] = []
        self.best = Best()
        self.averaged_state: dict[str, torch.Tensor] | None = None  # with config.average
        self.elapsed_before = 0.0  # training seconds of earlier sessions of this run
        self.pretraining: dict[str, dict] = {}  # what each pretraining phase did (recipe options)
        self.epoch_in_progress: EpochInProgress | None = None  # where a stop inside an epoch left it
        self.resume_epoch: EpochInProgress | None = None  # the same, read from a checkpoint: the epoch to finish
        # the plan of the run: the epochs asked for, raised to reach min_updates (said in the "start" report)
        self.plan = plan(self.config.epochs, self.config.min_updates, self.updates_per_epoch())
        if self.plan.raised:
            log.info("%s", self.plan.describe())
            self.config = replace(self.config, epochs=self.plan.epochs)
        self.sampler = BernoulliSampler(self.config.seed)
        # its own stream, so that what the training monitor draws never changes what training draws
        self.monitor_sampler = BernoulliSampler([self.config.seed, 1])
        self.shuffle_rng = random.Random(self.config.seed)
        torch.manual_seed(self.config.seed)
        self.optimizer = make_optimizer(self.model, self.config)
        self.chains = PersistentChains(self.train_rolls) if self.config.cd_start == "persistent" else None
        self._batch_chunks: list = []  # where each row of this epoch's batches came from (batches.Chunk)

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

    def updates_per_epoch(self) -> int:
        return updates_per_epoch(self.train_rolls, self.config)

    def _epoch_batches(self) -> list[Batch]:
        """This epoch's updates; pretraining and the first key_shift_fraction of the epochs see transposed pieces."""
        config = self.config
        augment = bool(config.key_shift) and self.epochs_completed < config.key_shift_fraction * config.epochs
        batches, self._batch_chunks = epoch_batches(self.train_rolls, config, self.shuffle_rng, augment)
        return batches

    def _valid_batches(self) -> list[Batch]:
        return valid_batches(self.valid_rolls, self.config.seq_len)

    def validation_monitor(self) -> float | None:
        """The tutorial's monitor averaged over the valid frames (None without valid data)."""
        return validation_monitor(self.model, self._valid_batches(), self.sampler) if self.valid_rolls else None

    def validation_frames(self) -> ValidationFrames:
        """The select_frames fixed valid frames that every epoch's log-likelihood reads (drawn once)."""
        if getattr(self, "_validation_frames", None) is None:
            self._validation_frames = fixed_valid_frames(self.valid_rolls, self.config.select_frames)
        return self._validation_frames

    def validation_estimate(self):
        """LL per step on the fixed valid frames, with its standard error (quality.ais.LogLikelihood);
        None without valid data."""
        if not self.valid_rolls:
            return None
        return validation_log_likelihood(self.model, self.validation_frames())

    def validation_log_likelihood(self) -> float | None:
        """LL per step on the fixed valid frames (select_by="ll"); None without valid data."""
        estimate = self.validation_estimate()
        return estimate.mean_floored if estimate is not None else None

    # -------------------------------------------------------------------------------- run
    def run(self) -> TrainResult:
        """Train to the end, a stop, a divergence (a TrainResult each), or a checkpoint that cannot be
        written (CheckpointWriteError); another process writing the checkpoint raises run_lock.OutputBusy."""
        with output_lock(self.checkpoint_path) if self.checkpoint_path else contextlib.nullcontext():
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
        started = self.clock()
        epochs_at_start = self.epochs_completed
        self._report_start(started)
        status, message = "finished", ""
        if (self.epochs_completed == 0 and not self.pretraining and self.resume_epoch is None
                and (config.rnn_pretrain_epochs or config.rbm_pretrain_epochs)):
            # a stop inside pretraining saves the run's start, so that a resumed run pretrains again
            # from it and ends bitwise where an uninterrupted run would (pretraining is minutes long)
            start = copy.deepcopy(self.checkpoint()) if self.checkpoint_path else None
            self.pretraining = pretrain(self.model, config, self.train_rolls, self._epoch_batches,
                                        self._valid_batches() if self.valid_rolls else None, self.sampler,
                                        stop=self._stop.is_set, progress=self._pretraining_reporter(started),
                                        clock=self.clock)
            if self._stop.is_set():
                if start is not None:
                    self.model.load_state_dict(start.model_state)
                    save_trainer(self, start)
                message = "stopped during pretraining; --resume pretrains again from the start"
                self._report("stopped", 1, 0, 0, 0.0, math.nan, math.nan, started, epochs_at_start, message=message)
                self.model.eval()
                return TrainResult("stopped", 0, message, None, list(self.history))
        while self.epochs_completed < config.epochs:
            outcome = self._run_epoch(self.epochs_completed + 1, started, epochs_at_start)
            if outcome is not None:
                status, message = outcome
                break
            if config.patience and self.best.epoch is not None and self.best.epochs_since >= config.patience:
                status = "early-stopped"
                measure = ("valid log-likelihood" if config.select_by == "ll" else "valid monitor")
                message = f"no better {measure} for {count_of(config.patience, 'epoch')}; kept epoch {self.best.epoch}"
                break
        else:
            message = f"{count_of(self.epochs_completed, 'epoch')} trained" + (
                f"; kept epoch {self.best.epoch}" if self.best.epoch is not None and self.valid_rolls else "")
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
        return TrainResult(status, self.epochs_completed, message, self.best.valid_monitor, list(self.history))

    def _run_epoch(self, epoch: int, started: float, epochs_at_start: int) -> tuple[str, str] | None:
        """One epoch's updates, then its validation and checkpoint; (status, message) if the run ends in it."""
        config = self.config
        if config.lr_schedule != "constant":
            factor = learning_rate_factor(config.lr_schedule, epoch, config.epochs, config.lr_min_ratio)
            # the RBM's and the RNN's rates before any schedule (the optimiser's two groups)
            for group, base in zip(self.optimizer.param_groups,
                                   (config.learning_rate, config.learning_rate * config.rnn_lr_scale)):
                group["lr"] = base * factor
        shuffle_at_start = self.shuffle_rng.getstate()
        batches = self._epoch_batches()
        epoch_started = self.clock()
        self.timer.begin()
        last_report = -math.inf
        partial, self.resume_epoch = self.resume_epoch, None  # a resumed run finishes its epoch first
        done, frames = (partial.step, partial.frames) if partial else (0, 0)
        loss_sum, monitor_sum = (partial.loss_sum, partial.monitor_sum) if partial else (0.0, 0.0)
        seconds_before = partial.seconds if partial else 0.0
        for step, (batch, mask) in enumerate(batches, start=1):
            if step <= done:
                continue
            if self._stop.is_set():
                self.epoch_in_progress = EpochInProgress(
                    epoch, step - 1, rng_state_to_lists(shuffle_at_start), frames, loss_sum, monitor_sum,
                    seconds_before + self.clock() - epoch_started)
                return "stopped", (f"stopped during epoch {epoch} after update {step - 1}; the checkpoint holds "
                                   f"the run so far and --resume continues it from the next update")
            outcome = self._update(step - 1, batch, mask)
            if outcome is None:
                return "diverged", self._diverged_at(epoch, step)
            cost, monitor, n = outcome
            self.timer.tick()
            frames += n
            loss_sum += cost * n
            monitor_sum += monitor * n
            now = self.clock()
            if self.progress and now - last_report >= self.progress_interval:
                last_report = now
                self._report("step", epoch, step, len(batches), frames / max(now - epoch_started, 1e-9),
                             loss_sum / frames, monitor_sum / frames, started, epochs_at_start)
        seconds = seconds_before + self.clock() - epoch_started
        validation_started = self.clock()
        self.epochs_completed = epoch
        self.epoch_in_progress = None
        by_ll = self.config.select_by == "ll"
        with holding(self.model, self.averaged_state):  # what is validated and kept is the average, if any
            valid = self.validation_monitor()
            estimate = self.validation_estimate() if by_ll else None
            kept = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        # each frame's log Z raised to its sure bound: with so few temperatures AIS often falls below it
        # and reads the model far too well (bundled model: -1.82 unfloored, -2.02 floored, -2.11 at 16 x 4,000)
        valid_ll = estimate.mean_floored if estimate is not None else None
        self.best.judge(epoch, by_ll, valid, valid_ll, kept, averaging=bool(self.config.average))
        self.history.append(EpochRecord(epoch, loss_sum / frames, monitor_sum / frames, valid, valid_ll,
                                        estimate.se if estimate is not None else None,
                                        self.best.epoch, seconds, frames / seconds))
        self._save()
        self.validation_seconds = self.clock() - validation_started
        self._report("epoch", epoch, len(batches), len(batches), frames / seconds, loss_sum / frames,
                     monitor_sum / frames, started, epochs_at_start, valid=valid)
        log.info("epoch %d/%d monitor %.3f valid %s (%.1f s)", epoch, self.config.epochs, monitor_sum / frames,
                 f"{valid:.3f}" if valid is not None else "-", seconds)
        return None

    def _update(self, index: int, batch: torch.Tensor, mask: torch.Tensor | None) -> tuple[float, float, int] | None:
        """One update on batch `index` of the epoch: (its CD cost, its monitor, its frames); None if the
        loss or the weights stopped being finite."""
        config = self.config
        chain_start = self.chains.starts(self._batch_chunks[index], batch.shape) if self.chains else config.cd_start
        record = {} if self.chains else None
        rnn_input = None
        if config.rnn_input_dropout:  # inverted dropout: the RNN's expected input is the frame itself
            keep = self.sampler.uniform(tuple(batch.shape), batch.dtype).ge_(config.rnn_input_dropout)
            rnn_input = batch * keep / (1.0 - config.rnn_input_dropout)
        cost, monitor = self.model.cd_loss(batch, self.sampler, mask, chain_start=chain_start, record=record,
                                           monitor_sampler=self.monitor_sampler, rnn_input=rnn_input)
        if self.chains:
            self.chains.keep(self._batch_chunks[index], mask, record["negative"])
        if not (math.isfinite(float(cost.detach())) and math.isfinite(monitor)):
            return None
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        for parameter in parameters:  # zero_grad(set_to_none=True) without the optimizer's hooks
            parameter.grad = None
        cost.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        if _plain_sgd(self.optimizer):
            # what SGD.step does without momentum (p -= lr g, the same arithmetic), in one call per
            # group: at one subsequence per update the optimiser's wrappers cost more than the sums
            with torch.no_grad():
                for group in self.optimizer.param_groups:
                    with_grad = [p for p in group["params"] if p.grad is not None]
                    torch._foreach_add_(with_grad, [p.grad for p in with_grad], alpha=-group["lr"])
        else:
            self.optimizer.step()
        with torch.no_grad():
            if config.weight_decay:  # group 0 holds the RBM's parameters: its (scheduled) rate is W's
                self.model.W.mul_(1.0 - self.optimizer.param_groups[0]["lr"] * config.weight_decay)
            if config.rnn_weight_decay:
                shrink = 1.0 - self.optimizer.param_groups[1]["lr"] * config.rnn_weight_decay
                torch._foreach_mul_(self._rnn_decayed, shrink)
        # one reduction instead of two small operations per parameter (a NaN or an infinity in any
        # weight makes the sum non-finite; a finite sum can overflow only for weights beyond 1e33)
        if not math.isfinite(float(torch.stack([p.detach().sum() for p in self.model.parameters()]).sum())):
            return None
        if config.average:
            self.averaged_state = update_average(self.averaged_state, self.model, config.average)
        n = int(mask.sum()) if mask is not None else batch.shape[0] * batch.shape[1]
        return float(cost.detach()), monitor, n

    def _diverged_at(self, epoch: int, step: int) -> str:
        kept = (f"the last good checkpoint (epoch {self.epochs_completed}) is kept"
                if self.checkpoint_path and self.epochs_completed else "nothing was saved")
        return (f"training diverged: the loss or the weights became NaN or infinite at epoch {epoch}, "
                f"update {step}; {kept}. Try a lower learning rate or gradient clipping.")

    def _report(self, event, epoch, step, steps, fps, loss, monitor, started, epochs_at_start, valid=None,
                message="") -> None:
        if not self.progress:
            return
        elapsed = self.clock() - started
        last = self.history[-1] if event == "epoch" and self.history else None
        self.progress(TrainProgress(event=event, epoch=epoch, epochs=self.config.epochs, step=step,
                                    steps_in_epoch=steps, frames_per_second=fps, loss=loss, monitor=monitor,
                                    valid_monitor=valid, best_valid_monitor=self.best.valid_monitor,
                                    elapsed_seconds=self.elapsed_before + elapsed,
                                    eta_seconds=self._eta(event, step, steps), message=message,
                                    valid_ll=last.valid_ll if last else None,
                                    valid_ll_se=last.valid_ll_se if last else None, kept_epoch=self.best.epoch))

    def _eta(self, event: str, step: int, steps: int) -> float | None:
        """The time left, from the measured time per update (and per validation): None until measured."""
        if event not in ("step", "epoch"):
            return None if event != "finished" else 0.0
        in_epoch = steps - step if event == "step" else 0
        epochs_after = self.config.epochs - self.epochs_completed - (1 if event == "step" else 0)
        training = self.timer.eta(in_epoch + epochs_after * self.updates_per_epoch())
        if training is None:
            return None
        validations = epochs_after + (1 if event == "step" else 0)
        return training + validations * (self.validation_seconds or 0.0)

    def _report_start(self, started: float) -> None:
        """Before anything else (pretraining is a minute): what the run will do."""
        config, text = self.config, self.plan.describe()
        if self.epochs_completed or self.resume_epoch is not None:
            text = f"continuing after epoch {self.epochs_completed} of {count_of(config.epochs, 'epoch')}"
        elif config.rbm_pretrain_epochs or config.rnn_pretrain_epochs:
            text += "; pretraining first (" + ", ".join(
                part for part in (config.rbm_pretrain_epochs and f"RBM {count_of(config.rbm_pretrain_epochs, 'epoch')}",
                                  config.rnn_pretrain_epochs and f"RNN at most {count_of(config.rnn_pretrain_epochs, 'epoch')}")
                if part) + ")"
        self._report("start", self.epochs_completed + 1, 0, self.updates_per_epoch(), 0.0, math.nan, math.nan,
                     started, self.epochs_completed, message=text)

    def _pretraining_reporter(self, started: float) -> Callable[[PretrainingProgress], None] | None:
        if not self.progress:
            return None

        def report(p: PretrainingProgress) -> None:
            self.progress(TrainProgress(
                event="pretraining", epoch=p.epoch, epochs=p.epochs, step=p.step, steps_in_epoch=p.steps,
                frames_per_second=0.0, loss=math.nan, monitor=math.nan, phase=p.phase,
                elapsed_seconds=self.elapsed_before + self.clock() - started, eta_seconds=p.eta_seconds,
                eta_at_most=p.eta_at_most, message=p.message))
        return report

    # -------------------------------------------------------------------------- checkpoints
    def checkpoint(self) -> Checkpoint:
        """Everything to continue this run exactly (the tensors are the trainer's own, not copies)."""
        return training_checkpoint(self)

    def _save(self) -> None:
        if self.checkpoint_path is not None:
            save_trainer(self, self.checkpoint())
