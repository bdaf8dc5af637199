"""Port listing and opening, and the sender process, without a MIDI system (JACK: test_live_jack.py)."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import mido
import numpy as np
import pytest

from jack_synth import ScriptedModel, heard_roll, scale_model, unbalanced_notes, wait_until
from rnnrbm_studio.live import outputs, ports
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint
from rnnrbm_studio.cli import main
from rnnrbm_studio.live.player import LivePlayer
from rnnrbm_studio.live.output_port import PortError
from rnnrbm_studio.live.sender import SenderProcessPort

NO_JACK = {"MIDO_BACKEND": "mido.backends.rtmidi/UNIX_JACK", "JACK_DEFAULT_SERVER": "rnnrbm-no-such-server",
           "JACK_NO_START_SERVER": "1"}


@pytest.fixture
def no_midi_system(monkeypatch):
    """A real rtmidi JACK client aimed at a server that does not exist: rtmidi raises SystemError."""
    for key, value in NO_JACK.items():
        monkeypatch.setenv(key, value)


class FakeBackend:
    """Stands in for a mido.Backend: fixed port names; opening returns a recording port."""

    def __init__(self, names, api="UNIX_JACK", error: Exception | None = None):
        self.name, self.api = "fake.backend", api
        self.names = names
        self.error = error
        self.opened = []

    def get_output_names(self):
        if self.error:
            raise self.error
        return list(self.names)

    def open_output(self, name, virtual=False, client_name=None):
        port = mido.ports.BaseOutput(name=name)  # a do-nothing output port
        self.opened.append((name, virtual, client_name))
        return port


def open_here(name=None, virtual=False):
    """Open in this process: the fake MIDI systems do not exist in a sender process."""
    return outputs.open_output_port(name, virtual=virtual, separate_process=False)


@pytest.fixture
def fake_systems(monkeypatch):
    def install(*backends):
        monkeypatch.setattr(ports, "midi_systems", lambda: list(backends))
        return backends
    return install


def test_no_midi_system_is_a_one_line_port_error(no_midi_system):
    with pytest.raises(PortError) as caught:
        ports.list_output_ports()
    assert str(caught.value) == "no MIDI system is available (JACK: no JACK server is running)"
    with pytest.raises(PortError):
        outputs.open_output_port("anything")


def test_mido_backend_is_respected(monkeypatch):
    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    (backend,) = ports.midi_systems()
    assert (backend.name, backend.api) == ("mido.backends.rtmidi", "UNIX_JACK")
    assert ports.system_label(backend) == "JACK"


def test_without_mido_backend_every_system_of_the_platform_is_tried(monkeypatch):
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    labels = [ports.system_label(b) for b in ports.midi_systems()]
    import sys

    if sys.platform.startswith("linux"):
        assert labels == ["ALSA", "JACK"]
    assert labels


def test_reasons_name_each_failing_system(fake_systems):
    fake_systems(FakeBackend([], "LINUX_ALSA", SystemError(
                     "MidiOutAlsa::initialize: error creating ALSA sequencer client object.")),
                 FakeBackend([], "UNIX_JACK", SystemError("MidiOutJack::initialize: JACK server not running?")))
    with pytest.raises(PortError) as caught:
        ports.list_output_ports()
    message = str(caught.value)
    assert "ALSA: no ALSA sequencer" in message and "JACK: no JACK server is running" in message
    assert "\n" not in message


def test_one_working_system_is_enough(fake_systems):
    fake_systems(FakeBackend([], "LINUX_ALSA", SystemError("no ALSA sequencer")), FakeBackend(["synth:midi_00"]))
    assert ports.list_output_ports() == ["synth:midi_00"]


def test_open_by_exact_name_or_unique_part(fake_systems):
    (backend,) = fake_systems(FakeBackend(["synth:midi_00", "Midi Through:Port-0", "other:midi_00"]))
    assert open_here("other:midi_00").name == "other:midi_00"
    assert open_here("THROUGH").name == "Midi Through:Port-0"
    assert open_here().name == "synth:midi_00"  # the first one
    with pytest.raises(PortError, match="ambiguous"):
        open_here("midi_00")
    with pytest.raises(PortError) as caught:
        open_here("fluid")
    assert str(caught.value) == ("no MIDI output named 'fluid'; available: 'synth:midi_00', "
                                 "'Midi Through:Port-0', 'other:midi_00'")


def test_no_port_at_all_plays_on_the_built_in_synth(fake_systems):
    from rnnrbm_studio.live.builtin_synth import BuiltinSynthPort

    pytest.importorskip("fluidsynth", reason="pyfluidsynth and libfluidsynth3 (scripts/setup.sh installs both)")
    fake_systems(FakeBackend([]))
    assert ports.list_output_ports() == []
    with pytest.raises(PortError, match="start a synth"):
        ports.open_port_in_process()
    with open_here() as port:  # what plays when no output is named: the built-in synth
        assert isinstance(port, BuiltinSynthPort)


def test_virtual_port_is_named_after_the_app(fake_systems):
    (backend,) = fake_systems(FakeBackend([]))
    port = open_here(virtual=True)
    assert port.virtual and port.name == "RNN-RBM Studio"
    assert backend.opened == [("RNN-RBM Studio", True, "RNN-RBM Studio")]


def test_virtual_port_on_windows_mm_is_refused_clearly(fake_systems):
    fake_systems(FakeBackend([], "WINDOWS_MM"))
    with pytest.raises(PortError, match="virtual ports are not supported"):
        open_here(virtual=True)


class FakeProbe:
    def __init__(self, names):
        self.names = names

    def get_ports(self):
        if isinstance(self.names, Exception):
            raise self.names
        return self.names


def test_problem_reports_a_vanished_destination():
    port = ports.OutputPort(mido.ports.BaseOutput(name="synth:midi_00"), "JACK", probe=FakeProbe(["synth:midi_00"]))
    assert port.problem() is None
    port._probe.names = []
    assert port.problem() == "the MIDI output 'synth:midi_00' is gone (did the synth quit?)"
    port._probe.names = SystemError("broken")
    assert "cannot reach the MIDI output 'synth:midi_00'" in port.problem()


def test_panic_sends_all_notes_off_then_every_note_off():
    sent = []

    class Port:
        def send(self, message):
            sent.append(message)

    ports.panic(Port())
    assert len(sent) == 16 + 16 * 128
    assert all(m.is_cc(123) for m in sent[:16])
    assert {(m.channel, m.note) for m in sent[16:]} == {(c, n) for c in range(16) for n in range(128)}


def test_help_text_tells_how_to_get_an_output():
    for words in ("FluidSynth", "JACK", "virtual port", "RNN-RBM Studio", "MIDO_BACKEND"):
        assert words in ports.NO_PORT_HELP


# --------------------------------------------------------------------------------- CLI
def test_cli_ports_without_midi_system_lists_the_built_in_synth_and_says_why_in_one_line(no_midi_system, capfd):
    # capfd, not capsys: libjack prints on file descriptor 2 by itself, and that must be hidden too
    assert main(["ports"]) == 0
    out, err = capfd.readouterr()
    assert out == "Built-in synth (FluidSynth)\n"
    assert err == ("(no MIDI system is available (JACK: no JACK server is running); the built-in synth plays "
                   "through the speakers)\n")


def test_cli_play_without_midi_system_plays_on_the_built_in_synth(no_midi_system, capfd, tmp_path):
    pytest.importorskip("fluidsynth", reason="pyfluidsynth and libfluidsynth3 (scripts/setup.sh installs both)")
    model_file = tmp_path / "scale.pt"
    save_checkpoint(model_file, model_checkpoint(scale_model()))
    assert main(["play", str(model_file), "--seconds", "0.5"]) == 0
    err = capfd.readouterr().err
    assert "Traceback" not in err and "playing on 'Built-in synth (FluidSynth)'" in err
    no_device = [line for line in err.splitlines() if "No audio device" in line]
    assert len(no_device) <= 1  # said once, in one line, where there is no sound card (as here)


def test_cli_play_with_a_missing_model_is_one_line(capsys, tmp_path):
    assert main(["play", str(tmp_path / "nothing.pt")]) == 2
    assert capsys.readouterr().err.startswith("rnnrbm-studio: error: no such model file")


def test_cli_ports_lists_names(fake_systems, capsys):
    fake_systems(FakeBackend(["synth:midi_00", "other:in"]))
    assert main(["ports"]) == 0
    assert capsys.readouterr().out == "synth:midi_00\nother:in\nBuilt-in synth (FluidSynth)\n"


# ------------------------------------------------------------------ the sender process
def recorded_messages(path) -> list[tuple[float, mido.Message]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [(float(t), mido.Message.from_hex(h)) for t, h in (line.split(" ", 1) for line in lines)]


def test_sender_process_sends_at_the_deadline_and_keeps_order(tmp_path):
    record = tmp_path / "sent.txt"
    port = SenderProcessPort(record_to=str(record))
    try:
        assert port.problem() is None
        deadline = time.perf_counter() + 0.3
        port.send_at(deadline, [mido.Message("note_on", note=60, velocity=90)], tag=7)
        port.send(mido.Message("note_off", note=60))  # queued later: must not overtake the note-on
        port.send_at(deadline - 1.0, [mido.Message("note_on", note=62)], tag=8)  # already due: right after
    finally:
        port.close()  # the child sends what is queued, then exits
    sent = recorded_messages(record)
    assert [m for _, m in sent] == [mido.Message("note_on", note=60, velocity=90), mido.Message("note_off", note=60),
                                    mido.Message("note_on", note=62),
                                    # closing with a note still on: the sender releases it itself
                                    mido.Message("note_off", note=62, velocity=0), mido.Message("control_change", control=123)]
    assert sent[0][0] >= deadline
    report = port.send_report()
    assert [tag for tag, _, _ in report] == [7, 8]
    assert report[0][1] == deadline and report[0][2] >= deadline


def test_sender_process_releases_its_notes_when_the_app_dies(tmp_path):
    record = tmp_path / "sent.txt"
    app = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys, mido\n"
        "from rnnrbm_studio.live.sender import SenderProcessPort\n"
        "port = SenderProcessPort(record_to=sys.argv[1])\n"
        "for note in (60, 64):\n"
        "    port.send(mido.Message('note_on', channel=3, note=note, velocity=80))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"), str(record)], timeout=60)
    assert app.returncode == -signal.SIGKILL
    wait_until(lambda: len(recorded_messages(record)) >= 5, 10, what="the sender to release the notes")
    assert [m for _, m in recorded_messages(record)] == [
        mido.Message("note_on", channel=3, note=60, velocity=80), mido.Message("note_on", channel=3, note=64, velocity=80),
        mido.Message("note_off", channel=3, note=60, velocity=0), mido.Message("note_off", channel=3, note=64, velocity=0),
        mido.Message("control_change", channel=3, control=123, value=0)]


def test_a_sender_process_that_dies_is_reported_as_a_problem(tmp_path):
    port = SenderProcessPort(record_to=str(tmp_path / "sent.txt"))
    try:
        port._process.kill()
        problem = wait_until(port.problem, 10, what="the death to be noticed")
        assert problem.startswith("the MIDI sender process ended unexpectedly")
        with pytest.raises(OSError):
            port.send(mido.Message("note_on", note=60))
    finally:
        port.close()


def test_player_through_a_sender_process_plays_every_frame_on_time(tmp_path):
    record = tmp_path / "sent.txt"
    port = SenderProcessPort(record_to=str(record))
    stopped = threading.Event()
    try:
        player = LivePlayer(ScriptedModel([[0, 4], [4], [7, 9], []]), port, bpm=600, steps_per_beat=4,
                            played_buffer_size=100, on_stopped=lambda reason: stopped.set())
        player.start()
        wait_until(lambda: player.frames_played >= 12, 10, interval=0.02, what="12 frames")
        player.stop()
        assert stopped.is_set() and player.error is None
    finally:
        port.close()
    frames = player.drain_played_frames()
    report = {tag: (deadline, sent_at) for tag, deadline, sent_at in port.send_report()}
    for frame in frames:
        deadline, sent_at = report[frame.index]
        assert deadline == frame.deadline and sent_at >= deadline  # never early
        assert frame.sent_at <= deadline  # handed over ahead of time
    sent = recorded_messages(record)
    assert sent[0][1] == mido.Message("program_change", program=0)
    # each frame's messages go out within microseconds of its sent_at, the next frame 25 ms later;
    # the last frame is cut short by stop's note-offs, which follow it at once
    heard = heard_roll(sent, [report[f.index][1] + 0.0125 for f in frames[:-1]])
    np.testing.assert_array_equal(heard, player.recorded_roll()[:-1])
    assert unbalanced_notes([m for _, m in sent]) == {}
    assert sent[-1][1].is_cc(123)
