"""The window's MIDI inputs: which there are (an injectable provider, as outputs have PortProvider in
live_controller.py), and one relay that the player listens to, whichever input is chosen.

The relay exists because the player listens for its whole life (LivePlayer.listen_to has no undo)
while the user changes inputs: the player listens to the relay once, and the relay passes on the
events of the input open now. Its listeners run on the input's thread (midi_input.py); those that
touch the window emit Qt signals (ui/playalong_section.py).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Protocol

from ..live import midi_input, ports

log = logging.getLogger(__name__)

VIRTUAL_INPUT_LABEL = f"{midi_input.VIRTUAL_INPUT_NAME} (virtual input)"

Listener = Callable[[float, list], object]


class InputProvider(Protocol):
    def names(self) -> list[str]: ...  # PortError (a StudioError) when no MIDI system works

    def open(self, name: str): ...  # add_listener, remove_listener, problem(), close(), name; PortError


class SystemInputProvider:
    """The machine's MIDI inputs, then the virtual input "RNN-RBM Studio In" where the platform has
    one. The app's own ports are left out: listening to its own output would feed it back to itself."""

    def names(self) -> list[str]:
        found = [name for name in midi_input.list_input_ports() if not name.startswith(ports.VIRTUAL_PORT_NAME)]
        return found + ([VIRTUAL_INPUT_LABEL] if ports.virtual_ports_supported() else [])

    def open(self, name: str):
        if name == VIRTUAL_INPUT_LABEL:
            return midi_input.open_input(virtual=True)
        return midi_input.open_input(name)


class InputRelay:
    """An input for the player (add_listener, remove_listener, problem) that passes on the events of
    the input attached now. Thread-safe: the input's thread calls the listeners, the player's thread
    asks problem(), the GUI thread attaches and detaches."""

    def __init__(self):
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()
        self._input = None
        self.lost: str | None = None  # the problem() that made the player stop, if any

    @property
    def input(self):
        return self._input

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = tuple(known for known in self._listeners if known != listener)

    def attach(self, opened) -> None:
        """Pass on `opened`'s events from now on (detach() the one before)."""
        with self._lock:
            self._input, self.lost = opened, None
        opened.add_listener(self._dispatch)

    def detach(self):
        """Stop passing on the attached input's events; returns it (the caller closes it) or None."""
        with self._lock:
            opened, self._input, self.lost = self._input, None, None
        if opened is not None:
            opened.remove_listener(self._dispatch)
        return opened

    def _dispatch(self, time: float, data) -> None:
        for listener in self._listeners:  # a tuple: replaced, never changed, while we loop
            try:
                listener(time, data)
            except Exception:
                log.exception("a play-along listener failed")

    def problem(self) -> str | None:
        """The attached input's problem (unplugged, JACK gone), remembered in `lost`; None without one."""
        opened = self._input
        problem = opened.problem() if opened is not None else None
        if problem:
            self.lost = problem
        return problem


__all__ = ["InputProvider", "InputRelay", "SystemInputProvider", "VIRTUAL_INPUT_LABEL"]
