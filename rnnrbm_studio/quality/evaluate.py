"""Music-quality measures of an RNN-RBM, as in Boulanger-Lewandowski, Bengio & Vincent (ICML 2012),
all at once over some pieces (the `eval` command):

* LL: log-likelihood per time step by AIS (ais.py);
* ACC: expected frame-level accuracy of the model's next-frame predictions (accuracy.py), from mixed
  chains and as the app composes;
* the tutorial's training monitor (accuracy.py; not a likelihood), for reference.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..model import BernoulliSampler, RnnRbm
from .accuracy import DEFAULT_ACC_GIBBS_STEPS, DEFAULT_ACC_SAMPLES, Accuracy, expected_accuracy, tutorial_monitor
from .ais import DEFAULT_BETAS, DEFAULT_CHAINS, LogLikelihood, log_likelihood
from .frames import conditional_frames

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]  # (stage, fraction done)


@dataclass
class Evaluation:
    split: str
    pieces: int
    frames: int
    log_likelihood: LogLikelihood | None
    accuracy: Accuracy | None  # the model's expected ACC (mixed chains from v_{t-1})
    app_accuracy: Accuracy | None  # ACC of the app's composer: gibbs_steps from silence
    monitor: float | None
    seed: int | None
    seconds: float

    def to_dict(self) -> dict:
        values = asdict(self)
        for key in ("accuracy", "app_accuracy"):
            if values[key]:
                values[key].pop("per_sample")  # the summary; the samples are in the object
        return values


def evaluate_model(model: RnnRbm, rolls: Sequence[np.ndarray], split: str = "test",
                   chains: int = DEFAULT_CHAINS, n_betas: int = DEFAULT_BETAS, acc_samples: int = DEFAULT_ACC_SAMPLES,
                   seed: int | None = 0, gibbs_steps: int = DEFAULT_ACC_GIBBS_STEPS, base: str = "marginals",
                   monitor: bool = True, app_accuracy: bool = True, progress: Progress | None = None) -> Evaluation:
    """LL (skipped when chains = 0), both ACCs (skipped when acc_samples = 0) and the monitor over rolls."""
    started = time.perf_counter()
    model.eval()
    rolls = [r for r in rolls if len(r)]
    frames = conditional_frames(model, rolls)
    # each measure draws from its own stream: changing one measure's settings leaves the others' numbers
    seeds = np.random.SeedSequence(seed).spawn(4) if seed is not None else [None] * 4
    samplers = [BernoulliSampler(s) for s in seeds]
    stage = (lambda name: (lambda fraction: progress(name, fraction))) if progress else (lambda name: None)
    ll = acc = app_acc = mon = None
    if chains > 0:
        ll = log_likelihood(model, frames, chains, n_betas, samplers[0], base, progress=stage("log-likelihood"))
        log.info("LL %.4f ± %.4f (%d chains, %d betas, %.1f s)", ll.mean, ll.se, chains, n_betas, ll.seconds)
    if acc_samples > 0:
        acc = expected_accuracy(model, frames, acc_samples, samplers[1], gibbs_steps, "previous",
                                progress=stage("accuracy"))
        log.info("ACC %.4f ± %.4f (%.1f s)", acc.mean, acc.se, acc.seconds)
        if app_accuracy:
            app_acc = expected_accuracy(model, frames, acc_samples, samplers[3], model.config.gibbs_steps,
                                        "silence", progress=stage("accuracy of the app's sampler"))
            log.info("ACC as the app composes: %.4f", app_acc.mean)
    if monitor:
        mon = tutorial_monitor(model, rolls, samplers[2])
    return Evaluation(split, len(rolls), len(frames), ll, acc, app_acc, mon, seed, time.perf_counter() - started)
