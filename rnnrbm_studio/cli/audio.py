"""Audio files with the built-in synth: `render piece.mid out.wav` (generate's --wav renders the same way)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import int_in

PROGRAM = int_in(1, 128)
SOUNDFONT_HELP = ("the SoundFont (.sf2/.sf3) to play with (default: $RNNRBM_STUDIO_SOUNDFONT, else a General MIDI "
                  "one installed on the system, else the small one shipped with the app)")


def register(subparsers) -> None:
    render = subparsers.add_parser("render", help="render a MIDI file to a WAV file with the built-in synth")
    render.add_argument("midi", help="the .mid file to play")
    render.add_argument("out", help="the .wav file to write")
    render.add_argument("--soundfont", metavar="SF2", help=SOUNDFONT_HELP)
    render.add_argument("--program", type=PROGRAM, default=None,
                        help=f"play every part on this General MIDI program, {PROGRAM.span} (1 = piano; "
                             f"default: the file's own instruments)")
    render.set_defaults(handler=render_command)


def render_command(args: argparse.Namespace) -> int:
    from ..live.audio_render import render_midi_file

    out = checked_wav_path(args.out)
    result = render_midi_file(args.midi, out, soundfont=args.soundfont,
                              program=None if args.program is None else args.program - 1)
    print(f"wrote {out}: {result.seconds:.1f} s, {result.notes} notes, played with {result.soundfont}")
    return 0


def checked_wav_path(text: str) -> Path:
    """Where a WAV will be written, checked before any work (an existing folder, writable, not a device)."""
    from .engine import check_output_file

    out = Path(text)
    check_output_file(out)
    return out
