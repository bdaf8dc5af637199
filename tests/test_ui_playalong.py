"""The window playing along: the Play along box (input, mode, clock, MIDI learn), the musician's notes
in the piano-roll in their own colour, the two-track export, and inputs closed cleanly.

Most tests use a fake MIDI input whose events come from a thread of its own, as a real input's do
(so they cross to the GUI thread as they would); the last test plays a real keyboard on JACK into the
window's virtual input, with FluidSynth as the synth. No test sleeps: each waits on a condition.
"""
from __future__ import annotations

import threading
import time

import mido
import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore, QtWidgets  # noqa: E402

from jack_synth import fluidsynth, jack_server, scale_model, unbalanced_notes, wait_until  # noqa: E402,F401
from rnnrbm_studio.live.cc_map import CcMap  # noqa: E402
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint  # noqa: E402
from rnnrbm_studio.ui.main_window import MainWindow  # noqa: E402
from rnnrbm_studio.ui.midi_inputs import VIRTUAL_INPUT_LABEL  # noqa: E402
from rnnrbm_studio.ui.panels.playalong import NO_INPUT, note_from_text  # noqa: E402
from rnnrbm_studio.ui.piano_roll import BOTH, COLOURS, MUSICIAN, ONSET  # noqa: E402
from test_ui import small_model_file  # noqa: E402,F401 (fixture)
from ui_helpers import FakePortProvider, assert_no_qt_leaks  # noqa: E402


class FakeInput:
    """A MIDI input that delivers what a test sends from a thread of its own, stamped with the
    player's clock (perf_counter), as midi_input.MidiInput does."""

    def __init__(self, name: str):
        self.name = name
        self.closed = False
        self.gone: str | None = None  # problem(): set it to unplug the keyboard
        self._listeners: list = []

    def add_listener(self, listener) -> None:
        self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener) -> None:
        self._listeners = [known for known in self._listeners if known != listener]

    def problem(self) -> str | None:
        return None if self.closed else self.gone

    def close(self) -> None:
        self.closed = True

    def send(self, *messages, times: list[float] | None = None) -> None:
        def deliver() -> None:
            for index, message in enumerate(messages):
                stamp = time.perf_counter() if times is None else times[index]
                for listener in self._listeners:
                    listener(stamp, list(message))

        thread = threading.Thread(target=deliver, name="fake-midi-input")
        thread.start()
        thread.join()


class FakeInputProvider:
    def __init__(self, names=("Fake Keys", "Other Keys")):
        self._names = list(names)
        self.opened: list[FakeInput] = []

    def names(self) -> list[str]:
        return list(self._names)

    def open(self, name: str) -> FakeInput:
        self.opened.append(FakeInput(name))
        return self.opened[-1]


def make_window(qtbot, settings_file, model_file, inputs=None) -> MainWindow:
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    inputs = inputs or FakeInputProvider()
    window = MainWindow(QtCore.QSettings(str(settings_file), QtCore.QSettings.Format.IniFormat), model_file,
                        port_provider=FakePortProvider(), models_dir=settings_file.parent / "models",
                        input_provider=inputs)
    window.fake_inputs, window.fake_ports = inputs, window.playback.live.port_provider
    qtbot.addWidget(window)
    window.show()
    return window


@pytest.fixture
def window(qtbot, tmp_path, small_model_file):
    main = make_window(qtbot, tmp_path / "settings.ini", small_model_file)
    yield main
    main.close()
    assert_no_qt_leaks(main)


def choose_input(window, name: str) -> None:
    """As the user picks it in the Input list."""
    combo = window.playalong_panel.input
    combo.setCurrentIndex(combo.findText(name))
    combo.activated.emit(combo.currentIndex())


def learn_action(window, parameter_label: str):
    return next(a for a in window.playalong_panel.learn_menu.actions() if a.text().startswith(parameter_label))


