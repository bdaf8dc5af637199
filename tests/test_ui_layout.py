"""The window at a laptop's 1280x800, offscreen: Play and the exports in sight without scrolling, a
piece's preview fitted to the piece and heard on the output, dynamics switched, status messages cut
at a word. The window and its helpers are test_ui.py's (a small model, a fake MIDI port)."""
from __future__ import annotations

import mido
import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore, QtWidgets  # noqa: E402

from jack_synth import unbalanced_notes  # noqa: E402
from rnnrbm_studio.music.midi_files import roll_to_midi  # noqa: E402
from rnnrbm_studio.ui.status_bar import ELLIPSIS  # noqa: E402
from test_ui import load, small_model_file, window  # noqa: E402,F401 (fixtures)

WIDTH, HEIGHT = 1280, 800


def settle(qtbot, window) -> None:
    """Laid out and painted at 1280x800."""
    window.resize(WIDTH, HEIGHT)
    qtbot.waitExposed(window)
    QtWidgets.QApplication.processEvents()
    assert (window.width(), window.height()) == (WIDTH, HEIGHT), "the window cannot be as small as 1280x800"


def assert_in_sight(window, widget: QtWidgets.QWidget) -> None:
    """All of `widget` is on screen: shown, inside every parent (a scroll area's viewport included, so
    not scrolled away) and inside the window; a button's own visible region is the whole button."""
    name = getattr(widget, "text", lambda: type(widget).__name__)()
    assert widget.isVisible(), f"{name} is hidden"
    where = QtCore.QRect(widget.mapTo(window, QtCore.QPoint(0, 0)), widget.size())
    parent = widget.parentWidget()
    while parent is not None and parent is not window:
        room = QtCore.QRect(parent.mapTo(window, QtCore.QPoint(0, 0)), parent.size())
        assert room.contains(where), f"{name} at {where} is clipped by {type(parent).__name__} at {room}"
        parent = parent.parentWidget()
    assert window.rect().contains(where), f"{name} lies outside the window"
    if isinstance(widget, QtWidgets.QAbstractButton):  # nothing drawn over it
        assert widget.visibleRegion().boundingRect() == widget.rect(), f"{name} is partly covered"


def controls_in_sight(window) -> list[QtWidgets.QWidget]:
    panel = window.live_panel
    return [panel.play_button, panel.export_session_button, panel.bars, panel.export_bars_button]


def assert_nothing_to_scroll(window) -> None:
    bar = window.live_scroll.verticalScrollBar()
    assert bar.maximum() == 0, f"the live column needs {bar.maximum()} px of scrolling at 1280x800"


def a_box(title: str, rows: int) -> QtWidgets.QGroupBox:
    """A box like those other parts add under Play live (sound: instrument, volume, device...)."""
    box = QtWidgets.QGroupBox(title)
    form = QtWidgets.QFormLayout(box)
    for row in range(rows):
        form.addRow(f"Setting {row}", QtWidgets.QComboBox())
    return box


def test_play_and_export_are_in_sight_at_1280x800_without_scrolling(qtbot, window):
    settle(qtbot, window)
    for widget in controls_in_sight(window):
        assert_in_sight(window, widget)
    assert_nothing_to_scroll(window)
    exports = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert any(text.startswith("&Export session") for text in exports)


def test_the_live_column_has_room_for_more_boxes(qtbot, window):
    """Boxes added under Play live (a play-along box: input, mode) keep Play and Export in sight."""
    window.add_live_box(a_box("Play along", rows=3))
    settle(qtbot, window)
    boxes = window.live_boxes
    assert [boxes.itemAt(i).widget() for i in range(2)] == [window.live_panel, boxes.itemAt(1).widget()]
    for widget in [*controls_in_sight(window), boxes.itemAt(1).widget()]:
        assert_in_sight(window, widget)
    assert_nothing_to_scroll(window)


