"""Fakes and checks for the window's tests: an in-memory MIDI port, and a Qt leak check."""
from __future__ import annotations

import threading

from PySide6 import QtCore

from rnnrbm_studio.live.output_port import BaseOutputPort


class FakePort(BaseOutputPort):
    """Records what is sent, like a mido output port would carry it."""

    def __init__(self, name: str):
        super().__init__(name)
        self._lock = threading.Lock()
        self._messages = []

    def send(self, message) -> None:
        with self._lock:
            self._messages.append(message.copy())

    @property
    def messages(self) -> list:
        with self._lock:
            return list(self._messages)


class FakePortProvider:
    def __init__(self, names: list[str] | None = None):
        self._names = ["Fake Synth"] if names is None else names
        self.opened: list[FakePort] = []

    def names(self) -> list[str]:
        return list(self._names)

    def open(self, name: str) -> FakePort:
        port = FakePort(name)
        self.opened.append(port)
        return port

    def help_text(self) -> str:
        return "No MIDI output found: start a synth (e.g. FluidSynth) or JACK, or use the virtual port."


def assert_no_qt_leaks(window) -> None:
    """After close: no timer of the window still active, no worker thread still running."""
    active = [f"{t.objectName() or t} (in {type(t.parent()).__name__})" for t in window.findChildren(QtCore.QTimer)
              if t.isActive()]
    assert not active, f"timers left running after close: {active}"
    for handle in (window.loader, window.training):
        assert handle is None or not handle.is_running(), "a worker thread is still running after close"
    unfinished = [handle.name for handle in window.workers.handles() if handle.thread_running()]
    assert not unfinished, f"worker threads still running after close: {unfinished}"
    assert not window.workers.running(), "a job of the window's registry is still running after close"
    player = window.playback.live.player
    assert player is None or player.state == "stopped", "the player is still playing after close"
