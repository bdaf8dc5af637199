"""Runtime assets (the default model, icons), found in an editable install and in a wheel alike.

pyproject.toml maps the top-level resources/ folder to the package rnnrbm_studio.resources, so
importlib.resources finds it in both; a plain source checkout on sys.path falls back to the folder.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "default_model.pt"
APP_ICON = "icon.svg"


def resource_path(name: str) -> Path:
    try:
        candidate = Path(str(resources.files("rnnrbm_studio.resources").joinpath(name)))
        if candidate.exists():
            return candidate
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "resources" / name


def default_model_path() -> Path:
    return resource_path(DEFAULT_MODEL)