# ------------------------------------------------------------------------------ MIDI learn
def test_midi_learn_binds_a_controller_that_then_moves_the_temperature_and_survives_a_new_window(
        qtbot, tmp_path, small_model_file):
    settings_file = tmp_path / "settings.ini"
    first = make_window(qtbot, settings_file, small_model_file)
    panel, box = first.playalong_panel, first.live_panel.temperature
    assert [panel.input.itemText(i) for i in range(panel.input.count())] == [NO_INPUT, "Fake Keys", "Other Keys"]
    choose_input(first, "Fake Keys")
    keys = first.fake_inputs.opened[-1]
    keys.send([0xB0, 74, 30])  # bound to nothing yet: moves nothing
    learn_action(first, "Temperature").trigger()
    assert panel.learn_button.text() == "Learning…"
    keys.send([0xB0, 74, 10])  # the knob moved after Learn: bound
    qtbot.waitUntil(lambda: first.playalong.cc_map.controller_of("temperature") == 74, timeout=5_000)
    assert panel.knobs.isVisible() and "Temperature CC 74" in panel.knobs.text()
    assert panel.learn_button.text() == "MIDI learn" and box.value() == 1.0  # learning moves nothing
    keys.send([0xB0, 74, 96])
    expected = CcMap.parse(["temperature=74"]).apply(74, 96).value
    qtbot.waitUntil(lambda: box.value() == pytest.approx(expected, abs=0.005), timeout=5_000)
    assert first.playback.live.settings.temperature == pytest.approx(expected, abs=0.005)
    keys.send([0xB0, 75, 127])  # another controller: not bound, nothing moves
    first.close()
    assert keys.closed and first.fake_inputs.opened[-1] is keys
    assert_no_qt_leaks(first)

    second = make_window(qtbot, settings_file, small_model_file)
    try:
        assert second.playalong.cc_map.controller_of("temperature") == 74
        assert "Temperature CC 74" in second.playalong_panel.knobs.text()
        assert second.playalong_panel.chosen_input() == "Fake Keys"  # reopened: the knob works at once
        second.fake_inputs.opened[-1].send([0xB0, 74, 0])
        qtbot.waitUntil(lambda: second.live_panel.temperature.value() == pytest.approx(0.25), timeout=5_000)
        menu = second.playalong.context_menu("temperature")  # right-click on the temperature box
        assert [a.text() for a in menu.actions()] == ["MIDI learn Temperature…", "Forget controller 74"]
        menu.actions()[1].trigger()
        assert second.playalong.cc_map.controller_of("temperature") is None and not second.playalong_panel.knobs.text()
    finally:
        second.close()
    assert CcMap.parse([str(second.settings.value("playalong/knobs"))]).bindings == {}
    assert_no_qt_leaks(second)


def test_a_pad_plays_and_stops_and_a_knob_switches_the_mode(qtbot, window):
    section = window.playalong
    choose_input(window, "Fake Keys")
    keys = window.fake_inputs.opened[-1]
    section.learn("play")
    keys.send([0xB0, 20, 0])
    qtbot.waitUntil(lambda: section.cc_map.bindings == {20: "play"}, timeout=5_000)
    section.learn("mode")
    keys.send([0xB0, 21, 0])
    qtbot.waitUntil(lambda: section.cc_map.bindings == {20: "play", 21: "mode"}, timeout=5_000)
    keys.send([0xB0, 20, 127])  # pressed: play
    qtbot.waitUntil(lambda: window.playback.live.is_playing(), timeout=5_000)
    assert window.live_panel.play_button.text() == "Stop"
    keys.send([0xB0, 21, 64])  # the middle third: accompany
    qtbot.waitUntil(lambda: window.playalong_panel.mode.currentData() == "accompany", timeout=5_000)
    assert window.playback.live.player.playalong.mode == "accompany"
    keys.send([0xB0, 20, 0], [0xB0, 20, 127])  # released, pressed again: stop
    qtbot.waitUntil(lambda: not window.playback.live.is_playing(), timeout=5_000)
    port = window.fake_ports.opened[-1]
    assert unbalanced_notes(port.messages) == {} and port.messages[-1].is_cc(123)


# ------------------------------------------------------------------------ playing along
def held(keys: FakeInput, *notes: int) -> None:
    keys.send(*[[0x90, note, 90] for note in notes])


