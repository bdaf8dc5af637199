"""What `info` prints about a model file: a summary a person reads (which epoch plays and why, the
evaluation as a short table, the data by its file name), then the settings in full."""
from __future__ import annotations

from pathlib import PurePath
from typing import Any

from ..training.progress import count_of, format_seconds, ll_text

# `eval --record`'s keys (quality/evaluate.py) as a table's rows; others are shown by their own name
EVALUATION_LABELS = {
    "measured": "measured on",
    "log_likelihood": "log-likelihood per step (AIS)",
    "log_likelihood_capped": "  capped at the sure bound",
    "log_likelihood_sure_bound": "  sure upper bound",
    "ais": "  AIS",
    "accuracy_ais_weighted": "frame accuracy, AIS-weighted",
    "accuracy": "frame accuracy",
    "accuracy_protocol": "  protocol",
    "app_sampler_accuracy": "frame accuracy as the app composes",
    "acc_author_percent": "frame accuracy, the paper's protocol (%)",
    "acc_author_sampler": "  sampler",
    "acc_author_samples_per_frame": "  samples per frame",
    "log_likelihood_ais_16x1000": "log-likelihood per step (AIS 16 x 1,000)",
    "log_likelihood_floored": "  raised to the sure lower bound of log Z",
    "log_likelihood_sure_upper_bound": "  sure upper bound",
    "log_likelihood_ais_16x4000": "log-likelihood per step (AIS 16 x 4,000)",
    "log_likelihood_ais_16x4000_floored": "  raised to the sure lower bound of log Z",
    "acc_ais_weighted_percent": "frame accuracy, AIS-weighted (%)",
    "acc_gibbs_400_from_previous_frame_percent": "frame accuracy, 400 Gibbs steps (%)",
    "acc_as_the_app_composes_1000_steps_percent": "frame accuracy as the app composes (%)",
    "tutorial_monitor": "the tutorial's monitor",
    "ais_frames_below_bound": "  frames whose AIS log Z fell below that bound",
    "ais_16x4000_frames_below_bound": "  frames whose AIS log Z fell below that bound",
    "ais_mean_ess": "  AIS effective sample size (of 16 chains)",
}
LEFT_OUT = {"data", "command"}  # said in the table's heading and under it
# a value's standard error, shown beside it: value key -> its error's key
ERRORS = {"log_likelihood_ais_16x1000": "log_likelihood_ais_se", "log_likelihood": "log_likelihood_se",
          "accuracy": "accuracy_se"}


def data_name(description: str) -> str:
    """The data's file or folder name (files before this stored the path a command line was given)."""
    return PurePath(description).name or description if description else "-"


def kept_line(checkpoint) -> str | None:
    """Which epoch's weights the file plays, and by which measure it was kept."""
    from ..training.state import kept_epoch

    epoch = kept_epoch(checkpoint)
    if epoch is None:
        return None
    history = {record.epoch: record for record in checkpoint.history}
    record = history.get(epoch)
    training = checkpoint.training
    select_by = training.train_config.select_by if training else None
    if select_by == "ll" and record is not None and record.valid_ll is not None:
        why = (f"the best validation log-likelihood per step ({ll_text(record.valid_ll, record.valid_ll_se)}: a quick "
               f"AIS estimate on {training.train_config.select_frames:,} fixed valid frames, to compare epochs by)")
    elif select_by == "monitor" and record is not None and record.valid_monitor is not None:
        why = f"the best validation monitor (the tutorial's measure), {record.valid_monitor:.3f}"
    else:
        why = "the last epoch (no validation music to choose by)"
    of = f" of {training.progress.epochs_completed}" if training else ""
    return f"kept: epoch {epoch}{of}, {why}"


def evaluation_table(evaluation: dict[str, Any]) -> list[str]:
    """`eval --record`'s summary as aligned rows under a heading naming its data."""
    heading = "evaluation" + (f" on {evaluation['data']}" if evaluation.get("data") else "") + ":"
    rows = []
    for key, value in evaluation.items():
        if key in LEFT_OUT or key in ERRORS.values():
            continue
        label = EVALUATION_LABELS.get(key, key.replace("_", " "))
        error = evaluation.get(ERRORS.get(key, ""))
        if isinstance(value, float) and isinstance(error, float):
            shown = f"{value:.4f} ± {error:.4f}"
        else:
            shown = shown_value(value)
        rows.append((label, shown))
    width = max((len(label) for label, _ in rows), default=0)
    lines = [heading] + [f"  {label.ljust(width)}  {shown}" for label, shown in rows]
    if evaluation.get("command"):
        lines.append(f"  (measured by: {evaluation['command']})")
    return lines


def shown_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(shown_value(item) for item in value)
    return str(value)


def summary_lines(path, checkpoint) -> list[str]:
    """Everything info prints, line by line."""

    lines = [f"model: {path}",
             "  " + ", ".join(f"{k} {v}" for k, v in checkpoint.model_config.to_dict().items()),
             f"  parameters: {sum(v.numel() for v in checkpoint.model_state.values()):,}",
             f"data: {data_name(checkpoint.data.description)}",
             f"  time grid: {checkpoint.data.roll_settings.describe()}"]
    training = checkpoint.training
    if training is not None:
        progress, train = training.progress, training.train_config
        lines.append(f"training: {progress.epochs_completed} of {count_of(train.epochs, 'epoch')}, "
                     f"{format_seconds(progress.elapsed_seconds)} of training")
    kept = kept_line(checkpoint)
    if kept:
        lines.append("  " + kept)
    if checkpoint.history:
        last = checkpoint.history[-1]
        readings = [f"{label} {value:.3f}" for label, value in (("monitor", last.monitor),
                                                                ("valid monitor", last.valid_monitor),
                                                                ("valid LL", last.valid_ll)) if value is not None]
        if readings:
            lines.append(f"  last epoch ({last.epoch}): " + ", ".join(readings))
    if training is not None:
        partial = training.epoch_in_progress
        if partial:
            lines.append(f"  stopped during epoch {partial.epoch} after update {partial.step} "
                         f"(--resume continues from there)")
        lines.append("  settings: " + ", ".join(f"{k} {v}" for k, v in train.to_dict().items()))
    if checkpoint.training_problem:
        lines.append(f"training state: damaged, ignored ({checkpoint.training_problem})")
    if checkpoint.history_note:
        lines.append(f"history: {checkpoint.history_note}")
    if checkpoint.evaluation:
        lines += evaluation_table(checkpoint.evaluation)
    for name in ("recipe", "candidates"):
        value = getattr(checkpoint, name)
        if isinstance(value, dict):
            lines.append(f"{name}: " + "; ".join(f"{k.replace('_', ' ')} {shown_value(v)}" for k, v in value.items()))
        elif value:
            lines.append(f"{name}: {value}")
    lines.append(f"saved: {checkpoint.saved_at or '?'}")
    return lines
