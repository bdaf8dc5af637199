"""Process-wide settings for the CPU: how many threads torch may use.

One torch thread by default. Our work is many small operations (a 100-frame subsequence, one frame
of 25 Gibbs steps) plus random numbers drawn by numpy on one core, so a second torch thread buys
little (about 7 % on a quiet 2-core machine) and costs a lot when cores are busy: OpenMP threads
spin-wait, and training, live generation and the window each call torch from their own thread.
On a loaded 2-core machine two threads made training and generation 5-50 times slower.
Set RNNRBM_STUDIO_THREADS (or `train --threads`) to choose otherwise.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

THREADS_VARIABLE = "RNNRBM_STUDIO_THREADS"


def configure_threads(threads: int | None = None) -> int:
    import torch

    if threads is None:
        try:
            threads = int(os.environ.get(THREADS_VARIABLE, "1"))
        except ValueError:
            log.warning("ignoring %s=%r: not a whole number", THREADS_VARIABLE, os.environ[THREADS_VARIABLE])
            threads = 1
    threads = max(1, threads)
    torch.set_num_threads(threads)
    return threads
