"""Music-quality measures of an RNN-RBM, as in Boulanger-Lewandowski, Bengio & Vincent (ICML 2012),
all at once over some pieces (the `eval` command):

* LL: log-likelihood per time step by AIS (ais.py);
* ACC under the author's protocol (accuracy.py, `author_accuracy`: each sample's own frame accuracy,
  averaged over samples, then over frames; the paper's ACC), and the pooled readings this project
  reported before (from mixed chains, as the app composes, and AIS-weighted);
* the tutorial's training monitor (accuracy.py; not a likelihood), for reference.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..model import BernoulliSampler, RnnRbm
from .accuracy import (DEFAULT_ACC_GIBBS_STEPS, DEFAULT_ACC_SAMPLES, DEFAULT_AUTHOR_BURN_IN, DEFAULT_AUTHOR_CHAINS,
                       DEFAULT_AUTHOR_SAMPLES, DEFAULT_AUTHOR_THIN, Accuracy, AuthorAccuracy, author_accuracy,
                       expected_accuracy, tutorial_monitor)
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
    author_accuracy: AuthorAccuracy | None = None  # THE ACC: the author's protocol

    def to_dict(self) -> dict:
        values = asdict(self)
        for key in ("accuracy", "app_accuracy"):
            if values[key]:
                values[key].pop("per_sample")  # the summary; the samples are in the object
        author = self.author_accuracy
        values["acc_author_percent"] = None if author is None else 100 * author.mean
        if author is not None:
            values["author_accuracy"]["sampler"] = author.sampler
        return values


def evaluate_model(model: RnnRbm, rolls: Sequence[np.ndarray], split: str = "test",
                   chains: int = DEFAULT_CHAINS, n_betas: int = DEFAULT_BETAS, acc_samples: int = DEFAULT_ACC_SAMPLES,
                   seed: int | None = 0, gibbs_steps: int = DEFAULT_ACC_GIBBS_STEPS, base: str = "marginals",
                   monitor: bool = True, app_accuracy: bool = True, progress: Progress | None = None,
                   author_samples: int = DEFAULT_AUTHOR_SAMPLES, author_chains: int = DEFAULT_AUTHOR_CHAINS,
                   author_burn_in: int = DEFAULT_AUTHOR_BURN_IN, author_thin: int = DEFAULT_AUTHOR_THIN) -> Evaluation:
    """LL (skipped when chains = 0), the author's ACC (skipped when author_samples = 0), the pooled ACCs
    (skipped when acc_samples = 0) and the monitor over rolls."""
    started = time.perf_counter()
    model.eval()
    rolls = [r for r in rolls if len(r)]
    frames = conditional_frames(model, rolls)
    # each measure draws from its own stream: changing one measure's settings leaves the others' numbers
    seeds = np.random.SeedSequence(seed).spawn(5) if seed is not None else [None] * 5
    samplers = [BernoulliSampler(s) for s in seeds]
    stage = (lambda name: (lambda fraction: progress(name, fraction))) if progress else (lambda name: None)
    ll = acc = app_acc = mon = author = None
    if chains > 0:
        ll = log_likelihood(model, frames, chains, n_betas, samplers[0], base, progress=stage("log-likelihood"))
        log.info("LL %.4f ± %.4f (%d chains, %d betas, %.1f s)", ll.mean, ll.se, chains, n_betas, ll.seconds)
    if author_samples > 0:
        author = author_accuracy(model, frames, author_samples, author_chains, author_burn_in, author_thin,
                                 samplers[4], progress=stage("accuracy (author's protocol)"))
        log.info("ACC (author's protocol) %.4f ± %.4f (%.1f s)", author.mean, author.se, author.seconds)
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
    return Evaluation(split, len(rolls), len(frames), ll, acc, app_acc, mon, seed, time.perf_counter() - started,
                      author)