def test_accompany_shows_the_musician_in_their_colour_switches_mode_while_playing_and_exports_two_tracks(
        qtbot, window, tmp_path):
    panel, live = window.playalong_panel, window.playback.live
    window.live_panel.bpm.setValue(400)
    choose_input(window, "Fake Keys")
    keys = window.fake_inputs.opened[-1]
    panel.set_mode("accompany")
    panel.max_notes.setValue(3)
    assert panel.mode_settings.currentIndex() == 1 and live.playalong.max_notes == 3
    window.playback.toggle_play()
    assert live.player.playalong.mode == "accompany"
    roll = window.piano_roll
    held(keys, 60, 64)  # C4 and E4, held
    qtbot.waitUntil(lambda: roll.frames_pushed >= 3 and (roll.latest_frames(1)[0] == MUSICIAN).sum() == 2,
                    timeout=10_000)
    shown = roll.latest_frames(roll.frames_pushed)
    assert set(np.flatnonzero((shown == MUSICIAN).any(axis=0))) == {60 - 21, 64 - 21}
    assert not (shown == BOTH).any()  # the model never doubles a held key
    roll.refresh()
    roll.image.render()  # the pixels drawn: the musician's key in the musician's colour
    image = roll.image.qimage
    column, row = image.width() - 1, 60 - 21
    assert image.pixelColor(column, row).getRgb()[:3] == tuple(COLOURS[MUSICIAN][:3])
    model_keys = np.argwhere(np.isin(roll._window().T, (ONSET,)))
    if len(model_keys):  # a model's onset, if drawn, is in the model's colour, not the musician's
        key, frame = model_keys[-1]
        assert image.pixelColor(int(frame), int(key)).getRgb()[:3] == tuple(COLOURS[ONSET][:3])

    panel.set_mode("answer")  # while playing
    panel.answer_after.setValue(0.5)
    assert live.player.playalong.mode == "answer" and live.player.playalong.answer_after_beats == 0.5
    keys.send([0x80, 60, 0], [0x80, 64, 0])
    frames = live.player.frames_played
    qtbot.waitUntil(lambda: live.player.frames_played >= frames + 2, timeout=5_000)  # listening from here on
    keys.send([0x90, 67, 90])  # a call
    frames = live.player.frames_played
    qtbot.waitUntil(lambda: live.player.frames_played >= frames + 2, timeout=5_000)
    keys.send([0x80, 67, 0])  # the call ends: the model answers after half a beat
    qtbot.waitUntil(lambda: live.player.answering, timeout=10_000)
    panel.set_mode("solo")
    assert live.player.playalong.mode == "solo"
    window.playback.toggle_play()
    port = window.fake_ports.opened[-1]
    assert unbalanced_notes(port.messages) == {} and port.messages[-1].is_cc(123)
    session = tmp_path / "session.mid"
    assert window.playback.export_session(session)
    midi = mido.MidiFile(session)
    names = [next(m.name for m in track if m.type == "track_name") for track in midi.tracks]
    assert names == ["model", "musician"]
    assert {m.note for m in midi.tracks[1] if m.type == "note_on" and m.velocity} == {60, 64, 67}


def test_the_input_vanishing_is_one_line_and_leaves_no_note(qtbot, window):
    choose_input(window, "Fake Keys")
    keys = window.fake_inputs.opened[-1]
    keys.gone = "the MIDI input 'Fake Keys' is gone (was the keyboard unplugged?)"  # while idle
    qtbot.waitUntil(lambda: keys.closed, timeout=5_000)
    assert window.statusBar().currentMessage() == keys.gone
    assert window.playalong_panel.chosen_input() == ""
    window.playalong.refresh_inputs()  # plugged in again: Refresh opens it again
    again = window.fake_inputs.opened[-1]
    assert again is not keys and window.playalong_panel.chosen_input() == "Fake Keys"
    window.live_panel.bpm.setValue(400)
    window.playalong_panel.set_mode("accompany")
    window.playback.toggle_play()
    held(again, 50)
    qtbot.waitUntil(lambda: window.playback.live.player.frames_played >= 4, timeout=10_000)
    again.gone = "the MIDI input 'Fake Keys' is gone (was the keyboard unplugged?)"  # while playing
    qtbot.waitUntil(lambda: not window.playback.live.is_playing() and again.closed, timeout=5_000)
    assert window.statusBar().currentMessage() == again.gone
    assert not window.live_panel.play_button.isChecked() and window.playalong_panel.chosen_input() == ""
    port = window.fake_ports.opened[-1]
    assert unbalanced_notes(port.messages) == {} and port.messages[-1].is_cc(123)
    assert not window.playback.live.player.folder.held_at(time.perf_counter()).any()  # the key let go


def test_changing_input_closes_the_old_one_and_lets_its_keys_go(qtbot, window):
    choose_input(window, "Fake Keys")
    first = window.fake_inputs.opened[-1]
    window.playalong_panel.set_mode("accompany")
    window.playback.toggle_play()
    held(first, 62)
    folder = window.playback.live.player.folder
    assert folder.held_at(time.perf_counter()).any()
    choose_input(window, "Other Keys")
    assert first.closed and not folder.held_at(time.perf_counter()).any()
    second = window.fake_inputs.opened[-1]
    held(second, 65)
    assert np.flatnonzero(folder.held_at(time.perf_counter())).tolist() == [65 - 21]
    first.send([0x90, 70, 90])  # the closed one is heard no more
    assert np.flatnonzero(folder.held_at(time.perf_counter())).tolist() == [65 - 21]
    choose_input(window, NO_INPUT)
    assert second.closed and window.playalong.relay.input is None
    window.playback.toggle_play()


