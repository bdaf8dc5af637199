"""Play along with real parts: a JACK server (dummy driver), FluidSynth, and a test keyboard (a raw
rtmidi output) that plays a known melody into the app's MIDI input in real time.

The keyboard is a device: it keeps its own time, sending each event at an absolute moment (as the
player does, waiting on an Event until then); the tests wait on what the app and the synth report.
"""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from jack_synth import (CHURCH_ORGAN, FakePort, JackServer, cli_outcome, fluidsynth, jack_server,  # noqa: F401
                        require_live_tools, start_cli, wait_until)
from rnnrbm_studio.assets import default_model_path
from rnnrbm_studio.live import midi_input, outputs
from rnnrbm_studio.live.clock import MonotonicClock
from rnnrbm_studio.live.midi_clock import drive_player
from rnnrbm_studio.live.player import LivePlayer
from rnnrbm_studio.live.playalong import PlayAlongSettings
from rnnrbm_studio.training.checkpoint import load_model

pytestmark = pytest.mark.jack

# F sharp major: far from the C major the bundled model was trained in, so that following the
# musician's key is not the model's habit
F_SHARP_MAJOR = {6, 8, 10, 11, 1, 3, 5}
MELODY = [66, 68, 70, 71, 73, 75, 77, 78, 77, 75, 73, 71, 70, 68, 66, 73]  # F#4 up an octave and back


class Keyboard:
    """A MIDI keyboard on JACK: a raw rtmidi output, virtual ("kbd:keys") or connected to a port."""

    def __init__(self, connect_to: str | None = None):
        import rtmidi

        self._out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "kbd")
        if connect_to is None:
            self._out.open_virtual_port("keys")
        else:
            names = self._out.get_ports()
            self._out.open_port(names.index(connect_to))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent: list[tuple[float, list[int]]] = []  # (perf_counter, message) as sent

    def play(self, events: list[tuple[float, list[int]]], start: float | None = None) -> None:
        """Send each (seconds from start, message) at its moment, from a thread of its own."""
        begin = time.perf_counter() + 0.05 if start is None else start

        def run() -> None:
            for offset, message in events:
                while not self._stop.is_set() and time.perf_counter() < begin + offset:
                    self._stop.wait(begin + offset - time.perf_counter())
                if self._stop.is_set():
                    return
                self._out.send_message(message)
                self.sent.append((time.perf_counter(), message))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 30) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the keyboard did not finish"

    def close(self) -> None:
        self._stop.set()
        self.wait()
        self._out.close_port()
        self._out.delete()


def melody_events(notes, beat: float, legato: float = 0.9, first: float = 0.0) -> list[tuple[float, list[int]]]:
    events = []
    for i, note in enumerate(notes):
        events += [(first + i * beat, [0x90, note, 90]), (first + (i + legato) * beat, [0x80, note, 0])]
    return sorted(events)


@pytest.fixture(scope="module")
def bundled():
    model, _ = load_model(default_model_path())
    return model


@pytest.fixture
def synth_port(fluidsynth):
    port = outputs.open_output_port("synth:midi_00", separate_process=False)
    try:
        yield port
    finally:
        port.close()


def in_key(notes) -> float:
    notes = list(notes)
    return sum(n % 12 in F_SHARP_MAJOR for n in notes) / max(1, len(notes))


