"""Every frame of some pieces with its RBM's biases given the true history: what the measures read.

Shapes: N frames, V visible units, H hidden units, R recurrent units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..model import RnnRbm


@dataclass
class Frames:
    """Every frame of some pieces with its RBM's biases given the true history."""

    v: torch.Tensor  # (N, V) 0/1
    bv: torch.Tensor  # (N, V) bv_t = bv + u_{t-1} Wuv
    bh: torch.Tensor  # (N, H) bh_t = bh + u_{t-1} Wuh
    u_prev: torch.Tensor  # (N, R) u_{t-1}
    v_prev: torch.Tensor  # (N, V) v_{t-1}, silence before the first frame of a piece

    def __len__(self) -> int:
        return self.v.shape[0]

    def subset(self, index) -> "Frames":
        return Frames(self.v[index], self.bv[index], self.bh[index], self.u_prev[index], self.v_prev[index])


@torch.no_grad()
def conditional_frames(model: RnnRbm, rolls: Sequence[np.ndarray]) -> Frames:
    """Run the RNN over each whole piece from u_0 (no chunking: the full history conditions each frame)."""
    parts = []
    for roll in rolls:
        if len(roll) == 0:
            continue
        v = torch.as_tensor(np.asarray(roll), dtype=torch.float32).unsqueeze(0)  # (1, T, V)
        bv_t, bh_t, u = model.conditional_biases(v)
        u_start = model._u_start(v, None)  # (1, R)
        u_prev = torch.cat([u_start.unsqueeze(1), u[:, :-1]], dim=1)  # (1, T, R)
        v_prev = torch.cat([torch.zeros_like(v[0, :1]), v[0, :-1]])  # (T, V)
        parts.append((v[0], bv_t[0], bh_t[0], u_prev[0], v_prev))
    if not parts:
        raise ValueError("no frames to evaluate: every piece is empty")
    return Frames(*(torch.cat([p[i] for p in parts]).contiguous() for i in range(5)))


def leading_frames(rolls: Sequence, count: int) -> list[np.ndarray]:
    """The first `count` frames of a list of rolls (arrays or tensors), cut where the count is reached."""
    taken, total = [], 0
    for roll in rolls:
        if total >= count:
            break
        taken.append(np.asarray(roll)[:count - total])
        total += len(taken[-1])
    return taken
