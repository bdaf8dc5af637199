"""Knobs: MIDI controllers mapped to the player's parameters.

A CcMap says which controller number (0..119; 120..127 are channel-mode messages) moves which
parameter. The command line builds one from `--cc temperature=74 --cc bpm=75` (parse), the window
from MIDI learn (with(), and format() to keep it in QSettings); both feed it controller messages
(`message(time, data)` as an input listener, or apply(controller, value)), which become changes:

- temperature: 0..127 -> 0.25..4, on a log scale (64 is about 1, the model itself);
- bpm: 0..127 -> 40..240 bpm, linearly;
- gibbs_steps: 0..127 -> 1..1000, on a log scale;
- play: a press (a value of 64 or more after one below) toggles play / stop, as pads and buttons
  send 127 when pressed and 0 when released;
- mode: 0..127 in three ranges -> solo, accompany, answer.

apply_change() turns a change into new PlaybackSettings / PlayAlongSettings for the player; the
caller applies play/stop.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from ..errors import StudioError
from .playalong import MODES, PlayAlongSettings
from .settings import PlaybackSettings

PARAMETERS = ("temperature", "bpm", "gibbs_steps", "play", "mode")
ALIASES = {"tempo": "bpm", "gibbs": "gibbs_steps", "gibbs-steps": "gibbs_steps", "play-stop": "play",
           "play_stop": "play"}
MAX_CONTROLLER = 119
TEMPERATURE_RANGE = (0.25, 4.0)
BPM_RANGE = (40.0, 240.0)
GIBBS_RANGE = (1, 1000)


class CcMapError(StudioError, ValueError):
    """A mapping that cannot be: one line for the user."""


@dataclass(frozen=True)
class CcChange:
    parameter: str  # one of PARAMETERS
    value: float | int | str | bool  # temperature/bpm: float, gibbs_steps: int, mode: str, play: True (toggle)


@dataclass(frozen=True)
class CcMap:
    """controller -> parameter; immutable (with() and without() make new maps)."""

    bindings: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for controller, parameter in self.bindings.items():
            if not (isinstance(controller, int) and 0 <= controller <= MAX_CONTROLLER):
                raise CcMapError(f"a controller number is from 0 to {MAX_CONTROLLER}, not {controller!r}")
            if parameter not in PARAMETERS:
                raise CcMapError(f"no parameter {parameter!r}; choose from {', '.join(PARAMETERS)}")
            if parameter in seen:
                raise CcMapError(f"{parameter} is mapped twice (controllers {seen[parameter]} and {controller})")
            seen[parameter] = controller
        object.__setattr__(self, "bindings", dict(self.bindings))

    # -------------------------------------------------------------------- making one
    @classmethod
    def parse(cls, items: Iterable[str]) -> "CcMap":
        """From 'parameter=controller' items (also comma-separated in one item): 'temperature=74'."""
        bindings: dict[int, str] = {}
        for item in items:
            for part in (p.strip() for p in str(item).split(",")):
                if not part:
                    continue
                name, equals, number = part.partition("=")
                if not equals:
                    raise CcMapError(f"{part!r}: write PARAMETER=CONTROLLER, e.g. temperature=74")
                parameter = canonical_parameter(name)
                try:
                    controller = int(number.strip())
                except ValueError:
                    raise CcMapError(f"{part!r}: the controller must be a number from 0 to {MAX_CONTROLLER}") from None
                if controller in bindings:
                    raise CcMapError(f"controller {controller} is mapped twice ({bindings[controller]} and {parameter})")
                bindings[controller] = parameter
        return cls(bindings)

    def format(self) -> str:
        """The map as parse() reads it: 'bpm=75,temperature=74' (stable order)."""
        return ",".join(f"{parameter}={controller}" for controller, parameter in
                        sorted(self.bindings.items(), key=lambda item: item[1]))

    def with_binding(self, controller: int, parameter: str) -> "CcMap":
        """MIDI learn: `controller` now moves `parameter` (its old controller, and the controller's
        old parameter, are dropped)."""
        parameter = canonical_parameter(parameter)
        kept = {c: p for c, p in self.bindings.items() if c != controller and p != parameter}
        return CcMap({**kept, int(controller): parameter})

    def without(self, parameter: str) -> "CcMap":
        parameter = canonical_parameter(parameter)
        return CcMap({c: p for c, p in self.bindings.items() if p != parameter})

    def controller_of(self, parameter: str) -> int | None:
        parameter = canonical_parameter(parameter)
        return next((c for c, p in self.bindings.items() if p == parameter), None)

    # -------------------------------------------------------------------- using one
    def apply(self, controller: int, value: int, previous: int | None = None) -> CcChange | None:
        """The change a controller's value (0..127) makes, or None (not mapped; a button released).
        `previous`: the controller's last value, for play's press detection (None: unknown)."""
        parameter = self.bindings.get(int(controller))
        if parameter is None:
            return None
        value = min(127, max(0, int(value)))
        fraction = value / 127.0
        if parameter == "temperature":
            low, high = TEMPERATURE_RANGE
            return CcChange(parameter, round(low * (high / low) ** fraction, 3))
        if parameter == "bpm":
            low, high = BPM_RANGE
            return CcChange(parameter, round(low + (high - low) * fraction, 1))
        if parameter == "gibbs_steps":
            low, high = GIBBS_RANGE
            return CcChange(parameter, int(round(low * (high / low) ** fraction)))
        if parameter == "mode":
            return CcChange(parameter, MODES[min(len(MODES) - 1, value * len(MODES) // 128)])
        pressed = value >= 64 and (previous is None or previous < 64)
        return CcChange(parameter, True) if pressed else None


def canonical_parameter(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in PARAMETERS:
        raise CcMapError(f"no parameter {name.strip()!r} for a controller; choose from {', '.join(PARAMETERS)}")
    return key


def apply_change(change: CcChange, settings: PlaybackSettings,
                 playalong: PlayAlongSettings) -> tuple[PlaybackSettings, PlayAlongSettings]:
    """New settings after `change` (play toggles are the caller's: settings come back unchanged)."""
    if change.parameter in ("temperature", "bpm", "gibbs_steps"):
        return replace(settings, **{change.parameter: change.value}), playalong
    if change.parameter == "mode":
        return settings, replace(playalong, mode=change.value)
    return settings, playalong


class CcListener:
    """An input listener (time, message) turning control changes into on_change(CcChange) calls,
    remembering each controller's last value (for play's presses). `cc_map` may be replaced at
    any time (MIDI learn); on_learn(controller), when set, hears every controller first."""

    def __init__(self, cc_map: CcMap, on_change: Callable[[CcChange], object],
                 on_learn: Callable[[int], object] | None = None):
        self.cc_map, self.on_change, self.on_learn = cc_map, on_change, on_learn
        self._last: dict[int, int] = {}

    def message(self, time: float, data) -> bool:
        if len(data) < 3 or data[0] & 0xF0 != 0xB0 or data[1] > MAX_CONTROLLER:
            return False
        controller, value = data[1], data[2]
        if self.on_learn is not None:
            self.on_learn(controller)
        change = self.cc_map.apply(controller, value, self._last.get(controller))
        self._last[controller] = value
        if change is not None:
            self.on_change(change)
        return change is not None


__all__ = ["CcMap", "CcChange", "CcListener", "CcMapError", "PARAMETERS", "apply_change", "canonical_parameter"]
