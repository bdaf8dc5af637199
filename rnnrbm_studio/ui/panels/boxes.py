"""The panels' number boxes: a range, a start value and a tooltip in one call."""
from __future__ import annotations

from PySide6 import QtWidgets


def spin_box(minimum, maximum, value, tooltip, step=1) -> QtWidgets.QSpinBox:
    box = QtWidgets.QSpinBox()
    box.setRange(minimum, maximum)
    box.setValue(value)
    box.setSingleStep(step)
    box.setToolTip(tooltip)
    return box


def double_spin_box(minimum, maximum, value, decimals, tooltip, step) -> QtWidgets.QDoubleSpinBox:
    box = QtWidgets.QDoubleSpinBox()
    box.setRange(minimum, maximum)
    box.setDecimals(decimals)
    box.setValue(value)
    box.setSingleStep(step)
    box.setToolTip(tooltip)
    return box
