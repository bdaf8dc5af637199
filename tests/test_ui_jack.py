"""The window playing on a real synth: a JACK server (dummy driver) and FluidSynth, started by fixtures."""
from __future__ import annotations

from dataclasses import replace

import mido
import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore, QtWidgets  # noqa: E402

from jack_synth import (CHURCH_ORGAN, fluidsynth, jack_server, own_fluidsynth, own_jack_server,  # noqa: E402,F401
                        scale_model, wait_until)
from rnnrbm_studio.live.builtin_synth import BUILTIN_SYNTH_NAME
from rnnrbm_studio.live.jack_watch import SERVER_GONE  # noqa: E402
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint  # noqa: E402
from rnnrbm_studio.ui.main_window import MainWindow  # noqa: E402
from ui_helpers import assert_no_qt_leaks  # noqa: E402

pytestmark = pytest.mark.jack


def _window(qtbot, tmp_path) -> MainWindow:
    model_file = tmp_path / "scale.pt"
    save_checkpoint(model_file, model_checkpoint(scale_model()))
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    window = MainWindow(QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat), model_file,
                        models_dir=tmp_path / "models")
    qtbot.addWidget(window)
    window.show()
    return window


def test_window_plays_on_fluidsynth_and_leaves_no_voice_after_stop(qtbot, jack_server, fluidsynth, tmp_path):
    window = _window(qtbot, tmp_path)
    names = [window.live_panel.port.itemText(i) for i in range(window.live_panel.port.count())]
    assert "synth:midi_00" in names
    window.live_panel.port.setCurrentText("synth:midi_00")
    window.live_panel.bpm.setValue(240)
    window.playback.toggle_play()
    player = window.playback.live.player
    player.update(replace(player.settings, program=CHURCH_ORGAN))  # an organ sustains: a stuck note would show
    assert window.playback.live.is_playing()
    qtbot.waitUntil(lambda: window.piano_roll.frames_pushed >= 8, timeout=20_000)
    voices = wait_until(fluidsynth.voice_count, 5, what="FluidSynth sounding a voice")
    assert voices > 0
    window.playback.toggle_play()
    assert not window.playback.live.is_playing()
    wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="every voice to end after stop")
    assert len(fluidsynth.log_events("noteon")) >= 8
    session = tmp_path / "session.mid"
    assert window.playback.export_session(session)
    assert sum(1 for m in mido.MidiFile(session) if m.type == "note_on" and m.velocity > 0) >= 8
    window.close()
    assert_no_qt_leaks(window)


def test_window_stops_says_so_and_lists_no_port_when_the_jack_server_dies(qtbot, own_jack_server, own_fluidsynth,
                                                                         tmp_path):
    window = _window(qtbot, tmp_path)
    panel = window.live_panel
    assert "synth:midi_00" in [panel.port.itemText(i) for i in range(panel.port.count())]
    panel.port.setCurrentText("synth:midi_00")
    panel.bpm.setValue(400)
    window.playback.toggle_play()
    qtbot.waitUntil(lambda: window.piano_roll.frames_pushed >= 3, timeout=20_000)
    assert window.playback.live.is_playing() and panel.play_button.isChecked()
    with qtbot.waitSignal(window.playback.live.error, timeout=5_000) as error:
        own_jack_server.kill()
    assert error.args == [SERVER_GONE]
    qtbot.waitUntil(lambda: not window.playback.live.is_playing() and not panel.play_button.isChecked(), timeout=5_000)
    assert panel.play_button.text() == "Play"
    assert window.statusBar().currentMessage() == SERVER_GONE
    # refreshed: no MIDI system now, so only the built-in synth is left, and Play is offered on it
    assert [panel.port.itemText(i) for i in range(panel.port.count())] == [BUILTIN_SYNTH_NAME]
    assert panel.play_button.isEnabled()
    assert window.playback.live.port is None  # closed: its sender process has exited
    window.close()
    assert_no_qt_leaks(window)
