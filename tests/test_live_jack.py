"""The live player with real parts: a JACK server (dummy driver) and FluidSynth, started by fixtures.

Evidence that music was heard comes from the synth itself: its -v log (a noteon line per note), its
voice count while playing, and the audio it rendered; "no stuck note" is its voice count falling to
zero after stop. The organ program sustains a held key forever, so a stuck note could not hide.
"""
from __future__ import annotations

import signal
import threading

import mido
import numpy as np
import pytest

from jack_synth import (CHURCH_ORGAN, cli_outcome, fluidsynth, jack_server, process_running,  # noqa: F401
                        record_audio, scale_model, sender_processes_of, start_cli, unbalanced_notes, wait_until,
                        wav_rms)
from rnnrbm_studio.live.builtin_synth import BUILTIN_SYNTH_NAME
from rnnrbm_studio.live import outputs, ports
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint
from rnnrbm_studio.music.dynamics import step_velocities
from rnnrbm_studio.music.midi_files import read_midi
from rnnrbm_studio.music.pianoroll import RollSettings
from rnnrbm_studio.live.player import LivePlayer

pytestmark = pytest.mark.jack


class Watched:
    """A player's callbacks and any exception escaping a thread, recorded."""

    def __init__(self):
        self.errors: list[str] = []
        self.reasons: list[str] = []
        self.stopped = threading.Event()
        self.thread_exceptions: list = []

    def on_stopped(self, reason: str) -> None:
        self.reasons.append(reason)
        self.stopped.set()


@pytest.fixture
def watched(monkeypatch):
    result = Watched()
    monkeypatch.setattr(threading, "excepthook", result.thread_exceptions.append)
    return result


@pytest.fixture
def synth_port(fluidsynth):
    port = outputs.open_output_port("synth:midi_00")
    try:
        yield port
    finally:
        port.close()  # before the JACK server goes: libjack crashes closing a client of a dead server


def test_fluidsynth_plays_the_notes_and_none_sound_after_stop(jack_server, fluidsynth, synth_port, watched,
                                                               tmp_path):
    assert synth_port.system == "JACK" and synth_port.problem() is None
    player = LivePlayer(scale_model(), synth_port, bpm=240, steps_per_beat=2, program=CHURCH_ORGAN,
                        played_buffer_size=10_000, on_error=watched.errors.append, on_stopped=watched.on_stopped)
    recorder = record_audio(jack_server, tmp_path / "played.wav", seconds=2)
    try:
        player.start()
        voices = wait_until(fluidsynth.voice_count, 5, what="FluidSynth sounding a voice")
        recorder.wait(20)
        player.stop()
        assert watched.reasons == ["stopped"] and watched.errors == []
        wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="every voice to end after stop")
    finally:
        player.stop()
        recorder.kill()
        recorder.wait()
    frames = player.drain_played_frames()
    sent_note_ons = sum(int(f.onsets.sum()) for f in frames)
    assert voices > 0 and len(frames) >= 8 and sent_note_ons == len(frames)  # one new key per frame
    wait_until(lambda: len(fluidsynth.log_events("noteon")) >= sent_note_ons, 5, what="the synth's log")
    heard = fluidsynth.log_events("noteon")
    assert heard == [(0, 21 + int(np.flatnonzero(f.keys)[0])) for f in frames]  # every note, in order
    assert len(fluidsynth.log_events("noteoff")) >= len(heard)
    assert "Church Organ" in fluidsynth.channel_programs()[0]
    assert wav_rms(tmp_path / "played.wav") > 10.0
    assert watched.thread_exceptions == []


def test_killing_fluidsynth_stops_the_player_with_a_message(jack_server, fluidsynth, synth_port, watched):
    player = LivePlayer(scale_model(), synth_port, bpm=480, steps_per_beat=2, probe_interval=0.2,
                        on_error=watched.errors.append, on_stopped=watched.on_stopped)
    try:
        player.start()
        wait_until(lambda: len(fluidsynth.log_events("noteon")) >= 3, 5, what="the first notes")
        fluidsynth.kill()  # sends to a dead synth do not fail: the probe must notice
        assert watched.stopped.wait(5), "the player kept playing to a synth that is gone"
    finally:
        player.stop()
    assert watched.reasons == ["error"]
    assert watched.errors == ["the MIDI output 'synth:midi_00' is gone (did the synth quit?)"]
    assert player.state == "stopped" and player.open_notes == []
    assert watched.thread_exceptions == []


def test_panic_silences_notes_left_sounding(fluidsynth, synth_port):
    synth_port.send(mido.Message("program_change", program=CHURCH_ORGAN))
    for channel in (0, 5):
        for note in (48, 60, 64, 67):
            synth_port.send(mido.Message("note_on", channel=channel, note=note, velocity=100))
    wait_until(lambda: fluidsynth.voice_count() >= 8, 5, what="eight stuck organ notes")
    ports.panic(synth_port)
    wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after panic")


