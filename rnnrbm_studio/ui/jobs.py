"""The window's background jobs, as plain functions of a `Job` (ui/workers.py runs them in a QThread).

Each calls the engine with the job's cancel flag and reports through `job.report`; none touches Qt,
so each can be tried with `Job(report=values.append)` and no event loop.
"""
from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import StudioError
from ..model import RnnRbm
from ..music.corpus import Corpus, LoadCancelled, load_corpus
from ..music.midi_files import roll_to_midi
from ..music.pianoroll import RollSettings
from ..sampling import BernoulliSampler
from ..training.trainer import Trainer, TrainProgress, TrainResult
from .workers import Job, JobCancelled

REPORT_INTERVAL_S = 0.05  # generation reports at most this often: the GUI redraws, it need not count


# ------------------------------------------------------------------------------------- corpus
def load_corpus_job(job: Job, folder: str | Path, settings: RollSettings) -> Corpus:
    """Reports (files done, files in all, current file); cancelled between files."""
    try:
        return load_corpus(str(folder), settings, progress=lambda done, total, name: job.report((done, total, name)),
                           cancel=job.cancelled)
    except LoadCancelled:
        raise JobCancelled() from None


# ----------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainingReport:
    progress: TrainProgress
    weights: RnnRbm | None = None  # a copy of the model after each epoch, for playback that follows training


def train_job(job: Job, make_trainer: Callable[..., Trainer]) -> TrainResult:
    """Builds the Trainer (make_trainer(progress=...)) and runs it; cancelling asks it to stop.

    The trainer stops within one update and keeps its checkpoint, so a cancelled run still succeeds,
    with the result's status "stopped".
    """
    trainer: Trainer | None = None

    def on_progress(progress: TrainProgress) -> None:
        weights = None
        if progress.event == "epoch" and trainer is not None:
            weights = copy.deepcopy(trainer.model).eval()
        job.report(TrainingReport(progress, weights))

    trainer = make_trainer(progress=on_progress)
    job.on_cancel(trainer.request_stop)  # at once if the job was cancelled while the trainer was built
    return trainer.run()


# ---------------------------------------------------------------------------------- generation
@dataclass(frozen=True)
class GenerationProgress:
    frames_done: int
    frames: int


def generate_roll(job: Job, model: RnnRbm, frames: int, gibbs_steps: int | None = None,
                  inverse_temperature: float = 1.0, seed: int | None = None, start: str | None = None) -> np.ndarray:
    """model.generate(frames), frame by frame through model.step: cancelled and reported between frames.

    `start`: where each frame's chain starts (model.step's; "prediction" is the player's fast sampler).
    With the same seed and no start it draws exactly what model.generate draws (the same sampler and steps).
    """
    sampler = BernoulliSampler(seed)
    state = model.initial_state()
    roll = np.zeros((frames, model.config.n_visible), dtype=np.uint8)
    last_report = time.monotonic()
    job.report(GenerationProgress(0, frames))
    for t in range(frames):
        job.check()
        frame, state = model.step(state, sampler, gibbs_steps, inverse_temperature, start=start)
        roll[t] = frame.numpy()
        now = time.monotonic()
        if now - last_report >= REPORT_INTERVAL_S:
            job.report(GenerationProgress(t + 1, frames))
            last_report = now
    job.report(GenerationProgress(frames, frames))
    return roll


def export_bars_job(job: Job, model: RnnRbm, path: str | Path, frames: int, *, bpm: float, steps_per_beat: int,
                    gibbs_steps: int | None = None, inverse_temperature: float = 1.0, seed: int | None = None,
                    velocity: int = 80, dynamics: bool = True, start: str | None = None) -> Path:
    """Generates `frames` new frames and writes them to `path` (atomically), only if not cancelled.

    `model` is the job's own: pass a copy, not a model that playback or training changes meanwhile.
    """
    roll = generate_roll(job, model, frames, gibbs_steps, inverse_temperature, seed, start)
    job.check()
    path = Path(path)
    try:
        roll_to_midi(roll, path, bpm=bpm, steps_per_beat=steps_per_beat, velocity=velocity, dynamics=dynamics)
    except OSError as error:
        raise StudioError(f"Cannot write {path}: {error.strerror or error}") from None
    except ValueError as error:  # a grid MIDI cannot hold (ticks per beat not a multiple of the steps)
        raise StudioError(f"Cannot export: {error}") from None
    return path


# -------------------------------------------------------------------------------------- audio
def export_audio_job(job: Job, midi: str | Path, out: str | Path, *, gain: float, soundfont: str | None = None,
                     remove_folder: str | Path | None = None):
    """Renders a MIDI file (the session, written by the window) to a WAV at `out` with the built-in
    synth; cancelled between MIDI messages (the WAV is written atomically: nothing is left under `out`).
    `remove_folder` (the MIDI's temporary folder) is removed however the job ends. Returns RenderResult."""
    from ..live.audio_render import render_midi_file

    try:
        return render_midi_file(midi, out, soundfont=soundfont, gain=gain, between=job.check)
    except (OSError, ValueError) as error:  # a StudioError (SoundFont, no FluidSynth, too long) passes as it is
        raise StudioError(f"{out}: {getattr(error, 'strerror', None) or error}") from None
    finally:
        if remove_folder is not None:
            shutil.rmtree(remove_folder, ignore_errors=True)
