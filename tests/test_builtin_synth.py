"""The built-in synth as an output port: real FluidSynth in this process, heard through its audio tap."""
from __future__ import annotations

import threading

import mido
import numpy as np
import pytest

from audio_checks import pitch_energies, rms
from rnnrbm_studio.live import outputs
from rnnrbm_studio.live.audio_output import NONE, AudioTap
from rnnrbm_studio.live.builtin_synth import BUILTIN_SYNTH_NAME, BuiltinSynthPort, SynthSettings, is_builtin_synth
from rnnrbm_studio.live.output_port import PortError, all_notes_off_messages
from rnnrbm_studio.live.synth_engine import SynthUnavailable, find_soundfont

pytest.importorskip("fluidsynth", reason="pyfluidsynth and libfluidsynth3 (scripts/setup.sh installs both)")


def wait_for(predicate, timeout: float = 10.0) -> None:
    """Until predicate() holds: polled on an Event that never fires, so no bare sleep."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        pause.wait(0.01)
    raise AssertionError("timed out")


def test_notes_sent_are_heard_at_their_pitch_and_stop_leaves_no_voice():
    port = BuiltinSynthPort(SynthSettings(audio_output=NONE, tap_seconds=20))
    try:
        chord = (57, 64)  # A3 and E4; 60 is silent: its band must stay empty
        for note in chord:
            port.send(mido.Message("note_on", note=note, velocity=100))
        start = port.tap.frames_written
        wait_for(lambda: port.tap.frames_written - start >= port.tap.sample_rate // 2)  # half a second sounded
        assert port.voice_count() >= 2
        played = port.tap.samples(since=start)
        energies = pitch_energies(played, port.tap.sample_rate, chord + (60, 62))
        for note in chord:
            assert energies[note] > 50 * max(energies[60], energies[62]), energies
        for message in [mido.Message("note_off", note=n) for n in chord] + list(all_notes_off_messages([0])):
            port.send(message)
        wait_for(lambda: port.voice_count() == 0)  # the release tails ended: the synth's own count
        after = port.tap.frames_written
        wait_for(lambda: port.tap.frames_written - after >= 4096)
        assert rms(port.tap.samples(since=port.tap.frames_written - 2048)) < 0.02 * rms(played)
    finally:
        port.close()
    assert port.voices_at_close == 0


def test_close_cuts_sounding_notes():
    port = BuiltinSynthPort(SynthSettings(audio_output=NONE, tap_seconds=5))
    port.send(mido.Message("program_change", program=19))  # church organ: sustains while held
    port.send(mido.Message("note_on", note=60, velocity=100))
    wait_for(lambda: port.voice_count() > 0)
    port.close()
    assert port.voices_at_close == 0
    port.send(mido.Message("note_on", note=62, velocity=100))  # after close: ignored, no crash
    assert port.voice_count() == 0


def test_without_an_audio_device_it_says_so_in_one_line_and_still_renders(monkeypatch):
    from rnnrbm_studio.live import audio_output

    monkeypatch.setattr(audio_output, "compiled_drivers", lambda: ["alsa"])
    monkeypatch.setenv("ALSA_CONFIG_PATH", "/nonexistent")  # no ALSA device can open, on any machine
    port = BuiltinSynthPort(SynthSettings(tap_seconds=2))
    try:
        assert port.notice is not None and "\n" not in port.notice
        assert port.notice.startswith("No audio device (tried ALSA): the built-in synth plays silently.")
        start = port.tap.frames_written
        wait_for(lambda: port.tap.frames_written - start >= 2048)
    finally:
        port.close()


def test_it_is_always_listed_and_the_default_without_midi_outputs(monkeypatch):
    from rnnrbm_studio.live import ports

    def no_midi_system():
        raise PortError("no MIDI system is available (test)")

    monkeypatch.setattr(ports, "list_output_ports", no_midi_system)
    monkeypatch.setattr(outputs, "list_output_ports", no_midi_system)
    names, problem = outputs.list_outputs()
    assert names == [BUILTIN_SYNTH_NAME] and "no MIDI system" in problem
    assert outputs.default_output(names) == BUILTIN_SYNTH_NAME
    assert outputs.default_output(["Midi Through:Midi Through Port-0", BUILTIN_SYNTH_NAME]) == BUILTIN_SYNTH_NAME
    assert outputs.default_output(["synth:midi_00", BUILTIN_SYNTH_NAME]) == "synth:midi_00"
    for given in ("Built-in synth", "built-in synth (fluidsynth)", BUILTIN_SYNTH_NAME):
        assert is_builtin_synth(given)
    assert not is_builtin_synth("synth:midi_00")
    port = outputs.open_output_port(None, synth=SynthSettings(audio_output=NONE))
    try:
        assert isinstance(port, BuiltinSynthPort)
    finally:
        port.close()


def test_soundfont_choice_is_checked(tmp_path, monkeypatch):
    not_sf = tmp_path / "notes.txt"
    not_sf.write_text("hello")
    with pytest.raises(SynthUnavailable, match="is not a SoundFont"):
        find_soundfont(not_sf)
    with pytest.raises(SynthUnavailable, match="cannot use the SoundFont"):
        find_soundfont(tmp_path / "missing.sf2")
    monkeypatch.setenv("RNNRBM_STUDIO_SOUNDFONT", str(not_sf))
    with pytest.raises(SynthUnavailable, match="RNNRBM_STUDIO_SOUNDFONT"):
        find_soundfont()
    with pytest.raises(PortError):  # the port says it in one line too
        BuiltinSynthPort(SynthSettings(audio_output=NONE))


def test_the_shipped_soundfont_is_found_when_the_system_has_none(monkeypatch):
    from rnnrbm_studio.live import synth_engine

    monkeypatch.delenv("RNNRBM_STUDIO_SOUNDFONT", raising=False)
    monkeypatch.setattr(synth_engine, "SYSTEM_SOUNDFONTS", ())
    choice = find_soundfont()
    assert choice.source == "shipped" and choice.path.name == "GMbank.sf2"
    port = BuiltinSynthPort(SynthSettings(audio_output=NONE, tap_seconds=5))
    try:
        assert port.soundfont.source == "shipped"
        port.send(mido.Message("note_on", note=69, velocity=110))
        start = port.tap.frames_written
        wait_for(lambda: port.tap.frames_written - start >= 8192)
        energies = pitch_energies(port.tap.samples(since=start), port.tap.sample_rate, (69, 66, 72))
        assert energies[69] > 20 * max(energies[66], energies[72]), energies
    finally:
        port.close()


def test_tap_keeps_the_newest_samples():
    tap = AudioTap(seconds=1.0, sample_rate=4)
    tap.write(np.full((3, 2), 1000, dtype=np.int16))
    tap.write(np.full((3, 2), -1000, dtype=np.int16))
    held = tap.samples()
    assert held.shape == (4, 2) and np.allclose(held[:1], 1000 / 32768) and np.allclose(held[1:], -1000 / 32768)
    assert tap.samples(since=5).shape == (1, 2)
