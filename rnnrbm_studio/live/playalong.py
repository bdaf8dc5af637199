"""Play along: the model accompanies the musician, or answers them, one frame at a time.

The decision for frame t is made at its deadline D_t from what the musician does at that moment,
just in time (nothing is generated ahead: it would not have heard the musician):

1. the musician's previous frame, [D_{t-1}, D_t), is now complete (frame_folding.FrameFolder.fold):
   the RNN state after frame t-1 is made again from the whole of it plus what the model played then,
   so the RNN hears every note, also one struck and released between two deadlines;
2. *accompany*: the keys held at D_t are clamped in the RBM (model.step's clamp_mask), keys the model
   may not play (at or above the split, or outside a range) are clamped silent, the model samples the
   others from the exact conditional and plays only those: it never doubles a key the musician holds;
   at most max_notes of them (the keys it already holds first, then from the lowest up);
   *answer*: while the musician plays, and for `answer_after_beats` beats of silence after, the model
   listens (its RNN hears the frames) and plays nothing; then it answers for `answer_bars` bars (by
   default as long as the call, in whole bars, at most MAX_ANSWER_BARS), from what it heard; a new
   note from the musician ends the answer at the next frame (its notes are released) and starts a
   new call.

The Generator (generator.py) calls PlayAlong.decide from its thread at each deadline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .frame_folding import FrameFolder

SOLO, ACCOMPANY, ANSWER = "solo", "accompany", "answer"
MODES = (SOLO, ACCOMPANY, ANSWER)
# The bundled model stores 1,000 Gibbs steps per frame: 23 ms per clamped frame on a 2-core machine,
# added to every reply. 100 steps took 1.5 ms (median; 5.7 ms at worst under load) there and still
# mix the conditional well: the play-along default when the user gives none (benchmarks/bench_playalong.py).
PLAYALONG_GIBBS_STEPS = 100
MAX_ANSWER_BARS = 8
MAX_BEATS_PER_BAR = 16


@dataclass(frozen=True)
class PlayAlongSettings:
    """How the model plays along; checked once, like PlaybackSettings."""

    mode: str = SOLO
    split: int | None = None  # MIDI note: the model plays only keys below it
    max_notes: int | None = None  # the model's notes per frame at most
    answer_after_beats: float = 2.0  # beats of silence before the answer
    answer_bars: int | None = None  # None: as long as the call (whole bars, at most MAX_ANSWER_BARS)
    beats_per_bar: int = 4

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"the mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.split is not None and not (_whole(self.split) and 1 <= self.split <= 127):
            raise ValueError(f"the split must be a MIDI note from 1 to 127, not {self.split}")
        if self.max_notes is not None and not (_whole(self.max_notes) and 1 <= self.max_notes <= 88):
            raise ValueError(f"the maximum number of notes must be from 1 to 88, not {self.max_notes}")
        if not (math.isfinite(float(self.answer_after_beats)) and 0.25 <= float(self.answer_after_beats) <= 64):
            raise ValueError(f"the answer must come after 0.25 to 64 beats of silence, not {self.answer_after_beats}")
        if self.answer_bars is not None and not (_whole(self.answer_bars) and 1 <= self.answer_bars <= 64):
            raise ValueError(f"an answer lasts 1 to 64 bars, not {self.answer_bars}")
        if not (_whole(self.beats_per_bar) and 1 <= self.beats_per_bar <= MAX_BEATS_PER_BAR):
            raise ValueError(f"a bar has 1 to {MAX_BEATS_PER_BAR} beats, not {self.beats_per_bar}")
        object.__setattr__(self, "answer_after_beats", float(self.answer_after_beats))

    @property
    def listening(self) -> bool:
        """Whether the musician's input matters (any mode but solo)."""
        return self.mode != SOLO


@dataclass
class Decision:
    keys: np.ndarray  # (n_keys,) uint8: what the model plays in this frame
    state: torch.Tensor  # RNN state after this frame (remade from the whole frame at the next decision)
    held: np.ndarray  # (n_keys,) bool: the musician's keys at the deadline
    previous_musician: np.ndarray | None  # the musician's whole previous frame, now complete
    answering: bool


@dataclass
class _Last:
    state_before: torch.Tensor
    model_keys: np.ndarray
    start: float
    period: float


