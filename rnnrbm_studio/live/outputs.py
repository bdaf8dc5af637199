"""Opening the output to play on: the built-in synth, or a MIDI output in a sender process (the
default for MIDI) or in this process.

Above ports.py (ports in this process), sender.py (the sender process, which opens its own port
through ports.py) and builtin_synth.py, so that none of them needs another to be imported first.
"""
from __future__ import annotations

from .builtin_synth import BUILTIN_SYNTH_NAME, BuiltinSynthPort, SynthSettings, is_builtin_synth
from .output_port import BaseOutputPort, PortError
from .ports import list_output_ports, open_port_in_process
from .sender import SenderProcessPort

# ALSA lists its "Midi Through" port on every Linux desktop: it leads to no sound, so it is not a
# reason to prefer a MIDI output over the built-in synth
_SILENT_MIDI_OUTPUTS = ("midi through",)


def list_outputs() -> tuple[list[str], str | None]:
    """(every output one can play on: the MIDI outputs, then the built-in synth; why there are no
    MIDI outputs, or None). The MIDI outputs are [] when no MIDI system works."""
    try:
        names = list_output_ports()
        problem = None if names else "no MIDI output ports"
    except PortError as error:
        names, problem = [], str(error)
    return names + [BUILTIN_SYNTH_NAME], problem


def default_output(names: list[str]) -> str:
    """What plays when the user named nothing: the first MIDI output that leads to a synth, else the built-in synth."""
    for name in names:
        if name != BUILTIN_SYNTH_NAME and not name.lower().startswith(_SILENT_MIDI_OUTPUTS):
            return name
    return BUILTIN_SYNTH_NAME


def open_output_port(name: str | None = None, *, virtual: bool = False, separate_process: bool = True,
                     synth: SynthSettings | None = None) -> BaseOutputPort:
    """Open the output called `name` (exact, else a unique case-insensitive part of a name; "built-in
    synth" is the built-in synth), the default output (default_output) when name is None, or a new
    virtual output "RNN-RBM Studio" when virtual is True. `synth` sets up the built-in synth.

    separate_process (the default): a MIDI port lives in a sender process (SenderProcessPort), out of
    reach of this process's GIL; else a ports.OutputPort in this process. The built-in synth always
    lives here: its audio runs in FluidSynth's own thread. Raises PortError."""
    if not virtual and name is None:
        name = default_output(list_outputs()[0])
    if not virtual and is_builtin_synth(name):
        return BuiltinSynthPort(synth)
    if separate_process:
        return SenderProcessPort(name, virtual=virtual)
    return open_port_in_process(name, virtual=virtual)


__all__ = ["open_output_port", "list_outputs", "default_output", "BUILTIN_SYNTH_NAME"]