def test_following_a_daw_clock_sets_the_tempo_and_starts_and_stops(qtbot, window):
    panel = window.playalong_panel
    choose_input(window, "Fake Keys")
    keys = window.fake_inputs.opened[-1]
    panel.follow_clock.setChecked(True)
    start, tick = time.perf_counter(), 60.0 / (137.5 * 24)  # a DAW at 137.5 BPM
    keys.send([0xFA], *[[0xF8]] * 49, times=[start] + [start + i * tick for i in range(49)])
    qtbot.waitUntil(lambda: window.playback.live.is_playing(), timeout=5_000)  # Start played
    qtbot.waitUntil(lambda: window.playback.live.settings.bpm == pytest.approx(137.5, abs=0.05), timeout=5_000)
    assert window.live_panel.bpm.value() == 138  # the box shows it rounded; it plays at 137.5
    assert window.playback.live.player.settings.bpm == pytest.approx(137.5, abs=0.05)
    keys.send([0xFC])  # Stop
    qtbot.waitUntil(lambda: not window.playback.live.is_playing(), timeout=5_000)
    panel.follow_clock.setChecked(False)
    keys.send([0xFA])  # not followed now
    assert not window.playback.live.is_playing()


def test_the_box_remembers_its_mode_and_settings(qtbot, tmp_path, small_model_file):
    settings_file = tmp_path / "settings.ini"
    first = make_window(qtbot, settings_file, small_model_file)
    panel = first.playalong_panel
    panel.set_mode("accompany")
    panel.split.lineEdit().selectAll()
    qtbot.keyClicks(panel.split, "C4")  # typed as a note name
    panel.split.interpretText()
    assert panel.split.value() == 60 and panel.split.text() == "below C4"
    panel.follow_clock.setChecked(True)
    first.close()
    second = make_window(qtbot, settings_file, small_model_file)
    try:
        along = second.playback.live.playalong
        assert (along.mode, along.split) == ("accompany", 60) and second.playalong_panel.follow_clock.isChecked()
    finally:
        second.close()
    assert [note_from_text(text) for text in ("C4", "F#3", "Bb2", "60", "H2")] == [60, 54, 46, 60, None]


# ---------------------------------------------------------------------- real keyboard, JACK
ALONG = [60, 62, 64, 65, 67, 65, 64, 62]  # C4 up to G4 and back: keys the scale model plays itself


@pytest.mark.jack
def test_a_keyboard_on_jack_is_accompanied_in_the_window_never_doubled_and_silence_after_stop(
        qtbot, jack_server, fluidsynth, tmp_path):
    from test_playalong_jack import Keyboard, melody_events

    model_file = tmp_path / "scale.pt"
    save_checkpoint(model_file, model_checkpoint(scale_model()))  # plays C4..G4 in turn, one key a frame
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    window = MainWindow(QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat), model_file,
                        models_dir=tmp_path / "models")  # the real outputs and inputs
    qtbot.addWidget(window)
    window.show()
    keyboard = None
    try:
        panel = window.playalong_panel
        assert VIRTUAL_INPUT_LABEL in [panel.input.itemText(i) for i in range(panel.input.count())]
        choose_input(window, VIRTUAL_INPUT_LABEL)
        keyboard = Keyboard(connect_to="RNN-RBM Studio In:RNN-RBM Studio In")
        panel.set_mode("accompany")
        window.live_panel.port.setCurrentText("synth:midi_00")
        window.live_panel.bpm.setValue(240)
        window.playback.toggle_play()
        player = window.playback.live.player
        keyboard.play(melody_events(ALONG, beat=0.25))
        keyboard.wait()
        qtbot.waitUntil(lambda: player.frames_played >= 40, timeout=20_000)
        window.playback.toggle_play()
        wait_until(lambda: fluidsynth.voice_count() == 0, 5, what="every voice to end after stop")
        assert set(21 + np.flatnonzero(player.musician_roll().any(axis=0))) == set(ALONG)  # every key heard
        assert player.recorded_roll().any(), "the model played nothing"
        window.playback._on_display_tick()  # the last frames drawn
        shown = window.piano_roll.latest_frames(window.piano_roll.frames_pushed)
        assert window.piano_roll.frames_pushed == player.frames_played <= window.piano_roll.capacity
        # the keys held at each frame's deadline, in the musician's colour; never one the model plays too
        assert set(21 + np.flatnonzero((shown == MUSICIAN).any(axis=0))) == set(ALONG)
        assert not (shown == BOTH).any()
    finally:
        window.close()
        if keyboard is not None:
            keyboard.close()
    assert window.playalong.relay.input is None
    assert_no_qt_leaks(window)
