"""Live playback against hostile input and a hostile world: bad numbers and paths on the command line,
odd port names, the sender pipe's encoding, signals to the process group, and the JACK server dying
under a playing player, the command line and the window (those last with real JACK and FluidSynth).
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import threading
import time

import mido
import pytest

from jack_synth import (CHURCH_ORGAN, cli_outcome, fluidsynth, jack_server, live_processes_in_group,  # noqa: F401
                        own_fluidsynth, own_jack_server, process_running, scale_model, sender_processes_of,
                        start_cli, wait_until)
from rnnrbm_studio.live import outputs, ports, sender
from rnnrbm_studio.live.output_port import all_notes_off_messages
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint
from rnnrbm_studio.cli import build_parser, main
from rnnrbm_studio.errors import StudioError
from rnnrbm_studio.live.jack_watch import SERVER_GONE
from rnnrbm_studio.music.midi_files import read_midi
from rnnrbm_studio.music.pianoroll import RollSettings
from rnnrbm_studio.live.player import LivePlayer


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "scale.pt"
    save_checkpoint(path, model_checkpoint(scale_model()))
    return path


@pytest.fixture
def no_port_may_open(monkeypatch):
    """Fail if the command gets as far as opening a MIDI port: its input was to be refused before."""
    def refuse(*args, **kwargs):
        raise AssertionError("a MIDI port was opened although the input was bad")
    monkeypatch.setattr(outputs, "open_output_port", refuse)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("rnnrbm-studio: error:")]


# ------------------------------------------------------------------- numbers on the command line
def _subcommand(name: str) -> argparse.ArgumentParser:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[name]


def _numeric_options(command: str) -> list[argparse.Action]:
    return [action for action in _subcommand(command)._actions
            if action.option_strings and action.type is not None and action.type not in (str,)]


def _bad_values(kind) -> list[str]:
    """Values outside an option's range: its edges' neighbours, zero and minus one where those are
    out of range, absurd sizes, and what is not a number at all."""
    values = ["nan", "NaN", "inf", "-inf", "1e400", "ten", "", "0x10", "1,5"]
    values += [str(kind.low) if kind.low_open else str(kind.low - 1), str(kind.high + 1)]
    values += [v for v in ("0", "-1", "10" * 40) if not _accepts(kind, v)]
    if kind.kind == "integer":
        values += ["2.5"]
    return values


def _accepts(kind, text: str) -> bool:
    try:
        kind(text)
        return True
    except argparse.ArgumentTypeError:
        return False


def test_every_numeric_option_of_play_and_ports_has_a_range():
    options = _numeric_options("play") + _numeric_options("ports")
    assert {o.dest for o in options} >= {"bpm", "steps_per_beat", "seconds", "temperature", "gibbs_steps", "seed",
                                        "velocity", "channel", "program", "latency_ms"}
    unranged = [o.dest for o in options if not hasattr(o.type, "low")]
    assert unranged == []


@pytest.mark.parametrize("command", ["play", "ports"])
def test_bad_numbers_are_usage_errors_before_any_port_opens(command, no_port_may_open, capsys):
    cases = [(option, value) for option in _numeric_options(command) for value in _bad_values(option.type)]
    for option, value in cases:
        status = main([command, f"{option.option_strings[0]}={value}"])
        err = capsys.readouterr().err
        assert status == 2, (option.dest, value)
        assert err.count("\n") == 1 and err.startswith("rnnrbm-studio: error: ")
        assert f"argument {option.option_strings[0]}" in err and "Traceback" not in err, (option.dest, value, err)


def test_the_edges_of_each_range_are_accepted():
    for option in _numeric_options("play"):
        kind = option.type
        assert _accepts(kind, str(kind.high)), option.dest
        assert _accepts(kind, str(kind.low)) != kind.low_open, option.dest


# ------------------------------------------------------------------------- paths on the command line
def _run(capsys, *arguments) -> tuple[int, str]:
    status = main(["play", *map(str, arguments)])
    return status, capsys.readouterr().err


def test_record_into_a_folder_is_refused_before_playing(model_file, tmp_path, no_port_may_open, capsys):
    status, err = _run(capsys, model_file, "--record", tmp_path)
    assert status == 2 and error_lines(err) == [f"rnnrbm-studio: error: --record {tmp_path}: is a folder; "
                                                "give a file name such as take.mid"]


@pytest.mark.parametrize("where", ["missing folder", "under a file", "fifo", "device", "proc"])
def test_record_to_a_place_that_cannot_hold_a_file_is_refused(where, model_file, tmp_path, no_port_may_open,
                                                              capsys):
    target = {"missing folder": tmp_path / "nowhere" / "take.mid",
              "under a file": model_file / "take.mid",
              "fifo": tmp_path / "pipe.mid",
              "device": "/dev/null",
              "proc": "/proc/rnnrbm-take.mid"}[where]  # even root cannot create a file there
    if where == "fifo":
        os.mkfifo(target)
    before = sorted(os.listdir(tmp_path))
    status, err = _run(capsys, model_file, "--record", target)
    assert status == 2, err
    assert len(error_lines(err)) == 1 and f"--record {target}" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before  # no probe file or half a recording left behind


def test_record_through_a_link_to_a_device_is_refused(model_file, tmp_path, no_port_may_open, capsys):
    link = tmp_path / "take.mid"
    # e.g. --record /dev/stdout: the recording, written aside and renamed, would replace the link (as
    # root, /dev/stdout itself); the link is followed and what it points to is refused
    link.symlink_to("/dev/null")
    status, err = _run(capsys, model_file, "--record", link)
    assert status == 2 and "not a regular file" in err


def test_record_through_a_link_to_a_file_writes_the_file_and_keeps_the_link(tmp_path):
    from rnnrbm_studio.cli.live import check_record_path

    (tmp_path / "takes").mkdir()
    link = tmp_path / "latest.mid"
    link.symlink_to(tmp_path / "takes" / "take1.mid")  # a dangling link to the file to be made
    assert check_record_path(str(link)) == (tmp_path / "takes" / "take1.mid").resolve()
    assert os.listdir(tmp_path / "takes") == []  # the write check leaves nothing behind


@pytest.mark.parametrize("content", ["missing", "folder", "fifo", "garbage", "empty"])
def test_a_bad_primer_is_one_line_before_any_port_opens(content, model_file, tmp_path, no_port_may_open, capsys):
    primer = tmp_path / "primer.mid"
    if content == "folder":
        primer.mkdir()
    elif content == "fifo":
        os.mkfifo(primer)  # reading it would wait forever for a writer
    elif content == "garbage":
        primer.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff\xff\xff\xff garbage")
    elif content == "empty":
        primer.write_bytes(b"")
    status, err = _run(capsys, model_file, "--primer", primer)
    assert status == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"rnnrbm-studio: error: --primer {primer}: "), err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- the sender pipe
def test_sender_records_round_trip_without_pickle():
    odd_name = os.fsdecode(b"synth \xff\xfe\n") + "\u00e9" * 3
    records = [("open", {"name": odd_name, "virtual": False, "record_to": None}),
               ("at", 1234.5678901234, [m.bytes() for m in all_notes_off_messages()], 7),
               ("at", 0.0, [mido.Message("note_on", note=60, velocity=90).bytes()], None),
               ("sent", 3, 1.25, 1.2500001), ("ready", odd_name, "JACK", False, True),
               ("problem", "the MIDI output 'x' is gone"), ("close",)]
    stream = io.BytesIO(b"".join(sender._pack(record) for record in records))
    for record in records:
        assert sender._unpack_from(stream) == list(record)
    assert sender._unpack_from(stream) is None
    for module in (sender, ports):
        source = open(module.__file__).read()
        assert "import pickle" not in source and "pickle.load" not in source, module.__name__


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x10{\"not", b"\xff\xff\xff\xff", b"\x00\x00\x00\x03abc",
                                  b"\x00\x00\x00\x02{}", b"\x00\x00\x00\x02[]"])
def test_a_torn_or_foreign_record_is_a_record_error(data):
    with pytest.raises(sender.RecordError):
        sender._unpack_from(io.BytesIO(data))


@pytest.mark.parametrize("request_", [["at", "soon", [], None], ["at", 1.0, [[144, 60, 1]]], ["shutdown"],
                                      ["at", 1.0, [[144, 60, 1]], "tag"]])
def test_the_sender_refuses_requests_of_the_wrong_shape(request_):
    with pytest.raises(sender.RecordError):
        sender._checked_request(request_)


def test_the_sender_releases_its_notes_after_a_foreign_request(tmp_path):
    """A request it cannot read ends the sender as a closed pipe does: notes released, process gone."""
    log_file = tmp_path / "sent.txt"
    port = sender.SenderProcessPort(record_to=str(log_file))
    try:
        port.send(mido.Message("note_on", channel=3, note=64, velocity=100))
        port._write(("shutdown", "now"))
        port._process.wait(10)
    finally:
        port.close()
    sent = [mido.Message.from_hex(line.split(" ", 1)[1]) for line in log_file.read_text().splitlines()]
    assert sent[0].type == "note_on" and sent[1:] == [
        mido.Message("note_off", channel=3, note=64, velocity=0),
        mido.Message("control_change", channel=3, control=123, value=0)]


def test_the_sender_ignores_the_signals_a_process_group_gets(tmp_path):
    """SIGINT, SIGTERM and SIGHUP to the group must not kill the sender: it sends what is queued and
    stops only when the pipe closes."""
    log_file = tmp_path / "sent.txt"
    port = sender.SenderProcessPort(record_to=str(log_file))
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            port._process.send_signal(signum)
        port.send(mido.Message("note_on", note=60, velocity=100))
        wait_until(lambda: log_file.read_text().count("\n") >= 1, 5, what="the note after the signals")
        assert port._process.poll() is None and port.problem() is None
    finally:
        port.close()
    assert port._process.returncode == 0
    sent = [mido.Message.from_hex(line.split(" ", 1)[1]) for line in log_file.read_text().splitlines()]
    assert sent == [mido.Message("note_on", note=60, velocity=100), mido.Message("note_off", note=60, velocity=0),
                    mido.Message("control_change", control=123, value=0)]


# ---------------------------------------------------------------------------- odd port names
@pytest.fixture
def a_destination(jack_server):
    """One MIDI destination on the module's JACK server ("listener:in"), so that a name not found
    is told as such, not as "no port at all"."""
    import rtmidi

    listener = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "listener")
    listener.open_virtual_port("in")
    try:
        yield "listener:in"
    finally:  # before the server goes: libjack crashes closing a client of a dead server
        listener.close_port()
        listener.delete()


@pytest.mark.jack
@pytest.mark.parametrize("name", [b"synth\xff\xfe", "tab\there\nnewline".encode(), "\u2603 snow".encode(),
                                  b"x" * 100_000, b"-", b"*", b".*", b"%s%n"])
def test_an_odd_port_name_is_one_clean_line(name, a_destination, model_file):
    play = start_cli("play", str(model_file), b"--port=" + name, "--seconds", "1")
    out, err = cli_outcome(play, 60)
    assert play.returncode == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and "no MIDI output named" in lines[0] and len(lines[0]) < 400, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err


@pytest.mark.jack
def test_a_port_name_matching_two_ports_is_refused(jack_server, model_file):
    import rtmidi

    twins = [rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "twin synth") for _ in range(2)]
    try:
        for twin in twins:
            twin.open_virtual_port("in")
        play = start_cli("play", str(model_file), "--port", "twin", "--seconds", "1")
        out, err = cli_outcome(play, 60)
    finally:
        for twin in twins:  # before the server goes: libjack crashes closing a client of a dead server
            twin.close_port()
            twin.delete()
    assert play.returncode == 2, err
    (line,) = error_lines(err)
    assert "'twin' is ambiguous; it matches 'twin synth" in line and line.count("twin synth") == 2, line


# ---------------------------------------------------------------------- signals to the group
@pytest.mark.jack
@pytest.mark.parametrize("signum, status", [(signal.SIGHUP, 129), (signal.SIGTERM, 143)])
def test_a_signal_to_the_process_group_stops_play_with_no_note_left(signum, status, jack_server, fluidsynth,
                                                                     model_file, tmp_path):
    """Closing the terminal (SIGHUP) or `kill -TERM -PGID` reaches play and its sender alike: play
    stops as after Ctrl+C, the sender outlives it long enough to send the note-offs, and both go."""
    recording = tmp_path / "take.mid"
    # as from a shell: a test run under nohup would pass its ignored SIGHUP on, and play keeps that
    play = start_cli("play", str(model_file), "--port", "synth:midi_00", "--bpm", "400", "--record", str(recording),
                     "--program", str(CHURCH_ORGAN + 1), start_new_session=True,
                     preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    try:
        wait_until(lambda: fluidsynth.voice_count() > 0 or play.poll() is not None, 60, what="notes sounding")
        assert play.poll() is None
        (sender_pid,) = sender_processes_of(play.pid)
        os.killpg(play.pid, signum)
        out, err = cli_outcome(play, 30)
    finally:
        if play.poll() is None:
            os.killpg(play.pid, signal.SIGKILL)
            play.wait()
    assert play.returncode == status, err
    name = signal.Signals(signum).name
    assert "Traceback" not in err and err.splitlines()[-1] == f"rnnrbm-studio: stopped by {name}", err
    wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after the signal")
    assert not process_running(sender_pid)
    wait_until(lambda: not live_processes_in_group(play.pid), 5, what="no process of the group left")
    assert read_midi(recording, RollSettings(steps_per_beat=2)).n_frames >= 1  # the take was kept


@pytest.mark.jack
def test_play_exits_2_with_one_line_when_the_synth_quits(jack_server, fluidsynth, model_file):
    play = start_cli("play", str(model_file), "--port", "synth:midi_00", "--bpm", "400")
    try:
        wait_until(lambda: len(fluidsynth.log_events("noteon")) >= 3 or play.poll() is not None, 60,
                   what="the command to play")
        assert play.poll() is None
        fluidsynth.kill()
        out, err = cli_outcome(play, 10)
    finally:
        if play.poll() is None:
            play.kill()
            play.wait()
    assert play.returncode == 2, err
    assert error_lines(err) == ["rnnrbm-studio: error: the MIDI output 'synth:midi_00' is gone (did the synth quit?)"]
    assert "Traceback" not in err


# --------------------------------------------------------------------- the JACK server dies
class Watched:
    def __init__(self):
        self.errors: list[str] = []
        self.stopped = threading.Event()

    def on_stopped(self, reason: str) -> None:
        self.stopped.set()


@pytest.mark.jack
def test_a_player_notices_the_jack_server_dying_within_a_second(own_jack_server, own_fluidsynth):
    watched = Watched()
    port = outputs.open_output_port("synth:midi_00")
    try:
        player = LivePlayer(scale_model(), port, bpm=400, on_error=watched.errors.append,
                            on_stopped=watched.on_stopped)
        try:
            player.start()
            wait_until(lambda: len(own_fluidsynth.log_events("noteon")) >= 3, 10, what="the first notes")
            killed_at = time.monotonic()
            own_jack_server.kill()
            assert watched.stopped.wait(5), "the player played on after the JACK server died"
            noticed_after = time.monotonic() - killed_at
        finally:
            player.stop()
        assert watched.errors == [SERVER_GONE]
        assert player.state == "stopped" and player.open_notes == []
        # by design 0.5 s at most (two probes of 0.25 s); the margin is for a loaded 2-core machine
        assert noticed_after < 1.5
    finally:
        closing = threading.Thread(target=port.close)
        closing.start()
        closing.join(10)
        assert not closing.is_alive(), "closing a port of a dead JACK server hung"
    assert port._process.returncode == 0  # the sender left its dead JACK clients alone and exited


@pytest.mark.jack
def test_play_exits_2_with_one_line_when_the_jack_server_dies(own_jack_server, own_fluidsynth, model_file,
                                                              tmp_path):
    recording = tmp_path / "take.mid"
    play = start_cli("play", str(model_file), "--port", "synth", "--bpm", "400", "--record", str(recording),
                     start_new_session=True)
    try:
        wait_until(lambda: len(own_fluidsynth.log_events("noteon")) >= 3 or play.poll() is not None, 60,
                   what="the command to play")
        assert play.poll() is None
        killed_at = time.monotonic()
        own_jack_server.kill()
        out, err = cli_outcome(play, 10)
        took = time.monotonic() - killed_at
    finally:
        if play.poll() is None:
            os.killpg(play.pid, signal.SIGKILL)
            play.wait()
    assert play.returncode == 2, err
    assert error_lines(err) == [f"rnnrbm-studio: error: {SERVER_GONE}"], err
    assert "Traceback" not in err and "Jack" not in err and "socket" not in err  # no libjack chatter
    assert took < 5
    assert read_midi(recording, RollSettings(steps_per_beat=2)).n_frames >= 3  # what was played is kept
    wait_until(lambda: not live_processes_in_group(play.pid), 5, what="the sender process to exit")


# ------------------------------------------------------------------ no note left on a broken port
class FlakyPort:
    """A port on which sending one given message fails, once; it records what got through."""

    name = "flaky synth"

    def __init__(self, fail_once_on: mido.Message):
        self.fail_once_on: mido.Message | None = fail_once_on
        self.sent: list[mido.Message] = []
        self.closed = False

    def send(self, message: mido.Message) -> None:
        if self.fail_once_on is not None and message == self.fail_once_on:
            self.fail_once_on = None
            raise OSError("the port hiccuped")
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True


def test_after_a_failed_send_the_sender_still_releases_every_note():
    """A send that fails marks the port broken (reported once), but every later message is still
    tried, and a note whose note-off failed is released again before the sender ends."""
    on_60, on_62, on_64 = (mido.Message("note_on", channel=1, note=n, velocity=90) for n in (60, 62, 64))
    off_60 = mido.Message("note_off", channel=1, note=60)
    port, replies = FlakyPort(fail_once_on=off_60), []
    requests = [("at", 0.0, [on_60.bytes(), on_62.bytes()], None),
                ("at", 0.0, [[0xF7], off_60.bytes()], None),  # a malformed message is skipped
                ("at", 0.0, [on_64.bytes()], None),
                ("close",)]
    sender._send_until_closed(port, io.BytesIO(b"".join(sender._pack(r) for r in requests)),
                              lambda *fields: replies.append(fields))
    assert replies == [("problem", "sending to the MIDI output 'flaky synth' failed (the port hiccuped)")]
    assert port.sent[:3] == [on_60, on_62, on_64]
    assert sorted(m.note for m in port.sent[3:-1] if m.type == "note_off") == [60, 62, 64]
    assert port.sent[-1] == mido.Message("control_change", channel=1, control=123, value=0) and port.closed


def test_play_leaves_an_ignored_sighup_ignored(monkeypatch, model_file, no_port_may_open, capsys):
    """Under nohup SIGHUP is ignored; play must not take that back (it would stop on a closed terminal)."""
    seen = {}

    def load_and_look(*args, **kwargs):
        seen["hup"] = signal.getsignal(signal.SIGHUP)
        seen["term"] = signal.getsignal(signal.SIGTERM)
        raise StudioError("stop here")

    from rnnrbm_studio.training import checkpoint
    monkeypatch.setattr(checkpoint, "load_model", load_and_look)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert main(["play", str(model_file)]) == 2
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert seen["hup"] is signal.SIG_IGN and callable(seen["term"])
