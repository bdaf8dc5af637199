"""The window's own choices in QSettings: its geometry and the values of the panels' input widgets
(spin boxes, check boxes, combos), saved on close and restored on start."""
from __future__ import annotations

import logging

from PySide6 import QtCore, QtWidgets

from .panels.live import LivePanel
from .panels.training import TrainingPanel

log = logging.getLogger(__name__)


def restore_window(settings: QtCore.QSettings, window: QtWidgets.QWidget, live: LivePanel,
                   training: TrainingPanel) -> None:
    geometry = settings.value("geometry")
    if geometry is not None:
        window.restoreGeometry(geometry)
    _restore_widgets(settings, _persisted_widgets(live, training))


def save_window(settings: QtCore.QSettings, window: QtWidgets.QWidget, live: LivePanel,
                training: TrainingPanel) -> None:
    settings.setValue("geometry", window.saveGeometry())
    _save_widgets(settings, _persisted_widgets(live, training))
    settings.sync()


def _persisted_widgets(live: LivePanel, training: TrainingPanel) -> dict[str, QtWidgets.QWidget]:
    return {"bpm": live.bpm, "temperature": live.temperature, "sampler": live.sampler,
            "follow_training": live.follow_training, "dynamics": live.dynamics, "training/hidden": training.hidden,
            "training/recurrent": training.recurrent, "training/cd_k": training.cd_k,
            "training/epochs": training.epochs, "training/batch_seqs": training.batch_seqs,
            "training/steps_per_beat": training.steps_per_beat,
            "training/learning_rate": training.learning_rate, "training/optimizer": training.optimizer,
            "training/recipe": training.recipe, "training/key_shift": training.key_shift}


def _save_widgets(settings: QtCore.QSettings, widgets: dict[str, QtWidgets.QWidget]) -> None:
    for key, widget in widgets.items():
        if isinstance(widget, QtWidgets.QAbstractButton):
            settings.setValue(key, widget.isChecked())
        elif isinstance(widget, QtWidgets.QComboBox):
            settings.setValue(key, widget.currentText())
        else:
            settings.setValue(key, widget.value())


def _restore_widgets(settings: QtCore.QSettings, widgets: dict[str, QtWidgets.QWidget]) -> None:
    for key, widget in widgets.items():
        value = settings.value(key)
        if value is None:
            continue
        try:
            if isinstance(widget, QtWidgets.QAbstractButton):
                widget.setChecked(str(value).lower() == "true")  # INI files give back strings
            elif isinstance(widget, QtWidgets.QComboBox):
                widget.setCurrentText(str(value))
            elif isinstance(widget, QtWidgets.QSpinBox):
                widget.setValue(int(float(value)))
            else:
                widget.setValue(float(value))
        except (TypeError, ValueError):  # a hand-edited or old settings file: keep the default
            log.info("ignoring setting %s=%r", key, value)
