"""Measures how long the event loop is kept from running: the window's responsiveness.

A timer asks to fire every `interval_ms`; any extra delay between two firings is time the loop was
blocked (by our code or by waiting for the GIL). The longest such stall is what a user feels.
"""
from __future__ import annotations

import time

from PySide6 import QtCore


class StallMonitor(QtCore.QObject):
    def __init__(self, parent=None, interval_ms: int = 10):
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.max_stall_ms = 0.0
        self.samples = 0
        self._last = time.perf_counter()
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def reset(self) -> None:
        self.max_stall_ms = 0.0
        self.samples = 0
        self._last = time.perf_counter()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        stall = (now - self._last) * 1000.0 - self.interval_ms
        self._last = now
        self.samples += 1
        if stall > self.max_stall_ms:
            self.max_stall_ms = stall