def test_accompany_fills_in_around_the_melody_in_its_key_and_never_doubles_it(jack_server, fluidsynth, synth_port,
                                                                            bundled):
    app_input = midi_input.open_input(virtual=True)
    keyboard = Keyboard(connect_to="RNN-RBM Studio In:RNN-RBM Studio In")
    errors: list[str] = []
    player = LivePlayer(bundled, synth_port, bpm=240, steps_per_beat=2, seed=3, program=CHURCH_ORGAN,
                        dynamics=False, playalong=PlayAlongSettings(mode="accompany", max_notes=4),
                        on_error=errors.append)
    player.listen_to(app_input)
    try:
        player.start()
        keyboard.play(melody_events(MELODY, beat=0.25))
        keyboard.wait()
        wait_until(lambda: player.frames_played >= 40, 10, what="the melody's frames")
        player.stop()
        wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after stop")
    finally:
        player.stop()
        keyboard.close()
        app_input.close()
    assert errors == [] and app_input.received == 2 * len(MELODY)
    frames = player.drain_played_frames()
    heard = [f for f in frames if f.musician is not None and f.musician.any()]
    assert len(heard) >= len(MELODY)  # the musician was heard at the deadlines
    assert all(not (f.keys.astype(bool) & f.musician).any() for f in frames)  # never doubled
    played = [21 + int(k) for f in frames for k in np.flatnonzero(f.keys)]
    assert played, "the model played nothing"
    musician = player.musician_roll()
    assert {21 + int(k) for k in np.flatnonzero(musician.any(axis=0))} == set(MELODY)
    # the same model, alone, as many frames, in the same key? (measured here, not assumed)
    alone = bundled.generate(len(frames), seed=3, gibbs_steps=100)
    alone_notes = [21 + int(k) for frame in alone for k in np.flatnonzero(frame)]
    print(f"in F# major: accompanying {in_key(played):.2f}, alone {in_key(alone_notes):.2f}")
    assert in_key(played) > in_key(alone_notes), (in_key(played), in_key(alone_notes))


def test_answer_is_silent_during_the_call_and_answers_within_a_beat_of_the_silence(jack_server, fluidsynth,
                                                                                 synth_port, bundled):
    keyboard = Keyboard()
    app_input = midi_input.open_input("kbd")
    errors: list[str] = []
    beat = 0.25  # 240 BPM
    player = LivePlayer(bundled, synth_port, bpm=240, steps_per_beat=2, seed=5, program=CHURCH_ORGAN,
                        playalong=PlayAlongSettings(mode="answer", answer_after_beats=2, answer_bars=1),
                        on_error=errors.append)
    player.listen_to(app_input)
    try:
        player.start()
        keyboard.play(melody_events(MELODY[:8], beat=beat))
        keyboard.wait()
        wait_until(lambda: player.answering, 10, what="the answer")
        wait_until(lambda: not player.answering, 10, what="the answer's end")
        player.stop()
        wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after stop")
    finally:
        player.stop()
        keyboard.close()
        app_input.close()
    assert errors == []
    frames = player.drain_played_frames()
    call_end = player.folder.quiet_since()
    during_call = [f for f in frames if f.deadline < call_end + 2 * beat]
    assert during_call and not any(f.keys.any() for f in during_call)  # silent while listening
    answer = [f for f in frames if f.keys.any()]
    assert answer, "no answer"
    delay = answer[0].deadline - (call_end + 2 * beat)
    assert 0 <= delay <= beat, delay  # within one beat after the two beats of silence


def test_the_keyboard_unplugged_stops_the_player_with_a_message_and_no_note_left(jack_server, fluidsynth,
                                                                                synth_port, bundled):
    keyboard = Keyboard()
    app_input = midi_input.open_input("kbd:keys")
    errors, stopped = [], threading.Event()
    player = LivePlayer(bundled, synth_port, bpm=240, steps_per_beat=2, program=CHURCH_ORGAN, probe_interval=0.1,
                        playalong=PlayAlongSettings(mode="accompany"), on_error=errors.append,
                        on_stopped=lambda reason: stopped.set())
    player.listen_to(app_input)
    try:
        player.start()
        keyboard.play([(0.0, [0x90, 66, 90])])  # held: the model accompanies it
        wait_until(lambda: len(player.open_notes) > 0, 10, what="the accompaniment")
        keyboard.close()  # unplugged, the key still down
        assert stopped.wait(5), "the player kept listening to a keyboard that is gone"
        wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after the input went away")
    finally:
        player.stop()
        app_input.close()
    assert errors == ["the MIDI input 'kbd:keys' is gone (was the keyboard unplugged?)"]


