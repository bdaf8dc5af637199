"""Shared test set-up: offscreen Qt, a private roll cache, the shared data, and a leak check.

Every test fails if it leaves a Python thread running (the trainer, the player, a loader...).
"""
from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RNNRBM_STUDIO_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _private_roll_cache(tmp_path_factory):
    os.environ["RNNRBM_STUDIO_CACHE"] = str(tmp_path_factory.mktemp("roll-cache"))
    yield


@pytest.fixture(autouse=True, scope="session")
def _garbage_collected_in_the_main_thread():
    """As the app (ui/app.collect_garbage_in_this_thread): automatic garbage collection could destroy a
    closed window's Qt objects in a worker thread and deadlock with the GUI thread; collect after each
    test instead, in this thread (collect_garbage below)."""
    gc.disable()
    yield
    gc.enable()


@pytest.fixture(autouse=True)
def collect_garbage():
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread, as the app runs (rnnrbm_studio.runtime): tiny tensors on 2 shared cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (the benchmark pickles, the Nottingham MIDI files, the MIDI oddities)."""
    if not (SHARED_DATA / "SOURCES.txt").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (CI provides it; see ../shared/data/SOURCES.txt)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a Python thread running after it ends."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leaked:  # give threads that are already stopping a moment to finish
        thread.join(timeout=2.0)
    still = [t.name for t in leaked if t.is_alive()]
    if still:
        pytest.fail(f"test left threads running: {still}")