def test_the_music_and_train_tabs_show_their_panels_whole(qtbot, window):
    settle(qtbot, window)
    for index, widgets in ((0, [window.corpus_panel.load_button, window.corpus_side.play_button]),
                           (1, [window.training_panel.train_button, window.training_plot])):
        window.tabs.setCurrentIndex(index)
        QtWidgets.QApplication.processEvents()
        for widget in widgets:
            assert_in_sight(window, widget)
        for widget in controls_in_sight(window):  # the live column stays
            assert_in_sight(window, widget)


def test_a_greyed_out_train_says_why_on_hover_and_the_music_tab_says_what_to_do(qtbot, window):
    from PySide6 import QtGui

    settle(qtbot, window)
    window.tabs.setCurrentIndex(1)
    QtWidgets.QApplication.processEvents()
    button = window.training_panel.train_button
    assert not button.isEnabled()
    hover = QtGui.QHelpEvent(QtCore.QEvent.Type.ToolTip, QtCore.QPoint(4, 4), button.mapToGlobal(QtCore.QPoint(4, 4)))
    QtWidgets.QApplication.sendEvent(button, hover)  # a disabled button still shows its tooltip
    assert QtWidgets.QToolTip.text().startswith("Load music first")
    QtWidgets.QToolTip.hideText()
    assert "choose a folder of MIDI files to train on" in window.corpus_panel.summary.text()


# ------------------------------------------------------------------------------ pieces
def write_pieces(folder, lengths: dict[str, int]):
    """A piece per name: a rising line of `length` steps (2 per beat at 120 bpm: 0.25 s a step)."""
    folder.mkdir()
    for name, length in lengths.items():
        roll = np.zeros((length, 88), dtype=np.uint8)
        roll[np.arange(length), 30 + np.arange(length) % 12] = 1
        roll_to_midi(roll, folder / name, bpm=120, steps_per_beat=2)
    return folder


def test_the_preview_spans_the_piece_it_shows(qtbot, window, tmp_path):
    load(qtbot, window, write_pieces(tmp_path / "music", {"long.mid": 160, "short.mid": 24}))
    for row, steps in ((0, 160), (1, 24)):  # natural order: long, short
        window.pieces.setCurrentRow(row)
        (left, right), _ = window.preview.viewRange()
        assert (left, right) == pytest.approx((0.0, steps * 0.25))
        assert window.preview.image.width() == steps  # every step drawn, none cut off
        assert window.preview.frames_pushed == steps


def test_a_piece_plays_on_the_chosen_output_to_its_end_then_all_is_quiet(qtbot, window, tmp_path):
    load(qtbot, window, write_pieces(tmp_path / "music", {"tiny.mid": 6}))
    window.pieces.setCurrentRow(0)
    window.live_panel.dynamics.setChecked(False)
    button = window.corpus_side.play_button
    with qtbot.waitSignal(window.playback.piece.playing_changed, timeout=20_000,
                          check_params_cb=lambda playing: not playing):
        button.click()  # six steps, 1.5 s
        assert button.text() == "Stop piece" and window.playback.piece.is_playing()
    assert button.text() == "Play piece" and not button.isChecked()
    sent = window.fake_ports.opened[-1].messages
    ons = [(m.note, m.velocity) for m in sent if m.type == "note_on" and m.velocity > 0]
    assert ons == [(21 + 30 + step, 80) for step in range(6)]  # the piece, note by note, one velocity
    assert unbalanced_notes(sent) == {} and sent[-1].is_cc(123)
    assert window.fake_ports.opened[-1].closed


def test_stopping_a_piece_or_pressing_play_silences_it(qtbot, window, tmp_path):
    load(qtbot, window, write_pieces(tmp_path / "music", {"long.mid": 400}))
    window.pieces.setCurrentRow(0)
    window.corpus_side.play_button.click()
    port = window.fake_ports.opened[-1]
    qtbot.waitUntil(lambda: sum(m.type == "note_on" for m in port.messages) >= 2, timeout=20_000)
    window.corpus_side.play_button.click()  # Stop piece
    assert not window.playback.piece.is_playing() and unbalanced_notes(port.messages) == {}
    assert port.messages[-1].is_cc(123) and port.closed
    window.corpus_side.play_button.click()
    second = window.fake_ports.opened[-1]
    qtbot.waitUntil(lambda: any(m.type == "note_on" for m in second.messages), timeout=20_000)
    window.playback.toggle_play()  # the model's Play: the piece stops first
    assert not window.playback.piece.is_playing() and unbalanced_notes(second.messages) == {}
    assert window.playback.live.is_playing() and window.corpus_side.play_button.text() == "Play piece"
    window.playback.toggle_play()


