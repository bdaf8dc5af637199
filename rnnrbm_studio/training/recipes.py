"""The training recipes, as data: what each sets of the model's and the training's settings.

`configs(recipe, **overrides)` is the one way a recipe becomes settings, for the command line
(`train --recipe`), the window's Train and the benchmarks alike, so they cannot disagree. A recipe
names only the fields it changes; the rest keep their dataclass defaults, which are the Theano
tutorial's (RnnRbmConfig in model.py, TrainConfig in config.py).
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..model import RnnRbmConfig
from .config import TrainConfig

TUTORIAL = "tutorial"
QUALITY = "quality"
DEFAULT_RECIPE = TUTORIAL

# recipe -> the fields it sets, of RnnRbmConfig and TrainConfig by name (no name is in both)
RECIPES: dict[str, dict[str, Any]] = {
    # the Theano tutorial's training: the dataclasses' own defaults
    TUTORIAL: {},
    # how the bundled model was trained (docs/quality.md, resources/default_model.md): persistent CD
    # chains, Adam, pretraining, weight decay, selection by the valid log-likelihood
    QUALITY: dict(
        optimizer="adam", learning_rate=0.002, lr_schedule="cosine", batch_seqs=4, cd_start="persistent",
        weight_decay=0.01, rnn_weight_decay=0.1, rnn_pretrain_epochs=100, rbm_pretrain_epochs=5, select_by="ll",
        epochs=60, min_updates=28000,
        # its sharp RBMs need about 1,000 Gibbs steps per generated frame to mix from silence (25, the
        # tutorial's, leaves half the steps silent: resources/default_model.md)
        gibbs_steps=1000),
}

MODEL_SETTINGS = tuple(f.name for f in fields(RnnRbmConfig))
TRAIN_SETTINGS = tuple(f.name for f in fields(TrainConfig))


def configs(recipe: str = DEFAULT_RECIPE, **overrides: Any) -> tuple[RnnRbmConfig, TrainConfig]:
    """The model's and the training's settings of `recipe`, with `overrides` (fields of either, by name)
    winning over the recipe's values."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r} (one of {', '.join(RECIPES)})")
    unknown = set(overrides) - set(MODEL_SETTINGS) - set(TRAIN_SETTINGS)
    if unknown:
        raise TypeError(f"not a setting of the model or the training: {', '.join(sorted(unknown))}")
    values = {**RECIPES[recipe], **overrides}
    return (RnnRbmConfig(**{k: v for k, v in values.items() if k in MODEL_SETTINGS}),
            TrainConfig(**{k: v for k, v in values.items() if k in TRAIN_SETTINGS}))


def recipe_value(recipe: str, name: str) -> Any:
    """The value `recipe` gives the setting `name` (a field of RnnRbmConfig or TrainConfig)."""
    model, train = configs(recipe)
    return getattr(model if name in MODEL_SETTINGS else train, name)


def recipe_fields() -> set[str]:
    """The settings some recipe sets: their defaults depend on the recipe chosen."""
    return {name for values in RECIPES.values() for name in values}