class PlayAlong:
    """The decisions of the play-along modes. Not thread-safe: one generator thread calls decide()."""

    def __init__(self, folder: FrameFolder, settings: PlayAlongSettings):
        self.folder = folder
        self.settings = settings
        self.n_keys, self.lowest_pitch = folder.n_keys, folder.lowest_pitch
        self._last: _Last | None = None
        self._chain_start: str | None = None  # model.step's start, as the player's settings ask (decide)
        self._answer_left = 0  # frames of the answer still to play
        self._answer_onsets = 0  # the folder's onset count when the answer began
        self._listening_since: float | None = None
        self._answer_began = 0.0

    def forget(self) -> None:
        """A new RNN state (reset, prime, a new start): nothing of the last frame is to be made again."""
        self._last = None
        self._answer_left = 0
        self._listening_since = None

    def set_settings(self, settings: PlayAlongSettings) -> None:
        if settings.mode != self.settings.mode:
            self._answer_left = 0
            self._listening_since = None
        self.settings = settings

    @property
    def answering(self) -> bool:
        return self._answer_left > 0

    # ------------------------------------------------------------------------ deciding
    def decide(self, model, state: torch.Tensor, start: float, period: float, beat: float, sampler,
               gibbs_steps: int | None, inverse_temperature: float, chain_start: str | None = None) -> Decision:
        """The frame starting at clock time `start` (its deadline; now, or just before), after
        `state`, the RNN state after the last frame as the generator has it. `beat`: seconds.
        chain_start: where the model's Gibbs chains start (model.step's start; None: silence)."""
        self._chain_start = chain_start
        previous = None
        last = self._last
        if last is not None and start > last.start:
            end = min(start, last.start + 2 * last.period)  # after a pause, the frame had its own length
            previous = self.folder.fold(last.start, end)
            heard = torch.as_tensor((previous | last.model_keys.astype(bool)).astype(np.float32))
            state = model.advance(last.state_before.unsqueeze(0), heard.unsqueeze(0))[0]
        held = self.folder.held_at(start)
        settings = self.settings
        if settings.mode == ACCOMPANY:
            keys, answering = self._accompany(model, state, held, sampler, gibbs_steps, inverse_temperature), False
        else:
            keys, answering = self._answer(model, state, start, period, beat, sampler, gibbs_steps,
                                           inverse_temperature)
        frame = torch.as_tensor((held | keys.astype(bool)).astype(np.float32))
        new_state = model.advance(state.unsqueeze(0), frame.unsqueeze(0))[0]
        self._last = _Last(state, keys, start, period)
        return Decision(keys, new_state, held, previous, answering)

    def _allowed(self) -> np.ndarray:
        """(n_keys,) bool: the keys the model may play."""
        allowed = np.ones(self.n_keys, dtype=bool)
        if self.settings.split is not None:
            allowed[max(0, self.settings.split - self.lowest_pitch):] = False
        return allowed

    def _accompany(self, model, state, held, sampler, gibbs_steps, beta) -> np.ndarray:
        allowed = self._allowed()
        clamp_mask = torch.as_tensor(held | ~allowed)
        clamp_values = torch.as_tensor(held.astype(np.float32))
        frame, _ = model.step(state, sampler, gibbs_steps, beta, clamp_mask=clamp_mask, clamp_values=clamp_values,
                              start=self._chain_start)
        sampled = frame.detach().cpu().numpy() > 0.5
        return self._limit(sampled & allowed & ~held)

    def _answer(self, model, state, start, period, beat, sampler, gibbs_steps, beta) -> tuple[np.ndarray, bool]:
        folder, silent = self.folder, np.zeros(self.n_keys, dtype=np.uint8)
        if self._listening_since is None:
            self._listening_since = start
        if self._answer_left > 0:
            if folder.onsets != self._answer_onsets:  # the musician plays again: a new call
                self._answer_left = 0
                self._listening_since = self._answer_began  # the note that interrupted begins the call
                return silent, False
            self._answer_left -= 1
            allowed = self._allowed()
            mask = torch.as_tensor(~allowed)
            frame, _ = model.step(state, sampler, gibbs_steps, beta, clamp_mask=mask,
                                  clamp_values=torch.zeros(self.n_keys), start=self._chain_start)
            keys = self._limit((frame.detach().cpu().numpy() > 0.5) & allowed)
            if self._answer_left == 0:
                self._listening_since = start + period  # the answer ends with this frame
            return keys, True
        quiet = folder.quiet_since()
        call_start = folder.first_onset_since(self._listening_since)
        if quiet is None or call_start is None or quiet < call_start:
            return silent, False
        if start + 1e-9 < quiet + self.settings.answer_after_beats * beat:
            return silent, False
        self._answer_left = self._answer_frames(quiet - call_start, period, beat)
        self._answer_onsets = folder.onsets
        self._answer_began = start
        return self._answer(model, state, start, period, beat, sampler, gibbs_steps, beta)

    def _answer_frames(self, call_seconds: float, period: float, beat: float) -> int:
        bar = beat * self.settings.beats_per_bar
        bars = self.settings.answer_bars
        if bars is None:
            bars = min(MAX_ANSWER_BARS, max(1, math.ceil(call_seconds / bar - 1e-6)))
        return max(1, round(bars * bar / period))

    def _limit(self, keys: np.ndarray) -> np.ndarray:
        """At most max_notes keys: those the model already holds first (no needless re-strikes), then
        from the lowest up (accompaniment lives below the melody)."""
        limit = self.settings.max_notes
        chosen = np.flatnonzero(keys)
        if limit is not None and len(chosen) > limit:
            last = self._last.model_keys.astype(bool) if self._last is not None else np.zeros(self.n_keys, bool)
            order = sorted(chosen, key=lambda key: (not last[key], key))
            keys = np.zeros(self.n_keys, dtype=bool)
            keys[order[:limit]] = True
        return keys.astype(np.uint8)


def _whole(value) -> bool:
    try:
        return int(value) == value
    except (TypeError, ValueError, OverflowError):
        return False


__all__ = ["PlayAlong", "PlayAlongSettings", "Decision", "MODES", "SOLO", "ACCOMPANY", "ANSWER",
           "PLAYALONG_GIBBS_STEPS", "MAX_ANSWER_BARS"]
