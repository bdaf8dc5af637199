"""The first launch, in a real offscreen window: no MIDI output -> the built-in synth is chosen -> Play
-> the synth's audio has energy at the pitches the model played -> Stop -> silence, no voice left."""
from __future__ import annotations

import wave

import mido
import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from audio_checks import pitch_energies, rms
from jack_synth import scale_model
from rnnrbm_studio.live.builtin_synth import BUILTIN_SYNTH_NAME, BuiltinSynthPort, SynthSettings
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint
from rnnrbm_studio.ui.live_controller import SystemPortProvider
from rnnrbm_studio.ui.main_window import MainWindow
from ui_helpers import assert_no_qt_leaks

pytest.importorskip("fluidsynth", reason="pyfluidsynth and libfluidsynth3 (scripts/setup.sh installs both)")


class RecordingProvider(SystemPortProvider):
    """The window's own provider, with a machine that has no MIDI system; it keeps the ports it opened
    and every message sent to them (the notes actually played)."""

    def __init__(self):
        super().__init__(SynthSettings(tap_seconds=120), list_midi=lambda: ([], "no MIDI system is available (test)"))
        self.opened: list[BuiltinSynthPort] = []
        self.sent: list[mido.Message] = []
        self.sent_at: list[tuple[int, mido.Message]] = []  # (frames the synth had rendered then, message)

    def open(self, name):
        port = super().open(name)
        real_send = port.send
        def send(message):
            self.sent.append(message)
            self.sent_at.append((port.tap.frames_written, message))
            real_send(message)

        port.send = send
        self.opened.append(port)
        return port


@pytest.fixture
def first_launch(qtbot, tmp_path):
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    model = tmp_path / "scale.pt"  # one key per step, C4..G4 (MIDI 60..67) in turn
    save_checkpoint(model, model_checkpoint(scale_model(step=3, base=39, span=8)))
    provider = RecordingProvider()
    window = MainWindow(QtCore.QSettings(str(tmp_path / "fresh.ini"), QtCore.QSettings.Format.IniFormat), model,
                        port_provider=provider, models_dir=tmp_path / "models")
    qtbot.addWidget(window)
    yield window, provider
    window.close()
    assert_no_qt_leaks(window)


def test_first_play_is_heard_through_the_built_in_synth(qtbot, first_launch):
    window, provider = first_launch
    panel = window.live_panel
    assert panel.port.currentText() == BUILTIN_SYNTH_NAME and panel.play_button.isEnabled()
    assert not panel.port_help.isVisibleTo(window)  # no wall of help: it just plays
    panel.bpm.setValue(240)
    panel.play_button.click()
    qtbot.waitUntil(lambda: window.playback.live.is_playing(), timeout=10_000)
    (port,) = provider.opened
    if port.notice:  # no sound card here: one line says so, in the Sound box
        assert port.notice.startswith("No audio device") and "\n" not in port.notice
        assert panel.synth.notice.isVisibleTo(window) and panel.synth.notice.text() == port.notice
    start = port.tap.frames_written
    qtbot.waitUntil(lambda: len({m.note for m in provider.sent if m.type == "note_on" and m.velocity}) >= 5,
                    timeout=20_000)
    loud = rms(port.tap.samples(since=start))
    # each note actually sent, heard at its pitch while it sounded (in the synth's own output)
    checked = 0
    for index, (frame_on, message) in enumerate(provider.sent_at):
        if message.type != "note_on" or not message.velocity:
            continue
        frame_off = next((f for f, m in provider.sent_at[index + 1:] if m.type in ("note_off", "note_on")
                          and m.note == message.note), None)
        if frame_off is None or frame_off - frame_on < 4096:
            continue
        segment = port.tap.samples(since=frame_on + 512)[:frame_off - frame_on - 512]
        unplayed = list(range(48, 56))  # not played, and not a harmonic of a note that was
        energies = pitch_energies(segment, port.tap.sample_rate, [message.note] + unplayed)
        assert energies[message.note] > 10 * max(energies[n] for n in unplayed), (message, energies)
        checked += 1
    assert checked >= 4
    assert {m.note for m in provider.sent if m.type == "note_on"} <= set(range(60, 68))

    panel.play_button.click()  # Stop
    qtbot.waitUntil(lambda: not window.playback.live.is_playing(), timeout=10_000)
    assert port.closed and port.voices_at_close == 0  # FluidSynth's own count: every voice released
    # silence: no voice, only the reverb's fading echo, at least 20 dB below the music
    assert rms(port.tap.samples(since=port.tap.frames_written - 256)) < 0.1 * loud
    offs = [m for m in provider.sent if m.type == "control_change" and m.control == 123]
    assert offs, "no All Notes Off on stop"


def test_instrument_volume_and_export_audio(qtbot, first_launch, tmp_path):
    window, provider = first_launch
    synth = window.live_panel.synth
    synth.program.setCurrentIndex(19)  # Church Organ
    synth.volume.setValue(80)
    assert provider.synth.gain == pytest.approx(0.8)
    window.live_panel.bpm.setValue(240)
    window.live_panel.play_button.click()
    qtbot.waitUntil(lambda: len(provider.sent) > 8, timeout=20_000)
    assert any(m.type == "program_change" and m.program == 19 for m in provider.sent)
    window.live_panel.play_button.click()
    out = tmp_path / "session.wav"
    assert window.playback.synth.export_audio(out)
    with wave.open(str(out), "rb") as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert frames.size and np.abs(frames).max() > 1000


def test_a_missing_fluidsynth_is_one_line_with_a_command_to_copy(qtbot, first_launch, monkeypatch):
    from rnnrbm_studio.live import builtin_synth
    from rnnrbm_studio.live.synth_engine import SynthUnavailable

    window, provider = first_launch

    def missing(*args, **kwargs):
        raise SynthUnavailable("the built-in synth needs FluidSynth (Couldn't find the FluidSynth library.): install")

    monkeypatch.setattr(builtin_synth, "SynthEngine", missing)
    messages = []
    window.playback.failed.connect(messages.append)
    window.live_panel.play_button.click()
    assert not window.playback.live.is_playing()
    assert messages and "\n" not in messages[0]
    synth = window.live_panel.synth
    assert synth.copy_button.isVisibleTo(window)
    synth.copy_button.click()
    assert QtWidgets.QApplication.clipboard().text().startswith("sudo apt install libfluidsynth3")
