"""Opening the MIDI output to play on: in a sender process (the default), or in this process.

Above ports.py (ports in this process) and sender.py (the sender process, which opens its own port
through ports.py), so that neither of the two needs the other to be imported first.
"""
from __future__ import annotations

from .output_port import BaseOutputPort
from .ports import open_port_in_process
from .sender import SenderProcessPort


def open_output_port(name: str | None = None, *, virtual: bool = False,
                     separate_process: bool = True) -> BaseOutputPort:
    """Open the output called `name` (exact, else a unique case-insensitive part of a name), the first
    output when name is None, or a new virtual output "RNN-RBM Studio" when virtual is True.

    separate_process (the default): the port lives in a sender process (SenderProcessPort), out of
    reach of this process's GIL; else a ports.OutputPort in this process. Raises PortError."""
    if separate_process:
        return SenderProcessPort(name, virtual=virtual)
    return open_port_in_process(name, virtual=virtual)


__all__ = ["open_output_port"]