@pytest.mark.parametrize("mode, stop_signal, code", [("accompany", signal.SIGTERM, 143), ("answer", signal.SIGINT, 0)])
def test_play_along_from_the_command_line_leaves_no_note_after_a_signal(jack_server, fluidsynth, mode, stop_signal,
                                                                       code):
    keyboard = Keyboard()
    play = start_cli("play", "--port", "synth", "--input", "kbd", "--mode", mode, "--bpm", "240",
                     "--program", str(CHURCH_ORGAN + 1), "--answer-after", "1", "--cc", "temperature=74")
    try:
        wait_until(lambda: "listening to 'kbd:keys'" in _stderr_so_far(play) or play.poll() is not None, 60,
                   what="the command to listen")
        assert play.poll() is None
        keyboard.play(melody_events(MELODY[:4], beat=0.25) + [(1.0, [0xB0, 74, 100])])
        keyboard.wait()
        wait_until(lambda: fluidsynth.voice_count() > 0, 10, what="the model to play along")
        play.send_signal(stop_signal)
        out, err = cli_outcome(play, 30)
    finally:
        keyboard.close()
        if play.poll() is None:
            play.kill()
            play.wait()
    assert play.returncode == code, err
    assert "Traceback" not in err
    wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after the signal")


_stderr_lines: dict[int, list[str]] = {}


def _stderr_so_far(process) -> str:
    """The lines `play` wrote on stderr so far, read without blocking past its first line."""
    lines = _stderr_lines.setdefault(process.pid, [])
    if not lines and process.poll() is None:
        lines.append(process.stderr.readline())  # `play` says its first line once it listens
    return "".join(lines)


# ------------------------------------------------------------------------------ clock
class SmallPeriodJack(JackServer):
    """256 frames per period (5.3 ms): MIDI clock ticks arrive in steps of that much (1024 frames give
    21 ms steps, one tick per step at 120 BPM: see midi_clock.py)."""

    def start(self) -> None:
        import os
        import subprocess

        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                ["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        done = subprocess.run(["jack_wait", "-w", "-t", "10", "-s", self.name], capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"JACK server did not start: {done.stdout}")


@pytest.fixture
def clock_server(tmp_path, monkeypatch):
    require_live_tools()
    import os

    server = SmallPeriodJack(f"rnnrbm-clock-{os.getpid()}", tmp_path / "jackd.log")
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_the_player_follows_a_daw_clock_at_three_tempos(clock_server, bundled):
    """At 80, 120 and 160 BPM (each from a Start): within 2 % after one beat; then a tempo change in
    the DAW (160 -> 120) is followed within two beats; Stop pauses the player."""
    daw = Keyboard()
    app_input = midi_input.open_input("kbd")
    clock = MonotonicClock()
    player = LivePlayer(bundled, FakePort(clock), bpm=100, steps_per_beat=2, clock=clock)
    app_input.add_listener(drive_player(player).message)
    checks: list[tuple[float, float]] = []  # (moment, the tempo the player should have then)
    events, offset = [], 0.0
    for bpm in (80, 120, 160):
        tick = 60 / bpm / 24
        events += [(offset, [0xFA])] + [(offset + k * tick, [0xF8]) for k in range(25)]
        checks.append((offset + 24 * tick + 0.03, bpm))  # one beat after Start, once the 25th tick is read
        offset += 25 * tick
        if bpm != 160:
            events.append((offset, [0xFC]))
            offset += 0.1
    tick = 60 / 120 / 24
    events += [(offset + k * tick, [0xF8]) for k in range(1, 49)]  # the DAW slows down to 120
    checks.append((offset + 48 * tick + 0.03, 120))
    events.append((offset + 48 * tick + 0.05, [0xFC]))
    start = time.perf_counter() + 0.1
    followed = []
    try:
        daw.play(events, start=start)
        for moment, _ in checks:
            wait_until(lambda: time.perf_counter() > start + moment, 10, interval=0.002, what="the moment")
            followed.append(player.bpm)
        daw.wait()
        wait_until(lambda: player.state == "paused", 5, what="Stop to pause the player")
    finally:
        player.stop()
        daw.close()
        app_input.close()
    assert player.frames_played > 0  # Start started it
    for (_, bpm), tempo in zip(checks, followed):
        assert abs(tempo / bpm - 1) < 0.02, (checks, followed)
