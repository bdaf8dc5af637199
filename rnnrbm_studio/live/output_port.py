"""What every MIDI output of the app is, and the MIDI facts that all of them share.

The port opened in this process (ports.OutputPort), the port in a sender process
(sender.SenderProcessPort) and the stand-ins of tests and screenshots all derive from
BaseOutputPort, as mido's ports derive from mido.ports.BaseOutput. This module is below ports.py and
sender.py, so that the sender can open its port through ports.py without ports.py knowing the sender.
"""
from __future__ import annotations

import functools
from typing import Iterable

import mido

from ..errors import StudioError

ALL_NOTES_OFF = 123  # controller number


class PortError(StudioError):
    """No MIDI system, no such port, a port that cannot be opened: a one-line reason."""


class BaseOutputPort:
    """A MIDI output that the player can play on: send(), close(), closed, name, problem(), and
    `with port:` to close it at the end.

    Subclasses implement send() and, if they hold anything, _close(). A port that sends at given
    times itself (SenderProcessPort) also has `lead_time` and `send_at(deadline, messages, tag)`:
    the player then hands it each frame lead_time before its deadline.
    """

    name = ""
    system = ""  # the MIDI system it lives in ("JACK", "ALSA"...), where there is one
    virtual = False

    def __init__(self, name: str | None = None):
        if name is not None:
            self.name = name
        self.closed = False

    def send(self, message: mido.Message) -> None:
        raise NotImplementedError

    def problem(self) -> str | None:
        """None while the destination is there; else a one-line reason (the synth quit...). Asked
        a few times a second while playing: sending to a port that vanished often fails silently."""
        return None

    def close(self) -> None:
        """Close the port; closing it again does nothing."""
        if self.closed:
            return
        self.closed = True
        self._close()

    def _close(self) -> None:
        """Release what the port holds (nothing, here)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "virtual " if self.virtual else ""
        system = f" ({self.system})" if self.system else ""
        return f"<{kind}MIDI output {self.name!r}{system}>"


def all_notes_off_messages(channels: Iterable[int] = range(16)) -> tuple[mido.Message, ...]:
    """All Notes Off on each channel first (one message silences a channel in any GM synth, so it
    goes out even if a full port buffer drops what follows), then a note-off for every key."""
    return _all_notes_off_messages(tuple(channels))


@functools.lru_cache(maxsize=4)
def _all_notes_off_messages(channels: tuple[int, ...]) -> tuple[mido.Message, ...]:
    # built once: mido validates every field of every message, ~0.1 ms each, too slow for a panic
    messages = [mido.Message("control_change", channel=c, control=ALL_NOTES_OFF, value=0) for c in channels]
    messages += [mido.Message("note_off", channel=c, note=n, velocity=0) for c in channels for n in range(128)]
    return tuple(messages)


__all__ = ["ALL_NOTES_OFF", "PortError", "BaseOutputPort", "all_notes_off_messages"]
