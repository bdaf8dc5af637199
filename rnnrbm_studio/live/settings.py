"""How the player plays: one frozen PlaybackSettings, checked once when it is made.

The window's LivePanel, the `play` command and the tests make one; LivePlayer takes it, and a change
while playing is a new one (dataclasses.replace(settings, bpm=96)) handed to LivePlayer.update().
Whatever made it, a value out of range is a ValueError here, before any player or port sees it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..music.pianoroll import RollSettings, playback_grid

MAX_BPM = 1000.0
CHAIN_STARTS = ("prediction", "silence")
# the samplers as the window and `play --sampler` name them: chain_start of each
SAMPLERS = {"fast": "prediction", "exact": "silence"}
# Gibbs steps of a chain that starts at the RNN's prediction when none are asked for: the bundled
# model's music of 1,000 steps from silence at 1/40 of the cost (benchmarks/bench_generation.py,
# docs/speed.md). Not a cap: steps asked for are run, however many.
PREDICTION_GIBBS_STEPS = 25
MAX_STEPS_PER_BEAT = 96


@dataclass(frozen=True)
class PlaybackSettings:
    bpm: float = 120.0
    steps_per_beat: int = 2  # frames per beat: with bpm, the frame period
    gibbs_steps: int | None = None  # per frame; None: the sampler's default (chain(); play-along: its own)
    temperature: float = 1.0  # 1 = the model; below, safer and sparser; above, more adventurous
    velocity: int = 80  # the base velocity; with dynamics, each note's is shaped by music/dynamics.py
    dynamics: bool = True  # accents on the beats and on the top voice (music/dynamics.py); off: all at velocity
    channel: int = 0  # 0..15, as MIDI counts (synths show 1..16)
    program: int = 0  # 0..127, as MIDI counts (synths show 1..128)
    restrike: bool = False  # strike keys held from one frame to the next again
    latency_offset: float = 0.0  # seconds added to every send deadline; negative sends early
    seed: int | None = None  # of the sampler, for music that plays the same every time
    # where each frame's Gibbs chain starts: at a draw of the RNN's own guess at the frame ("fast"), or at
    # silence (the tutorial's chain, "exact"); chain() says how many steps each runs
    chain_start: str = "prediction"

    def __post_init__(self) -> None:
        if not (0 < float(self.bpm) <= MAX_BPM):
            raise ValueError(f"tempo must be between 0 and {MAX_BPM:g} BPM, not {self.bpm}")
        if not _whole(self.steps_per_beat) or not 1 <= self.steps_per_beat <= MAX_STEPS_PER_BEAT:
            raise ValueError(f"steps per beat must be a whole number from 1 to {MAX_STEPS_PER_BEAT}, "
                             f"not {self.steps_per_beat}")
        if self.gibbs_steps is not None and (not _whole(self.gibbs_steps) or self.gibbs_steps < 1):
            raise ValueError(f"Gibbs steps must be a whole number of at least 1, not {self.gibbs_steps}")
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be positive, not {self.temperature}")
        for name, low, high in (("velocity", 1, 127), ("channel", 0, 15), ("program", 0, 127)):
            value = getattr(self, name)
            if not _whole(value) or not low <= value <= high:
                raise ValueError(f"MIDI {name} must be a whole number from {low} to {high}, not {value}")
        if not math.isfinite(float(self.latency_offset)):
            raise ValueError(f"the latency offset must be a number of seconds, not {self.latency_offset}")
        if self.chain_start not in CHAIN_STARTS:
            raise ValueError(f"the chain starts at {' or '.join(CHAIN_STARTS)}, not {self.chain_start!r}")
        if self.seed is not None and (not _whole(self.seed) or self.seed < 0):
            raise ValueError(f"the seed must be a whole number of at least 0, not {self.seed}")
        # one type per field, whatever the caller passed (2.0 steps per beat, a numpy integer...)
        for name, kind in (("bpm", float), ("steps_per_beat", int), ("temperature", float), ("velocity", int),
                           ("channel", int), ("program", int), ("restrike", bool), ("dynamics", bool),
                           ("latency_offset", float)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        for name in ("gibbs_steps", "seed"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))

    def chain(self, model_gibbs_steps: int) -> tuple[int, str | None]:
        """(Gibbs steps, model.step's start) of a composed frame, for a model that stores model_gibbs_steps.

        Steps asked for (gibbs_steps) are run as asked, whichever the start. Without them the chain
        from the RNN's prediction runs PREDICTION_GIBBS_STEPS, the one from silence the model's own
        (a sharp model stores ~1,000: what its chain from zeros needs to mix).
        """
        asked = self.gibbs_steps
        if self.chain_start == "prediction":
            return (PREDICTION_GIBBS_STEPS if asked is None else asked), "prediction"
        return (int(model_gibbs_steps) if asked is None else asked), None

    @property
    def frame_period(self) -> float:
        """Seconds from one frame to the next."""
        return 60.0 / (self.bpm * self.steps_per_beat)

    @classmethod
    def for_model(cls, roll_settings: RollSettings, bpm: float | None = None, steps_per_beat: int | None = None,
                  **fields) -> "PlaybackSettings":
        """Settings that play a model on the time grid it learned (pianoroll.playback_grid): a beat
        grid at its steps per beat, a seconds grid at its own pace unless `bpm` is given.
        `steps_per_beat` overrides the grid's; other fields as the constructor's."""
        grid_bpm, grid_steps = playback_grid(roll_settings, bpm)
        return cls(bpm=grid_bpm, steps_per_beat=steps_per_beat or grid_steps, **fields)


def _whole(value) -> bool:
    try:
        return int(value) == value
    except (TypeError, ValueError, OverflowError):
        return False


__all__ = ["PlaybackSettings"]
