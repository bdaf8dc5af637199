"""An epoch's updates (subsequences shuffled, transposed and batched) and the persistent CD chains.

A chunk is where a batch row came from: (roll index, first frame, frames, semitones transposed).
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np
import torch

from ..music.pianoroll import transpose_roll
from .config import TrainConfig

Chunk = tuple[int, int, int, int]
Batch = tuple[torch.Tensor, "torch.Tensor | None"]  # (B, T, V) and its mask (B, T), None when B = 1


def epoch_batches(rolls: Sequence[np.ndarray], config: TrainConfig, rng: random.Random,
                  augment: bool) -> tuple[list[Batch], list[list[Chunk]]]:
    """One epoch's updates in order, and the chunks of each; `rng` draws the order and the shifts."""
    order = list(range(len(rolls)))
    rng.shuffle(order)
    pieces = []  # (roll index, first frame, semitones transposed, frames)
    for index in order:
        roll, shift = rolls[index], 0
        if augment:
            shift = config.key_shift_step * rng.randint(-config.key_shift, config.key_shift)
            roll = transpose_roll(roll, shift)
        roll = torch.from_numpy(roll.astype(np.float32))
        pieces.extend((index, i, shift, roll[i:i + config.seq_len]) for i in range(0, roll.shape[0], config.seq_len))
    if config.batch_seqs > 1:  # (the tutorial: sequences shuffled, subsequences in order)
        rng.shuffle(pieces)
    size = max(1, config.batch_seqs)
    groups = [pieces[i:i + size] for i in range(0, len(pieces), size)]
    chunks = [[(index, first, len(frames), shift) for index, first, shift, frames in group] for group in groups]
    if config.batch_seqs <= 1:
        return [(group[0][3].unsqueeze(0), None) for group in groups], chunks
    return [pad([frames for *_, frames in group]) for group in groups], chunks


def updates_per_epoch(rolls: Sequence[np.ndarray], config: TrainConfig) -> int:
    chunks = sum(math.ceil(len(r) / config.seq_len) for r in rolls)
    return chunks if config.batch_seqs <= 1 else math.ceil(chunks / config.batch_seqs)


def valid_batches(rolls: Sequence[torch.Tensor], seq_len: int, batch_seqs: int = 64) -> list[Batch]:
    chunks = [r[i:i + seq_len] for r in rolls for i in range(0, r.shape[0], seq_len)]
    return [pad(chunks[i:i + batch_seqs]) for i in range(0, len(chunks), batch_seqs)]


def pad(chunks: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Subsequences (T_i, V) -> batch (B, T, V) padded at the end, and mask (B, T)."""
    length = max(c.shape[0] for c in chunks)
    batch = chunks[0].new_zeros(len(chunks), length, chunks[0].shape[1])
    mask = chunks[0].new_zeros(len(chunks), length)
    for i, chunk in enumerate(chunks):
        batch[i, :chunk.shape[0]] = chunk
        mask[i, :chunk.shape[0]] = 1
    return batch, mask


class PersistentChains:
    """Where each training frame's CD chain stopped the last time it was trained on (the data at first).

    States are kept in the piece's own key; a chain resumes transposed with this epoch's copy of its piece.
    """

    def __init__(self, rolls: Sequence[np.ndarray]):
        self.states = [np.asarray(r, dtype=np.float32).copy() for r in rolls]

    def starts(self, chunks: list[Chunk], shape: torch.Size) -> torch.Tensor:
        """The chains' states for a batch of these chunks. (B, T, V)."""
        start = torch.zeros(shape)
        for row, (index, first, length, shift) in enumerate(chunks):
            state = transpose_roll(self.states[index][first:first + length], shift)
            start[row, :length] = torch.from_numpy(state)
        return start

    def keep(self, chunks: list[Chunk], mask: torch.Tensor | None, negative: torch.Tensor) -> None:
        """Store where the chains of a batch stopped: negative holds the real frames' states, (frames, V)."""
        B, T = (mask.shape if mask is not None else (1, negative.shape[0]))
        full = negative.new_zeros(B * T, negative.shape[1])
        full[mask.reshape(-1) > 0 if mask is not None else slice(None)] = negative
        full = full.reshape(B, T, -1).numpy().astype(np.float32)
        for row, (index, first, length, shift) in enumerate(chunks):
            self.states[index][first:first + length] = transpose_roll(full[row, :length], -shift)

    def packed(self) -> torch.Tensor:
        """One bit per key and frame, as a checkpoint holds them."""
        return torch.from_numpy(np.packbits(np.concatenate(self.states) > 0, axis=-1))

    def unpack(self, packed: torch.Tensor, keys: int) -> bool:
        """Take the states from packed bits; False (nothing changed) if they are not one per frame."""
        states = np.unpackbits(packed.numpy(), axis=-1, count=keys).astype(np.float32)
        if len(states) != sum(len(s) for s in self.states):
            return False
        ends = np.cumsum([len(s) for s in self.states])[:-1]
        self.states = [part.copy() for part in np.split(states, ends)]
        return True
