"""What a model file must hold before any part of the app reads it.

A checkpoint is data from disk: edited, truncated by hand, or written by something else. Every field
the app reads is checked here once, on the file's dict in the current layout (checkpoint_types.py;
older files are migrated first), so the readers (info, generate, play, eval, export-params, resume,
the window) can trust the Checkpoint they get. The rules, by the part of the file:

* the model (model_config, model_state, best_model_state, data.roll_settings): wrong types, sizes
  outside limits.py, tensors whose shapes do not follow the config, or NaN/infinite weights refuse the
  file (Invalid), since nothing sensible can be played from it;
* the training state (`training`: train_config, progress, optimizer_state, averaged_state, rng,
  chain_states, pretraining, epoch_in_progress): if any of it is malformed, all of it is dropped
  (logged) and the reason is returned: the model still plays, info shows the reason, and --resume
  refuses with it instead of continuing some other run;
* descriptions (history, evaluation, candidates, recipe, history_note, data.description, saved_at): a
  malformed one is dropped with a logged warning.
"""
from __future__ import annotations

import logging
import math
import random
from typing import Any

import torch

from ..limits import MODEL_FIELDS, ROLL_FIELDS, ROLL_OPTIONAL, TRAIN_FIELDS, TRAIN_OPTIONAL, bounds, is_open_low

log = logging.getLogger(__name__)

COUNT_MAX = 10**12  # epochs, updates, frames: far above any real run, far below an overflow
PROGRESS_FIELDS = {"epochs_completed": 0, "best_valid_monitor": None, "best_valid_ll": None,
                   "epochs_since_best": 0, "elapsed_seconds": 0.0}


class Invalid(ValueError):
    """A part of a checkpoint that cannot be used; str() is a one-line reason naming the field."""