def test_virtual_port_delivers_exactly_the_frames_played(jack_server, watched):
    import rtmidi

    port = outputs.open_output_port(virtual=True)
    receiver = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "rx", queue_size_limit=4096)
    try:
        assert port.virtual and port.name == "RNN-RBM Studio"
        source = [i for i, name in enumerate(receiver.get_ports()) if name == "RNN-RBM Studio:RNN-RBM Studio"]
        assert source, receiver.get_ports()
        receiver.open_port(source[0])
        player = LivePlayer(scale_model(), port, bpm=600, steps_per_beat=4, channel=2,
                            on_error=watched.errors.append, on_stopped=watched.on_stopped)
        try:
            player.start()
            wait_until(lambda: player.frames_played >= 20, 5, interval=0.02, what="20 frames")
        finally:
            player.stop()
        roll = player.recorded_roll()
        expected = [mido.Message("program_change", channel=2, program=0)]
        previous = np.zeros(88, dtype=bool)
        for step, frame in enumerate(roll.astype(bool)):
            velocity = step_velocities(frame, step, steps_per_beat=4, base=80)  # the dynamics rule, on by default
            expected += [mido.Message("note_off", channel=2, note=21 + int(k), velocity=0)
                         for k in np.flatnonzero(previous & ~frame)]
            expected += [mido.Message("note_on", channel=2, note=21 + int(k), velocity=int(velocity[k]))
                         for k in np.flatnonzero(frame & ~previous)]
            previous = frame
        expected += [mido.Message("note_off", channel=2, note=21 + int(k), velocity=0) for k in np.flatnonzero(previous)]
        expected.append(mido.Message("control_change", channel=2, control=123, value=0))
        received: list[mido.Message] = []

        def all_received() -> bool:
            while (event := receiver.get_message()) is not None:
                received.append(mido.Message.from_bytes(event[0]))
            return len(received) >= len(expected)

        wait_until(all_received, 5, interval=0.02, what="the messages to arrive")
        assert [m.bytes() for m in received] == [m.bytes() for m in expected]
        assert unbalanced_notes(received) == {}
    finally:
        receiver.close_port()
        receiver.delete()
        port.close()
    assert watched.errors == [] and watched.thread_exceptions == []


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "scale.pt"
    save_checkpoint(path, model_checkpoint(scale_model()))
    return path


def test_cli_lists_ports_then_plays_and_records(jack_server, fluidsynth, model_file, tmp_path):
    listing = start_cli("ports")
    out, err = cli_outcome(listing, 60)
    assert listing.returncode == 0, err
    assert out.splitlines() == ["synth:midi_00", BUILTIN_SYNTH_NAME]  # the built-in synth is always listed
    recording = tmp_path / "played.mid"
    play = start_cli("play", str(model_file), "--port", "synth", "--seconds", "2", "--bpm", "400",
                "--record", str(recording), "--program", str(CHURCH_ORGAN + 1))
    out, err = cli_outcome(play, 60)
    assert play.returncode == 0, err
    assert "Traceback" not in err
    roll = read_midi(recording, RollSettings(steps_per_beat=2)).roll
    struck = int((np.diff(np.vstack([np.zeros((1, 88)), roll]), axis=0) > 0).sum())
    assert roll.shape[0] >= 8
    wait_until(lambda: len(fluidsynth.log_events("noteon")) >= struck, 5, what="the synth's log")
    assert len(fluidsynth.log_events("noteon")) == struck  # the file holds what the synth heard
    wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after the command ended")


def test_cli_ctrl_c_stops_with_every_note_released(jack_server, fluidsynth, model_file):
    play = start_cli("play", str(model_file), "--port", "synth:midi_00", "--bpm", "400",
                "--program", str(CHURCH_ORGAN + 1))
    try:
        wait_until(lambda: len(fluidsynth.log_events("noteon")) >= 3 or play.poll() is not None, 60,
                   what="the command to play")
        assert fluidsynth.voice_count() > 0
        play.send_signal(signal.SIGINT)
        out, err = cli_outcome(play, 30)
    finally:
        if play.poll() is None:
            play.kill()
            play.wait()
    assert play.returncode == 0, err
    assert "Traceback" not in err and "stopping" in err
    wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after Ctrl+C")


def test_killing_the_app_mid_play_leaves_no_note_sounding(jack_server, fluidsynth, model_file):
    play = start_cli("play", str(model_file), "--port", "synth:midi_00", "--bpm", "400",
                "--program", str(CHURCH_ORGAN + 1))
    try:
        wait_until(lambda: len(fluidsynth.log_events("noteon")) >= 3 or play.poll() is not None, 60,
                   what="the command to play")
        assert play.poll() is None and fluidsynth.voice_count() > 0
        (sender,) = sender_processes_of(play.pid)
        play.kill()  # no chance to clean up: the sender process notices its pipe close and does it
        cli_outcome(play, 30)
    finally:
        if play.poll() is None:
            play.kill()
            play.wait()
    wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="silence after the app was killed")
    ons, offs = fluidsynth.log_events("noteon"), fluidsynth.log_events("noteoff")
    assert ons and len(offs) >= len(ons)
    wait_until(lambda: not process_running(sender), 5, what="the orphaned sender process to exit")
