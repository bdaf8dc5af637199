"""Commands for live playback: `ports` lists MIDI outputs, `inputs` MIDI inputs, `play` composes live
on an output, alone or playing along with a musician on an input (docs/live.md)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path

from ..errors import StudioError
from ..music.dynamics import SUMMARY as DYNAMICS
from .options import float_in, int_in

log = logging.getLogger(__name__)

# Exit statuses of `play` (also in its --help): 0 after Ctrl+C or --seconds, the user's own ways of
# stopping it; 2 for an error (bad input, no MIDI system, the synth or the MIDI system went away
# while playing); 128 + the signal's number after SIGTERM (143) or SIGHUP (129), the shell's
# convention for "ended by that signal", so a supervisor or a script still sees how it ended.
EXIT_SIGNAL_BASE = 128
STOP_SIGNALS = ("SIGTERM", "SIGHUP")

# The ranges of `play`'s numbers: the player's own limits where they are tight (MIDI's), otherwise a
# sane span around what the window offers (tempo 20..400 as its spin box; temperature and Gibbs steps
# wider than its boxes, for experiments).
BPM = float_in(20, 400)
STEPS_PER_BEAT = int_in(1, 48)
SECONDS = float_in(0, 1e6, low_open=True)
TEMPERATURE = float_in(0.05, 20)
GIBBS_STEPS = int_in(1, 10_000)
SEED = int_in(0, 2**32 - 1)
VELOCITY = int_in(1, 127)
CHANNEL = int_in(1, 16)
PROGRAM = int_in(1, 128)
LATENCY_MS = float_in(-1000, 1000)
MAX_NOTES = int_in(1, 88)
ANSWER_AFTER = float_in(0.25, 64)
ANSWER_BARS = int_in(1, 64)
BEATS_PER_BAR = int_in(1, 16)
NOTE_NAMES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}

PLAY_EPILOG = """\
Ctrl+C, SIGTERM and SIGHUP (the terminal closing) stop it cleanly: every note gets its note-off.
Exit status: 0 when stopped by Ctrl+C or --seconds; 2 on an error (also when the synth or the MIDI
system goes away while playing); 143 after SIGTERM, 129 after SIGHUP."""


def register(subparsers) -> None:
    ports = subparsers.add_parser("ports", help="list the MIDI outputs the music can be played on")
    ports.set_defaults(handler=ports_command)

    play = subparsers.add_parser(
        "play", help="compose live on a MIDI output (a synth); Ctrl+C stops",
        description="Compose live on a MIDI output. Ctrl+C stops cleanly: every note gets its note-off.",
        epilog=PLAY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    play.add_argument("model", nargs="?", help="a model file (default: the bundled model)")
    play.add_argument("--port", help="the output: a MIDI output's name or a unique part of one, or "
                      "\"Built-in synth\" (default: the first MIDI output, else the built-in synth)")
    play.add_argument("--soundfont", metavar="SF2",
                      help="the built-in synth's SoundFont (default: $RNNRBM_STUDIO_SOUNDFONT, else a General "
                           "MIDI one installed on the system, else the small one shipped with the app)")
    play.add_argument("--virtual", action="store_true",
                      help="create the virtual output 'RNN-RBM Studio' and play there (not on Windows)")
    play.add_argument("--bpm", type=BPM, default=None,
                      help=f"tempo in beats per minute, {BPM.span} (default 120, or the model's own pace if it "
                           f"was trained on a seconds grid)")
    play.add_argument("--steps-per-beat", type=STEPS_PER_BEAT, default=None,
                      help=f"frames per beat, {STEPS_PER_BEAT.span} (default: the model's training grid, usually 2)")
    play.add_argument("--seconds", type=SECONDS, default=None,
                      help=f"stop after this long, {SECONDS.span} (default: until Ctrl+C)")
    play.add_argument("--primer", help="a MIDI file whose music the playing continues")
    play.add_argument("--record", metavar="OUT.mid", help="save what was played as a MIDI file")
    play.add_argument("--temperature", type=TEMPERATURE, default=1.0,
                      help=f"sampling temperature, {TEMPERATURE.span} (1 = the model)")
    play.add_argument("--sampler", choices=("fast", "exact"), default="fast",
                      help="how each frame is sampled: fast (the default) starts its Gibbs chain at the RNN's own "
                           "guess and runs 25 steps; exact is the tutorial's chain from silence with the model's "
                           "stored steps (the bundled model's 1,000: about 26x slower)")
    play.add_argument("--gibbs-steps", type=GIBBS_STEPS, default=None,
                      help=f"Gibbs steps per frame, {GIBBS_STEPS.span} (default: the sampler's, 25 or the model's; "
                           f"playing along: 100 at most)")
    play.add_argument("--seed", type=SEED, default=None, help=f"seed for reproducible music, {SEED.span}")
    play.add_argument("--velocity", type=VELOCITY, default=80, help=f"note-on velocity {VELOCITY.span} (default 80)")
    play.add_argument("--dynamics", action=argparse.BooleanOptionalAction, default=True,
                      help=f"shape each note's velocity around --velocity: {DYNAMICS} (default on)")
    play.add_argument("--channel", type=CHANNEL, default=1, help=f"MIDI channel {CHANNEL.span} (default 1)")
    play.add_argument("--program", type=PROGRAM, default=1, help=f"GM program {PROGRAM.span} (default 1, piano)")
    play.add_argument("--restrike", action="store_true", help="strike held keys again at every frame")
    play.add_argument("--latency-ms", type=LATENCY_MS, default=0.0,
                      help=f"shift every note by this much, {LATENCY_MS.span} ms (negative: earlier)")
    along = play.add_argument_group("playing along with a musician (a MIDI keyboard)")
    along.add_argument("--input", help="the MIDI input to listen to (a name or a unique part of one; "
                                       "see `rnnrbm-studio inputs`)")
    along.add_argument("--virtual-input", action="store_true",
                       help="create the virtual input 'RNN-RBM Studio In' and listen there (not on Windows)")
    along.add_argument("--mode", choices=("solo", "accompany", "answer"), default="solo",
                       help="solo: the model plays alone (the input may still move knobs or send clock); "
                            "accompany: it fills in around the keys held; answer: call and response")
    along.add_argument("--split", type=note_number, default=None,
                       help="the model plays only below this note (a MIDI number 1..127 or a name: C4 = 60)")
    along.add_argument("--max-notes", type=MAX_NOTES, default=None,
                       help=f"the model's notes per frame at most, {MAX_NOTES.span}")
    along.add_argument("--answer-after", type=ANSWER_AFTER, default=2.0,
                       help=f"answer after this many beats of silence, {ANSWER_AFTER.span} (default 2)")
    along.add_argument("--answer-bars", type=ANSWER_BARS, default=None,
                       help=f"answers last this many bars, {ANSWER_BARS.span} (default: as long as the call, "
                            "at most 8)")
    along.add_argument("--beats-per-bar", type=BEATS_PER_BAR, default=4,
                       help=f"beats in a bar, {BEATS_PER_BAR.span} (default 4)")
    along.add_argument("--clock-in", action="store_true",
                       help="follow the MIDI clock and Start/Stop/Continue on the input (a DAW as master): "
                            "waits for Start")
    along.add_argument("--cc", action="append", default=[], metavar="PARAMETER=CONTROLLER",
                       help="a knob on the input moves a parameter: temperature, bpm, gibbs_steps, play "
                            "(play/stop), mode; e.g. --cc temperature=74 --cc bpm=75")
    play.set_defaults(handler=play_command)

    inputs = subparsers.add_parser("inputs", help="list the MIDI inputs (keyboards) play --input can listen to")
    inputs.set_defaults(handler=inputs_command)


def ports_command(args: argparse.Namespace) -> int:
    from ..live import outputs, ports

    with ports.quiet_native_stderr(not getattr(args, "verbose", False)):
        names, problem = outputs.list_outputs()
    for name in names:
        print(name)
    if problem:
        # one line: the built-in synth plays anyway; a MIDI synth is the user's choice
        print(f"({problem}; the built-in synth plays through the speakers)", file=sys.stderr)
    return 0


def inputs_command(args: argparse.Namespace) -> int:
    from ..live import midi_input, ports

    with ports.quiet_native_stderr(not getattr(args, "verbose", False)):
        names = midi_input.list_input_ports()
    for name in names:
        print(name)
    if not names:
        print("no MIDI input ports: connect a keyboard, or use play --virtual-input", file=sys.stderr)
    return 0


class _NoteNumber(type(int_in(1, 127))):
    """A MIDI note from '60' or a name ('C4' = 60, 'F#3', 'Bb2'); an argparse type with its range."""

    def __call__(self, text: str) -> int:
        word = str(text).strip()
        name = word[:1].lower()
        if name in NOTE_NAMES and len(word) > 1:
            rest, shift = word[1:], 0
            while rest[:1] in ("#", "b"):
                shift += 1 if rest[0] == "#" else -1
                rest = rest[1:]
            try:
                word = str(12 * (int(rest) + 1) + NOTE_NAMES[name] + shift)
            except ValueError:
                raise self._reject(text) from None
        try:
            return super().__call__(word)
        except argparse.ArgumentTypeError:
            raise self._reject(text) from None

    def _problem(self) -> str:
        return f"must be a MIDI note from {self.low} to {self.high} or a name such as C4 (60)"


note_number = _NoteNumber(1, 127)


class StopSignal(BaseException):
    """SIGTERM or SIGHUP arrived: stop as after Ctrl+C. A BaseException, like KeyboardInterrupt, so
    that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """While `play` runs: SIGTERM and SIGHUP raise StopSignal in the main thread, once; from then on
    they are ignored, so that a second one (a closing terminal may send several) cannot cut the
    note-offs short. The previous handlers come back at the end."""

    def __init__(self):
        self._saved: dict[int, object] = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach only the main thread's handlers; nothing to install
        for name in STOP_SIGNALS:
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) is not signal.SIG_IGN:  # nohup's stays ignored
                self._saved[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.ignore()
        raise StopSignal(signum)

    def ignore(self) -> None:
        for number in self._saved:
            signal.signal(number, signal.SIG_IGN)

    def __exit__(self, *exc_info) -> None:
        for number, previous in self._saved.items():
            signal.signal(number, previous)


def _say(text: str) -> None:
    """A line on stderr; after SIGHUP the terminal is gone and writing to it fails: say nothing then."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def play_command(args: argparse.Namespace) -> int:
    with _StopSignals() as signals:
        try:
            return _play(args, signals)
        except StopSignal as stop:
            # before anything played (while loading, opening the port): nothing to release
            _say(f"rnnrbm-studio: stopped by {signal.Signals(stop.signum).name}")
            return EXIT_SIGNAL_BASE + stop.signum


def _play(args: argparse.Namespace, signals: _StopSignals) -> int:
    from ..live import outputs, ports
    from ..live.builtin_synth import SynthSettings
    from ..live.player import LivePlayer
    from ..music.primer import read_primer
    from ..training.checkpoint import load_model, roll_settings_of
    from .engine import model_path_or_default

    record = check_record_path(args.record) if args.record else None  # before anything is played
    model, payload = load_model(model_path_or_default(args.model))
    grid = roll_settings_of(payload)
    settings = playback_settings(args, grid)
    along = playalong_settings(args)
    # the primer is read as the model's music was (its grid, its keys), whatever the playing tempo
    primer = read_primer(args.primer, grid, label="--primer") if args.primer else None

    with ports.quiet_native_stderr(not getattr(args, "verbose", False)):
        if args.virtual:
            port = outputs.open_output_port(virtual=True)
        else:
            try:
                port = outputs.open_output_port(args.port, synth=SynthSettings(soundfont=args.soundfont))
            except ports.PortError as error:
                if args.port is None:
                    raise ports.PortError(f"{error}. See `rnnrbm-studio ports`; or use --virtual") from None
                raise
    if getattr(port, "notice", None):
        _say(f"rnnrbm-studio: {port.notice}")
    errors: list[str] = []
    stopped = threading.Event()
    stop_signal: StopSignal | None = None
    midi_input = None
    try:
        try:
            player = LivePlayer(model, port, settings, on_error=errors.append, on_stopped=lambda reason: stopped.set(),
                                playalong=along)
        except ValueError as error:  # a model whose keys are not MIDI notes
            raise StudioError(str(error)) from None
        # Ctrl+C or a signal may come as soon as the first notes sound, before the wait has begun
        try:
            if primer is not None:
                player.prime(primer)
            midi_input = _listen(args, player, errors, stopped)
            where = f"the virtual port {port.name!r}" if args.virtual else repr(port.name)
            heard = f"; listening to {midi_input.name!r} ({along.mode})" if midi_input is not None else ""
            if args.clock_in:
                _say(f"waiting for Start on {midi_input.name!r} to play on {where}; Ctrl+C stops")
            else:
                player.start()
                _say(f"playing on {where} at {settings.bpm:g} BPM, {settings.steps_per_beat} steps per beat"
                     + heard + (f" for {args.seconds:g} s" if args.seconds else "") + "; Ctrl+C stops")
            _wait(stopped, args.seconds)
        except KeyboardInterrupt:
            _say("stopping")
        except StopSignal as stop:
            stop_signal = stop
            _say(f"stopping ({signal.Signals(stop.signum).name})")
        finally:
            signals.ignore()  # from here on nothing may cut the note-offs short
            player.stop()  # note-offs, All Notes Off; also done at exit if this is interrupted again
        if record is not None:
            _save_recording(player, record)
    finally:
        if midi_input is not None:
            midi_input.close()
        port.close()
    if errors:
        raise StudioError(errors[0])
    if stop_signal is not None:
        _say(f"rnnrbm-studio: stopped by {signal.Signals(stop_signal.signum).name}")
        return EXIT_SIGNAL_BASE + stop_signal.signum
    return 0


def check_record_path(text: str) -> Path:
    """Where --record will write, checked before playing so that a take is never lost to a bad path:
    a regular file or a new name, in an existing folder we can write to. A symbolic link is followed
    (the file it points to is replaced, not the link)."""
    from ..music.atomic_files import check_writable

    path = Path(os.path.realpath(text))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise StudioError(f"--record {text}: {error.strerror or error}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise StudioError(f"--record {text}: is a folder; give a file name such as take.mid")
    if mode is not None and not stat.S_ISREG(mode):
        raise StudioError(f"--record {text}: not a regular file (a pipe or a device); give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise StudioError(f"--record {text}: the folder {str(folder)!r} does not exist")
    try:
        check_writable(path)  # the recording's temporary file, made and removed as the real write will
    except StudioError as error:
        raise StudioError(f"--record {text}: {error}") from None
    return path


def playback_settings(args: argparse.Namespace, grid):
    """`play`'s options as PlaybackSettings on the model's time grid (channel and program counted
    from 1 on the command line, from 0 in MIDI). StudioError for a combination out of range."""
    from ..live.settings import SAMPLERS, PlaybackSettings

    try:
        return PlaybackSettings.for_model(
            grid, bpm=args.bpm, steps_per_beat=args.steps_per_beat, gibbs_steps=args.gibbs_steps,
            chain_start=SAMPLERS[args.sampler],
            temperature=args.temperature, velocity=args.velocity, dynamics=args.dynamics, channel=args.channel - 1,
            program=args.program - 1, restrike=args.restrike, latency_offset=args.latency_ms / 1000.0,
            seed=args.seed)
    except ValueError as error:
        raise StudioError(str(error)) from None


def playalong_settings(args: argparse.Namespace):
    """`play`'s play-along options as PlayAlongSettings; StudioError when the mode needs an input."""
    from ..live.playalong import PlayAlongSettings

    listening = args.input is not None or args.virtual_input
    if args.input is not None and args.virtual_input:
        raise StudioError("give either --input NAME or --virtual-input, not both")
    for wanted, option in ((args.mode != "solo", f"--mode {args.mode}"), (args.clock_in, "--clock-in"),
                           (bool(args.cc), "--cc")):
        if wanted and not listening:
            raise StudioError(f"{option} listens to a MIDI input: add --input NAME (see `rnnrbm-studio inputs`) "
                              "or --virtual-input")
    try:
        return PlayAlongSettings(mode=args.mode, split=args.split, max_notes=args.max_notes,
                                 answer_after_beats=args.answer_after, answer_bars=args.answer_bars,
                                 beats_per_bar=args.beats_per_bar)
    except ValueError as error:
        raise StudioError(str(error)) from None


def _listen(args: argparse.Namespace, player, errors: list[str], stopped: threading.Event):
    """Open the input `play` listens to (None without one) and connect the musician's notes, the knobs
    (--cc) and the clock (--clock-in) to the player."""
    from ..live import cc_map, midi_clock, midi_input, ports

    if args.input is None and not args.virtual_input:
        return None
    knobs = cc_map.CcMap.parse(args.cc) if args.cc else None  # before opening anything
    with ports.quiet_native_stderr(not getattr(args, "verbose", False)):
        opened = midi_input.open_input(args.input, virtual=args.virtual_input)
    player.listen_to(opened)
    if knobs is not None:
        opened.add_listener(cc_map.CcListener(knobs, lambda change: _apply_knob(player, change)).message)
    if args.clock_in:
        opened.add_listener(midi_clock.drive_player(player, on_error=errors.append).message)
    return opened


def _apply_knob(player, change) -> None:
    """A knob moved (on the input's thread): a new setting, or play/stop (a pause: `play` goes on)."""
    from ..live.cc_map import apply_change

    if change.parameter == "play":
        if player.state == "playing":
            player.pause()
        elif player.state == "paused":
            player.resume()
        else:
            player.start()
        return
    settings, along = apply_change(change, player.settings, player.playalong)
    if settings != player.settings:
        player.update(settings)
    if along != player.playalong:
        player.set_playalong(along)


def _save_recording(player, path: Path) -> None:
    try:
        player.export_midi(path)  # written to a temporary file and renamed: never half a file
    except OSError as error:
        raise StudioError(f"cannot save the recording to {str(path)!r} ({error.strerror or error})") from None
    _say(f"recorded {player.frames_played} frames to {path}")


def _wait(stopped: threading.Event, seconds: float | None) -> None:
    """Until the player stops by itself or `seconds` pass; in short waits so Ctrl+C is seen at once."""
    end = None if seconds is None else time.monotonic() + seconds
    while not stopped.is_set():
        remaining = 0.2 if end is None else min(0.2, end - time.monotonic())
        if remaining <= 0:
            return
        stopped.wait(remaining)
