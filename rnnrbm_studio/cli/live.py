"""Commands for live playback: `ports` lists MIDI outputs, `play` composes live on one."""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time

from ..errors import StudioError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    ports = subparsers.add_parser("ports", help="list the MIDI outputs the music can be played on")
    ports.set_defaults(handler=ports_command)

    play = subparsers.add_parser(
        "play", help="compose live on a MIDI output (a synth); Ctrl+C stops",
        description="Compose live on a MIDI output. Ctrl+C stops cleanly: every note gets its note-off.")
    play.add_argument("model", nargs="?", help="a model file (default: the bundled model)")
    play.add_argument("--port", help="the MIDI output (a name or a unique part of one; default: the first)")
    play.add_argument("--virtual", action="store_true",
                      help="create the virtual output 'RNN-RBM Studio' and play there (not on Windows)")
    play.add_argument("--bpm", type=float, default=120.0, help="tempo in beats per minute (default 120)")
    play.add_argument("--steps-per-beat", type=int, default=None,
                      help="frames per beat (default: the model's training grid, usually 2)")
    play.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl+C)")
    play.add_argument("--primer", help="a MIDI file whose music the playing continues")
    play.add_argument("--record", metavar="OUT.mid", help="save what was played as a MIDI file")
    play.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1 = the model)")
    play.add_argument("--gibbs-steps", type=int, default=None, help="Gibbs steps per frame (default: the model's)")
    play.add_argument("--seed", type=int, default=None, help="seed for reproducible music")
    play.add_argument("--velocity", type=int, default=80, help="note-on velocity 1..127 (default 80)")
    play.add_argument("--channel", type=int, default=1, help="MIDI channel 1..16 (default 1)")
    play.add_argument("--program", type=int, default=1, help="GM program 1..128 (default 1, piano)")
    play.add_argument("--restrike", action="store_true", help="strike held keys again at every frame")
    play.add_argument("--latency-ms", type=float, default=0.0, help="shift every note by this much (ms)")
    play.set_defaults(handler=play_command)


def ports_command(args: argparse.Namespace) -> int:
    from .. import ports

    with ports.quiet_native_stderr(not getattr(args, "verbose", False)):
        names = ports.list_output_ports()
    for name in names:
        print(name)
    if not names:
        print("no MIDI output ports\n" + ports.NO_PORT_HELP, file=sys.stderr)
    return 0


def play_command(args: argparse.Namespace) -> int:
    from .. import ports
    from ..checkpoint import load_model, roll_settings_of
    from ..pianoroll import RollSettings, read_midi
    from ..player import LivePlayer
    from .engine import model_path_or_default

    if not 1 <= args.channel <= 16:
        raise StudioError(f"--channel must be 1..16, not {args.channel}")
    if not 1 <= args.program <= 128:
        raise StudioError(f"--program must be 1..128, not {args.program}")
    model, payload = load_model(model_path_or_default(args.model))
    grid = roll_settings_of(payload)
    steps_per_beat = args.steps_per_beat or grid.steps_per_beat
    primer = read_midi(args.primer, RollSettings(steps_per_beat=steps_per_beat)).roll if args.primer else None

    with ports.quiet_native_stderr(not getattr(args, "verbose", False)):
        if args.virtual:
            port = ports.open_output_port(virtual=True)
        else:
            try:
                port = ports.open_output_port(args.port)
            except ports.PortError as error:
                if args.port is None:
                    raise ports.PortError(f"{error}. See `rnnrbm-studio ports`; or use --virtual") from None
                raise
    errors: list[str] = []
    stopped = threading.Event()
    try:
        try:
            player = LivePlayer(model, port, bpm=args.bpm, steps_per_beat=steps_per_beat, velocity=args.velocity,
                                channel=args.channel - 1, program=args.program - 1, restrike=args.restrike,
                                latency_offset=args.latency_ms / 1000.0, gibbs_steps=args.gibbs_steps,
                                temperature=args.temperature, seed=args.seed, on_error=errors.append,
                                on_stopped=lambda reason: stopped.set())
        except ValueError as error:
            raise StudioError(str(error)) from None
        # Ctrl+C may come as soon as the first notes sound, before the wait below has begun
        try:
            if primer is not None:
                player.prime(primer)
            player.start()
            where = f"the virtual port {port.name!r}" if args.virtual else repr(port.name)
            print(f"playing on {where} at {args.bpm:g} BPM, {steps_per_beat} steps per beat"
                  + (f" for {args.seconds:g} s" if args.seconds else "") + "; Ctrl+C stops", file=sys.stderr)
            _wait(stopped, args.seconds)
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
        finally:
            player.stop()  # note-offs, All Notes Off; also done at exit if this is interrupted again
        if args.record:
            player.export_midi(args.record)
            print(f"recorded {player.frames_played} frames to {args.record}", file=sys.stderr)
    finally:
        port.close()
    if errors:
        raise StudioError(errors[0])
    return 0


def _wait(stopped: threading.Event, seconds: float | None) -> None:
    """Until the player stops by itself or `seconds` pass; in short waits so Ctrl+C is seen at once."""
    end = None if seconds is None else time.monotonic() + seconds
    while not stopped.is_set():
        remaining = 0.2 if end is None else min(0.2, end - time.monotonic())
        if remaining <= 0:
            return
        stopped.wait(remaining)