# ---------------------------------------------------------------------------- dynamics
def test_the_dynamics_box_switches_the_velocities_live_and_is_remembered(qtbot, window):
    panel = window.live_panel
    assert panel.dynamics.isChecked() and panel.playback_settings().dynamics
    panel.bpm.setValue(400)
    window.playback.toggle_play()
    port = window.fake_ports.opened[-1]

    def velocities(messages) -> set[int]:
        return {m.velocity for m in messages if m.type == "note_on" and m.velocity > 0}

    qtbot.waitUntil(lambda: len(velocities(port.messages)) > 1, timeout=30_000)  # accents: not one velocity
    panel.dynamics.setChecked(False)
    assert window.playback.live.settings.dynamics is False
    before = len(port.messages)
    qtbot.waitUntil(lambda: sum(m.type == "note_on" for m in port.messages[before:]) >= 3, timeout=30_000)
    assert velocities(port.messages[before:]) == {80}
    window.playback.toggle_play()
    window.close()
    assert window.settings.value("dynamics") in (False, "false")


# -------------------------------------------------------------------------- status bar
def test_a_long_status_message_is_cut_at_a_word_with_the_whole_in_its_tooltip(qtbot, window):
    settle(qtbot, window)
    bar = window.statusBar()
    words = ("No MIDI output found: start a synth such as FluidSynth with a General MIDI SoundFont, then "
             "press Refresh; or connect a hardware synthesizer and choose it in the list above").split()
    message = " ".join(words * 3) + "\nfluidsynth -a pulse -m alsa_seq /usr/share/sounds/sf2/default-GM.sf2"
    for width in (WIDTH, 700):
        window.resize(width, HEIGHT)
        QtWidgets.QApplication.processEvents()
        bar.showMessage(message, 10_000)
        shown = bar.currentMessage()
        assert shown.endswith(ELLIPSIS) and bar.toolTip() == message and bar.full_message() == message
        shown_words, said = shown[:-1].split(), words * 3
        count = len(shown_words)
        assert count > 3 and shown_words[:-1] == said[:count - 1]  # whole words, from the start
        assert shown_words[-1] == said[count - 1].rstrip(",;:.")  # the last one whole too (its comma dropped)
        assert bar.fontMetrics().horizontalAdvance(shown) <= bar.width() - window.model_label.width()
    bar.showMessage("Saved 12 steps to take.mid", 5000)
    assert bar.currentMessage() == "Saved 12 steps to take.mid" and bar.toolTip() == ""


@pytest.mark.parametrize("dynamics", [True, False])
def test_export_new_bars_follows_the_dynamics_box(qtbot, window, tmp_path, dynamics):
    from rnnrbm_studio.music.dynamics import velocities
    from rnnrbm_studio.music.midi_files import read_midi
    from rnnrbm_studio.music.pianoroll import RollSettings

    window.live_panel.dynamics.setChecked(dynamics)
    out = tmp_path / "bars.mid"
    with qtbot.waitSignal(window.playback.bars_export.exported, timeout=60_000):
        assert window.playback.export_bars(out, 8) is not None
    tick, written = 0, []
    midi = mido.MidiFile(out)
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "note_on" and message.velocity > 0:
            written.append((tick * 2 // midi.ticks_per_beat, message.note - 21, message.velocity))
    assert written, "the model wrote no notes to check"
    expected = velocities(read_midi(out, RollSettings()).roll, 2, 80, dynamics=dynamics)
    assert [v for _, _, v in written] == [int(expected[step, key]) for step, key, _ in written]
    assert (len({v for _, _, v in written}) > 1) is dynamics
