"""Saving and restoring the values of input widgets in QSettings (spin boxes, check boxes, combos)."""
from __future__ import annotations

import logging

from PySide6 import QtCore, QtWidgets

log = logging.getLogger(__name__)


def save_widgets(settings: QtCore.QSettings, widgets: dict[str, QtWidgets.QWidget]) -> None:
    for key, widget in widgets.items():
        if isinstance(widget, QtWidgets.QAbstractButton):
            settings.setValue(key, widget.isChecked())
        elif isinstance(widget, QtWidgets.QComboBox):
            settings.setValue(key, widget.currentText())
        else:
            settings.setValue(key, widget.value())


def restore_widgets(settings: QtCore.QSettings, widgets: dict[str, QtWidgets.QWidget]) -> None:
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
