"""Small RNN-RBMs with random weights for the tests: every weight drawn N(0, scale^2) from a seed, so
that each term of a formula matters (the model's own initialisation is ~1e-2 and smaller)."""
from __future__ import annotations

import torch

from rnnrbm_studio.model import RnnRbm, RnnRbmConfig


def random_weights_model(seed: int, scale: float, dtype: torch.dtype = torch.float32, **config) -> RnnRbm:
    """An RnnRbm of RnnRbmConfig(**config) in `dtype`, every parameter redrawn as N(0, scale^2)."""
    torch.manual_seed(seed)
    model = RnnRbm(RnnRbmConfig(**config)).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * scale)
    return model