def validate_payload(payload: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A checked copy of a checkpoint's dict (current layout; format and version already checked), and
    why its training state was dropped (None if it was not); raises Invalid for a model that cannot be used."""
    out = dict(payload)
    config = check_fields(payload.get("model_config", _MISSING), MODEL_FIELDS, set(), "model_config")
    for name in ("n_hidden", "n_hidden_recurrent"):  # the shapes follow them: no default can stand in
        if name not in config:
            raise Invalid(f"model_config lacks {name}")
    out["model_config"] = config
    shapes = weight_shapes(config)
    out["model_state"] = check_weights(payload.get("model_state", _MISSING), shapes, "model_state")
    if payload.get("best_model_state") is not None:
        out["best_model_state"] = check_weights(payload["best_model_state"], shapes, "best_model_state")
    out["data"] = _check_data(payload.get("data"))
    problem = None
    if payload.get("training") is not None:
        try:
            out["training"] = _check_training_state(payload["training"], config, shapes)
        except Invalid as error:
            # (info, not a warning: the one reader it matters to, --resume, says it as its error)
            log.info("ignoring the training state of a model file: %s", error)
            out.pop("training")
            problem = str(error)
    for key, check in DESCRIPTIONS.items():
        if out.get(key) is None:
            continue
        try:
            out[key] = check(out[key], key)
        except Invalid as error:
            log.warning("ignoring a model file's %s: %s", key, error)
            out.pop(key)
    return out, problem


def _check_data(data: Any) -> dict[str, Any]:
    """The time grid (the model's part: it plays and reads primers on it) and the data's description."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Invalid(f"data is {_shown(data)}, not a table of data settings")
    out = {}
    if data.get("roll_settings") is not None:
        out["roll_settings"] = check_fields(data["roll_settings"], ROLL_FIELDS, ROLL_OPTIONAL, "data.roll_settings")
    if data.get("description") is not None:
        try:
            out["description"] = _check_text(data["description"], "data.description")
        except Invalid as error:
            log.warning("ignoring a model file's data.description: %s", error)
    return out


def weight_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape of each weight of a model with this (checked) config, as RnnRbm makes them."""
    V = config.get("n_visible", MODEL_FIELDS["n_visible"][0])
    H, R = config["n_hidden"], config["n_hidden_recurrent"]
    shapes = {"W": (V, H), "bv": (V,), "bh": (H,), "Wuh": (R, H), "Wuv": (R, V), "Wvu": (V, R), "Wuu": (R, R),
              "bu": (R,)}
    if config.get("learned_u0"):
        shapes["u0"] = (R,)
    if config.get("recurrence") == "gru":
        shapes.update(Wvg=(V, 2 * R), Wug=(R, 2 * R), bg=(2 * R,))
    return shapes


# ---------------------------------------------------------------------------------- values
_MISSING = object()


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    if isinstance(value, (dict, list, tuple, torch.Tensor)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{where} is {_shown(value)}, not an integer from {low} to {high}")
    return value


def check_number(value: Any, where: str, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value < low or value > high or (low_open and value == low)):
        ok = False
    if not ok:
        if math.isinf(low) and math.isinf(high):
            raise Invalid(f"{where} is {_shown(value)}, not a finite number")
        raise Invalid(f"{where} is {_shown(value)}, not a number from {low:g}{' (excluded)' if low_open else ''} "
                      f"to {high:g}")
    return float(value)


def _optional_number(value: Any, where: str) -> float | None:
    return None if value is None else check_number(value, where)


def check_fields(values: Any, table: dict[str, object], optional: set[str], where: str) -> dict[str, Any]:
    """The known fields of a settings table, each checked against limits.py (unknown ones are left out)."""
    if not isinstance(values, dict):
        raise Invalid(f"{where} is {_shown(values)}, not a table of settings")
    out = {}
    for name, spec in table.items():
        if name not in values:
            continue  # the dataclass's default stands in
        value, label = values[name], f"{where}.{name}"
        if value is None and name in optional:
            out[name] = None
        elif spec is bool:
            if not isinstance(value, bool):
                raise Invalid(f"{label} is {_shown(value)}, not true or false")
            out[name] = value
        elif all(isinstance(choice, str) for choice in spec) and not is_open_low(table, name):
            if not isinstance(value, str) or value not in spec:
                raise Invalid(f"{label} is {_shown(value)}, not one of {', '.join(spec)}")
            out[name] = value
        else:
            low, high = bounds(table, name)
            if isinstance(low, int) and isinstance(high, int):
                out[name] = check_int(value, label, low, high)
            else:
                out[name] = check_number(value, label, low, high, is_open_low(table, name))
    return out


def check_weights(state: Any, shapes: dict[str, tuple[int, ...]], where: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict):
        raise Invalid(f"{where} is {_shown(state)}, not a table of weights")
    missing = [name for name in shapes if name not in state]
    unknown = [str(name) for name in state if name not in shapes]
    if missing or unknown:
        raise Invalid(f"{where} " + "; ".join(filter(None, [
            missing and f"lacks {', '.join(missing)}", unknown and f"has unknown weights {', '.join(unknown[:5])}"])))
    for name, shape in shapes.items():
        check_tensor(state[name], f"{where}.{name}", shape)
    return state


def check_tensor(value: Any, where: str, shape: tuple[int, ...] | None = None, floating: bool = True) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.is_complex():
        raise Invalid(f"{where} is {_shown(value)}, not a dense tensor")
    if floating and not value.dtype.is_floating_point:
        raise Invalid(f"{where} holds {value.dtype}, not floating-point numbers")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise Invalid(f"{where} has shape {tuple(value.shape)}, but model_config says {tuple(shape)}")
    if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
        raise Invalid(f"{where} holds NaN or infinite values")
    return value


# -------------------------------------------------------------------------- training state
def _check_training_state(training: Any, config: dict[str, Any], shapes) -> dict[str, Any]:
    if not isinstance(training, dict):
        raise Invalid(f"training is {_shown(training)}, not a table")
    out = dict(training)
    where = "training."  # messages name the field as the file does
    if "train_config" in out:
        out["train_config"] = check_fields(out["train_config"], TRAIN_FIELDS, TRAIN_OPTIONAL, where + "train_config")
    if "progress" in out:
        out["progress"] = _check_progress(out["progress"], where + "progress")
    if out.get("averaged_state") is not None:
        check_weights(out["averaged_state"], shapes, where + "averaged_state")
    if out.get("optimizer_state") is not None:
        _check_optimizer_state(out["optimizer_state"], where + "optimizer_state")
    if out.get("rng") is not None:
        _check_rng(out["rng"], where + "rng")
    if out.get("chain_states") is not None:
        label = where + "chain_states"
        chains = check_tensor(out["chain_states"], label, floating=False)
        keys = config.get("n_visible", MODEL_FIELDS["n_visible"][0])
        if chains.dtype != torch.uint8 or chains.dim() != 2 or chains.shape[1] != (keys + 7) // 8:
            raise Invalid(f"{label} is a {chains.dtype} tensor of shape {tuple(chains.shape)}, not bits of "
                          f"{keys} keys per frame")
    if out.get("pretraining") is not None:
        out["pretraining"] = _check_table_of_tables(out["pretraining"], where + "pretraining")
    if out.get("epoch_in_progress") is not None:
        _check_epoch_in_progress(out["epoch_in_progress"], where + "epoch_in_progress")
    return out


def _check_progress(progress: Any, where: str) -> dict[str, Any]:
    if not isinstance(progress, dict):
        raise Invalid(f"{where} is {_shown(progress)}, not a table")
    out = {**PROGRESS_FIELDS, **{k: v for k, v in progress.items() if k in PROGRESS_FIELDS}}
    for name in ("epochs_completed", "epochs_since_best"):
        check_int(out[name], f"{where}.{name}", 0, COUNT_MAX)
    for name in ("best_valid_monitor", "best_valid_ll"):
        _optional_number(out[name], f"{where}.{name}")
    out["elapsed_seconds"] = check_number(out["elapsed_seconds"], f"{where}.elapsed_seconds", 0.0, 1e12)
    return out


def _check_optimizer_state(state: Any, where: str) -> None:
    """The structure; Trainer.resume compares the tensors' shapes with the model's parameters."""
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict) or not isinstance(
            state.get("param_groups"), list):
        raise Invalid(f"{where} is not an optimiser's state (state and param_groups)")
    for group in state["param_groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in group["params"]):
            raise Invalid(f"{where}.param_groups is malformed")
    for index, values in state["state"].items():
        if not isinstance(index, int) or not isinstance(values, dict):
            raise Invalid(f"{where}.state is malformed")
        for name, value in values.items():
            label = f"{where}.state[{index}].{name}"
            if isinstance(value, torch.Tensor):
                check_tensor(value, label)
            else:
                check_number(value, label)


def _check_rng(rng: Any, where: str) -> None:
    from .rng_state import rng_state_from_lists
    from ..sampling import BernoulliSampler

    if not isinstance(rng, dict):
        raise Invalid(f"{where} is {_shown(rng)}, not a table of random states")
    for name in ("sampler", "monitor"):
        if name in rng:
            try:
                BernoulliSampler(0).set_state(rng_state_from_lists(rng[name]))
            except Exception as error:  # foreign data: numpy's own message names no field
                raise Invalid(f"{where}.{name} is not a random generator's state ({type(error).__name__})") from None
    if "shuffle" in rng:
        check_shuffle_state(rng["shuffle"], f"{where}.shuffle")
    if "torch" in rng:
        try:
            torch.Generator().set_state(rng["torch"])
        except Exception as error:
            raise Invalid(f"{where}.torch is not torch's random state ({type(error).__name__})") from None


def check_shuffle_state(state: Any, where: str) -> None:
    from .rng_state import rng_state_as_tuples

    try:
        random.Random().setstate(rng_state_as_tuples(state))
    except Exception as error:
        raise Invalid(f"{where} is not a random generator's state ({type(error).__name__})") from None


def _check_epoch_in_progress(epoch: Any, where: str) -> None:
    if not isinstance(epoch, dict):
        raise Invalid(f"{where} is {_shown(epoch)}, not a table")
    check_int(epoch.get("epoch", _MISSING), f"{where}.epoch", 1, COUNT_MAX)
    for name in ("step", "frames"):
        check_int(epoch.get(name, _MISSING), f"{where}.{name}", 0, COUNT_MAX)
    for name in ("loss_sum", "monitor_sum"):
        check_number(epoch.get(name, _MISSING), f"{where}.{name}")
    check_number(epoch.get("seconds", _MISSING), f"{where}.seconds", 0.0, 1e12)
    check_shuffle_state(epoch.get("shuffle", _MISSING), f"{where}.shuffle")


# ---------------------------------------------------------------------------- descriptions
def _scalar(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    return check_number(value, where) if isinstance(value, float) else check_int(value, where, -COUNT_MAX, COUNT_MAX)


def _check_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where} is {_shown(value)}, not text")
    return value


def _check_history(history: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(history, list):
        raise Invalid(f"{where} is {_shown(history)}, not a list of epochs")
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or not all(isinstance(k, str) for k in entry):
            raise Invalid(f"{where}[{i}] is {_shown(entry)}, not a table of readings")
        check_int(entry.get("epoch", _MISSING), f"{where}[{i}].epoch", 1, COUNT_MAX)
        for key, value in entry.items():
            _optional_number(value, f"{where}[{i}].{key}")
    return history


def _check_table_of_tables(table: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise Invalid(f"{where} is {_shown(table)}, not a table of tables")
    for name, values in table.items():
        for key, value in values.items():
            _optional_number(value, f"{where}.{name}.{key}")
    return table


def _check_summary(table: Any, where: str) -> dict[str, Any]:
    """Shown as text by info: keys are text, values plain values or lists of them."""
    if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
        raise Invalid(f"{where} is {_shown(table)}, not a table")
    for key, value in table.items():
        for item in (value if isinstance(value, list) else [value]):
            _scalar(item, f"{where}.{key}")
    return table


DESCRIPTIONS = {"history": _check_history, "evaluation": _check_summary, "candidates": _check_summary,
                "recipe": _check_text, "history_note": _check_text, "saved_at": _check_text}
