"""The command line: `rnnrbm-studio [COMMAND]`; with no command it opens the window.

Each command lives in a small module with `register(subparsers)`; they call the engine and print.
User errors (StudioError) become one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import StudioError

log = logging.getLogger("rnnrbm_studio")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad options are one line, like every other user error: what is wrong and where the help is
    (argparse's own usage block buried the reason under a screen of options)."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"rnnrbm-studio: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import audio, engine, live, quality, stats

    parser = OneLineErrorParser(
        prog="rnnrbm-studio",
        description="Train the RNN-RBM on MIDI files and hear it compose live. "
                    "Without a command, opens the window with the bundled default model.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="open the window offscreen in a realistic state, save a screenshot, exit")
    parser.add_argument("--model", metavar="MODEL", help="with no command: the model the window opens")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    engine.register(subparsers)
    quality.register(subparsers)
    stats.register(subparsers)
    live.register(subparsers)
    audio.register(subparsers)
    return parser


def _printable_streams() -> None:
    """Let stdout and stderr print any text: a file name with bytes that are not UTF-8 reaches Python
    as lone surrogates, which the strict default turned into a UnicodeEncodeError traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    _printable_streams()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a bad option (already printed)
        return stop.code if isinstance(stop.code, int) else EXIT_USER_ERROR
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command not in (None, "ports"):  # the window configures itself
            from ..runtime import configure_threads

            configure_threads()
        if args.command is None:
            from ..ui.app import run_app

            return run_app(model_path=args.model, screenshot=args.screenshot)
        return int(args.handler(args) or 0)
    except StudioError as error:
        print(f"rnnrbm-studio: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:
        # what the file system says about a path a user gave (a name too long for it, a loop of links...)
        # where no check above put it in words: still one line, never a traceback
        print(f"rnnrbm-studio: error: {_describe_os_error(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rnnrbm-studio: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _describe_os_error(error: OSError) -> str:
    name = error.filename if error.filename is not None else ""
    shown = str(name)
    if len(shown) > 80:
        shown = shown[:60] + f"... ({len(shown)} characters)"
    reason = error.strerror or type(error).__name__
    return f"{shown}: {reason}" if shown else reason


def exit_main() -> None:
    sys.exit(main())
