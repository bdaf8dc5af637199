"""The window along the user's path, offscreen with pytest-qt: load, train, stop, play, export, close.

Playback goes to a fake port here (a real synth is in test_ui_jack.py). No test sleeps: each waits
on a signal or a condition.
"""
from __future__ import annotations

import time
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")
from PySide6 import QtCore, QtWidgets  # noqa: E402

from rnnrbm_studio.training.checkpoint import load_checkpoint, load_model, model_checkpoint, save_checkpoint  # noqa: E402
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig  # noqa: E402
from rnnrbm_studio.music.midi_files import roll_to_midi  # noqa: E402
from rnnrbm_studio.ui.main_window import MainWindow  # noqa: E402

from ui_helpers import FakePortProvider, assert_no_qt_leaks  # noqa: E402


def write_corpus(folder: Path, n_files: int = 6, broken: int = 1) -> Path:
    """Small MIDI files made with mido: rising and falling arpeggios, plus broken files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n_files):
        roll = np.zeros((48, 88), dtype=np.uint8)
        root = 39 + int(rng.integers(0, 5))
        for t in range(48):
            roll[t, root + [0, 4, 7, 12][(t // 2) % 4]] = 1
            roll[t, root - 12] = 1
        roll_to_midi(roll, folder / f"piece{i}.mid", steps_per_beat=2)
    for i in range(broken):
        (folder / f"broken{i}.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    return folder


@pytest.fixture
def small_model_file(tmp_path) -> Path:
    model = RnnRbm(RnnRbmConfig(n_hidden=16, n_hidden_recurrent=8, cd_k=1, gibbs_steps=5))
    path = tmp_path / "small.pt"
    save_checkpoint(path, model_checkpoint(model))
    return path


@pytest.fixture
def window(qtbot, tmp_path, small_model_file):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    provider = FakePortProvider()
    main = MainWindow(settings, small_model_file, port_provider=provider, models_dir=tmp_path / "models")
    main.fake_ports = provider
    qtbot.addWidget(main)
    main.show()
    yield main
    main.close()
    assert_no_qt_leaks(main)


def load(qtbot, window, folder: Path):
    with qtbot.waitSignal(window.corpus_loaded, timeout=60_000) as blocker:
        window.load_folder(str(folder))
    return blocker.args[0]


def configure_small_training(window, epochs: int = 2):
    panel = window.training_panel
    panel.hidden.setValue(16)
    panel.recurrent.setValue(8)
    panel.cd_k.setValue(1)
    panel.epochs.setValue(epochs)
    panel.min_updates.setValue(0)  # exactly these epochs (the quality recipe's minimum is 28,000 updates)
    panel.batch_seqs.setValue(4)


def test_first_launch_loads_the_given_model(window, small_model_file):
    assert window.model_file.model is not None
    assert window.model_file.path == small_model_file
    assert "small.pt" in window.model_label.text()
    assert window.live_panel.play_button.isEnabled()  # the fake port is there


def test_the_bundled_model_opens_with_its_validation_curve_and_gibbs_steps(qtbot, tmp_path):
    """The bundled run's training readings are left out of its history (resources/default_model.md):
    the plot shows its 60 validation points and no training curve; its exact sampler runs its 1,000 Gibbs steps."""
    from rnnrbm_studio.assets import default_model_path
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    main = MainWindow(settings, default_model_path(), port_provider=FakePortProvider(), models_dir=tmp_path / "models")
    qtbot.addWidget(main)
    try:
        assert "default_model.pt" in main.model_label.text()
        assert main.training_plot.valid_epochs == list(range(1, 61))
        assert main.training_plot.train_values == []
        assert main.training_plot.legend_names() == ["validation log-likelihood (quick estimate)",
                                                     "validation monitor (right axis)",
                                                     "full evaluation (test split): -2.27",
                                                     "kept epoch (best log-likelihood)"]
        # the recorded full evaluation is drawn where the curve's axis shows it
        assert main.training_plot.reference_line.isVisible()
        low, high = main.training_plot.view_ranges()[1]
        assert main.training_plot.reference_line.value() == pytest.approx(-2.2674)
        assert low < main.training_plot.reference_line.value() < high
        assert main.live_panel.gibbs_steps.value() == 25  # the fast sampler's (from the RNN's guess)
        main.live_panel.sampler.setCurrentIndex(1)  # Exact (tutorial): from silence
        assert main.live_panel.gibbs_steps.value() == 1000  # the model's own setting, not clamped
    finally:
        main.close()
    assert_no_qt_leaks(main)

def test_load_folder_summarises_and_lists_skipped_files(qtbot, window, tmp_path):
    corpus = load(qtbot, window, write_corpus(tmp_path / "music", n_files=6, broken=2))
    assert len(corpus.pieces()) == 6
    assert window.pieces.count() == 6
    assert window.skipped.topLevelItemCount() == 2
    assert "6 pieces" in window.corpus_panel.summary.text()
    assert "2 skipped" in window.corpus_panel.summary.text()
    first_reason = window.skipped.topLevelItem(0).text(1)
    assert "not a readable MIDI file" in first_reason
    window.pieces.setCurrentRow(0)  # clicking a piece previews its roll
    assert window.preview.frames_pushed == 48
    assert window.training_panel.train_button.isEnabled()
    recent = window.settings.value("recent_folders")
    assert str(tmp_path / "music") in (recent if isinstance(recent, list) else [recent])


def test_pieces_are_listed_in_natural_order_and_preview_the_piece_clicked(qtbot, window, tmp_path):
    folder = tmp_path / "numbered"
    folder.mkdir()
    for number in (12, 1, 2, 13):
        # piece N holds one note, pitch 40 + N: the preview shows which piece it is
        roll_to_midi(np.eye(88, dtype=np.uint8)[[19 + number] * 8], folder / f"tune {number}.mid")
        (folder / f"broken {number}.mid").write_bytes(b"not MIDI")
    load(qtbot, window, folder)
    skipped = [window.skipped.topLevelItem(row).text(0) for row in range(window.skipped.topLevelItemCount())]
    assert skipped == ["broken 1.mid", "broken 2.mid", "broken 12.mid", "broken 13.mid"]
    pieces = window.pieces
    listed = [pieces.item(row).text() for row in range(pieces.count())]
    assert [name for name in listed if name.startswith("tune")] == ["tune 1.mid", "tune 2.mid", "tune 12.mid",
                                                                    "tune 13.mid"]
    pieces.setCurrentRow(listed.index("tune 12.mid"))
    shown = window.preview.latest_frames(1)[0]
    assert np.flatnonzero(shown).tolist() == [19 + 12]


def test_a_greyed_out_train_button_says_why(qtbot, window, tmp_path):
    panel = window.training_panel
    assert not panel.train_button.isEnabled() and panel.train_button.toolTip().startswith("Load music first")
    assert not panel.resume_button.isEnabled() and panel.resume_button.toolTip().startswith("Nothing to resume")
    load(qtbot, window, write_corpus(tmp_path / "music"))
    assert panel.train_button.isEnabled() and panel.train_button.toolTip().startswith("Train a new model")


def test_loading_a_folder_without_midi_says_so(qtbot, window, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    window.load_folder(str(empty))
    qtbot.waitUntil(lambda: not window.loader.is_running(), timeout=10_000)
    qtbot.waitUntil(lambda: "no MIDI files" in window.corpus_panel.summary.text(), timeout=5_000)
    assert window.corpus is None


def test_train_reports_progress_and_saves_a_checkpoint(qtbot, window, tmp_path):
    load(qtbot, window, write_corpus(tmp_path / "music"))
    configure_small_training(window, epochs=2)
    epochs_seen = []
    window.epoch_finished.connect(lambda p: epochs_seen.append(p.epoch))
    with qtbot.waitSignal(window.training_finished, timeout=120_000) as finished:
        window.training_panel.train_button.click()
        assert window.training_panel.stop_button.isEnabled()
    result = finished.args[0]
    assert result.status == "finished" and result.epochs_completed == 2
    assert epochs_seen == [1, 2]
    assert len(window.training_plot.epochs) == 2
    assert window.training_plot.legend_names() == [
        "validation log-likelihood (quick estimate) (bars: ± 1 AIS standard error)", "training monitor (right axis)",
        "validation monitor (right axis)", "kept epoch (best log-likelihood)"]
    assert window.model_file.path is not None and window.model_file.path.parent == tmp_path / "models"
    assert load_checkpoint(window.model_file.path).training.progress.epochs_completed == 2
    assert window.training_panel.resume_button.isEnabled()
    assert not window.training_panel.stop_button.isEnabled()


def test_the_same_seed_trains_the_same_model_twice(qtbot, window, tmp_path):
    load(qtbot, window, write_corpus(tmp_path / "music"))
    configure_small_training(window, epochs=1)
    window.training_panel.recipe.setChecked(False)
    paths = []
    for _ in range(2):
        with qtbot.waitSignal(window.training_finished, timeout=120_000) as finished:
            window.training_panel.train_button.click()
        assert finished.args[0].status == "finished"
        paths.append(window.model_file.path)
    assert paths[0] != paths[1]  # two runs in the same second still get files of their own
    first, second = (load_checkpoint(path).model_state for path in paths)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_stop_then_resume_training(qtbot, window, tmp_path):
    load(qtbot, window, write_corpus(tmp_path / "music"))
    configure_small_training(window, epochs=500)
    with qtbot.waitSignal(window.training_finished, timeout=120_000) as finished:
        window.training_panel.train_button.click()
        with qtbot.waitSignal(window.epoch_finished, timeout=60_000):
            pass
        window.training_panel.stop_button.click()
    result = finished.args[0]
    assert result.status == "stopped"
    stopped_at = load_checkpoint(window.model_file.path).training.progress.epochs_completed
    assert 1 <= stopped_at < 500
    window.training_panel.epochs.setValue(stopped_at + 1)
    with qtbot.waitSignal(window.training_finished, timeout=120_000) as finished:
        window.training_panel.resume_button.click()
    assert finished.args[0].status == "finished"
    assert load_checkpoint(window.model_file.path).training.progress.epochs_completed == stopped_at + 1


def test_closing_mid_training_keeps_the_checkpoint(qtbot, tmp_path, small_model_file):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    main = MainWindow(settings, small_model_file, port_provider=FakePortProvider(), models_dir=tmp_path / "models")
    main.show()
    load(qtbot, main, write_corpus(tmp_path / "music"))
    configure_small_training(main, epochs=500)
    main.training_panel.train_button.click()
    with qtbot.waitSignal(main.epoch_finished, timeout=60_000):
        pass
    checkpoint = next((tmp_path / "models").glob("*.pt"))
    main.close()  # stops training, waits for it
    assert not main.training.is_running()
    assert load_checkpoint(checkpoint).training.progress.epochs_completed >= 1
    model, _ = load_model(checkpoint)
    assert all(np.isfinite(v.numpy()).all() for v in model.state_dict().values())
    assert_no_qt_leaks(main)
    main.deleteLater()


def test_play_streams_frames_to_the_port_and_the_piano_roll(qtbot, window):
    port = window.fake_ports
    window.live_panel.bpm.setValue(400)
    window.playback.toggle_play()
    assert window.playback.live.is_playing()
    qtbot.waitUntil(lambda: window.piano_roll.frames_pushed >= 8, timeout=20_000)
    window.playback.toggle_play()
    assert not window.playback.live.is_playing()
    sent = port.opened[-1].messages
    ons = sum(1 for m in sent if m.type == "note_on" and m.velocity > 0)
    offs = sum(1 for m in sent if m.type == "note_off" or (m.type == "note_on" and m.velocity == 0))
    assert ons > 0
    assert ons <= offs  # every note-on has its note-off after stop
    assert any(m.type == "control_change" and m.control == 123 for m in sent)  # All Notes Off


def test_a_gru_model_opens_says_so_and_plays(qtbot, tmp_path):
    """A model with the gated recurrence (--recurrence gru) is a model like any other to the window."""
    model = RnnRbm(RnnRbmConfig(n_hidden=16, n_hidden_recurrent=8, cd_k=1, gibbs_steps=5, recurrence="gru"))
    with torch.no_grad():
        model.bv.fill_(-1.0)  # a few keys on in most frames
    path = tmp_path / "gated.pt"
    save_checkpoint(path, model_checkpoint(model))
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    provider = FakePortProvider()
    main = MainWindow(settings, path, port_provider=provider, models_dir=tmp_path / "models")
    qtbot.addWidget(main)
    main.show()
    try:
        assert "gated.pt (16/8 gru" in main.model_label.text()
        main.live_panel.bpm.setValue(400)
        main.playback.toggle_play()
        qtbot.waitUntil(lambda: main.piano_roll.frames_pushed >= 8, timeout=20_000)
        main.playback.toggle_play()
        assert any(m.type == "note_on" and m.velocity > 0 for m in provider.opened[-1].messages)
    finally:
        main.close()
    assert_no_qt_leaks(main)


def test_export_session_and_new_bars(qtbot, window, tmp_path):
    window.live_panel.bpm.setValue(400)
    window.playback.toggle_play()
    qtbot.waitUntil(lambda: window.piano_roll.frames_pushed >= 8, timeout=20_000)
    window.playback.toggle_play()
    session = tmp_path / "session.mid"
    assert window.playback.export_session(session)
    midi = mido.MidiFile(session)
    assert midi.length > 0
    bars = tmp_path / "bars.mid"
    with qtbot.waitSignal(window.playback.bars_export.exported, timeout=60_000) as exported:
        assert window.playback.export_bars(bars, 4) is not None  # generates in a worker
    assert exported.args[0] == bars
    midi = mido.MidiFile(bars)
    assert len(midi.tracks) == 1
    # 4 bars of 4 beats, the trailing silence included: the file lasts exactly what was asked for
    assert sum(message.time for message in midi.tracks[0]) == 4 * 4 * midi.ticks_per_beat
    assert midi.length == pytest.approx(4 * 4 * 60 / 400)  # at the window's tempo, 400 BPM


def test_exporting_many_bars_keeps_the_window_responsive_and_cancel_writes_nothing(qtbot, window, tmp_path):
    """Generation runs in a worker: the event loop keeps turning while it runs (on the GUI thread this
    export froze the window for its whole length, about 10 s here), and Cancel leaves no file."""
    window.live_panel.gibbs_steps.setValue(5000)  # the small model, slowly: ~75 ms a frame, 128 frames
    path = tmp_path / "long.mid"
    ticks, reports = [], []
    heartbeat = QtCore.QTimer()
    heartbeat.timeout.connect(lambda: ticks.append(time.monotonic()))
    heartbeat.start(10)
    started = time.monotonic()
    try:
        handle = window.playback.export_bars(path, 16)
        returned_after = time.monotonic() - started
        assert returned_after < 1.0, f"export_bars held the GUI thread for {returned_after:.1f} s"
        # connected after the start, as safely: what the worker reports reaches us through the event loop
        window.playback.bars_export.progress.connect(lambda done, total: reports.append((done, total)))
        assert handle is not None and handle.is_running()
        assert window.playback.bars_export.status.isVisible() and not window.live_panel.export_bars_button.isEnabled()
        window.stall_monitor.reset()
        qtbot.waitUntil(lambda: len(ticks) >= 20 and any(done > 0 for done, _ in reports), timeout=30_000)
        assert handle.is_running(), "the export ended before it could be cancelled: make it slower"
        assert window.stall_monitor.max_stall_ms < 1000
        assert window.playback.bars_export.status.progress.value() > 0
        assert all(total == 16 * 4 * 2 for _, total in reports)
        with qtbot.waitSignals([window.playback.bars_export.cancelled, handle.finished], timeout=30_000):
            window.playback.bars_export.status.cancel_button.click()
    finally:
        heartbeat.stop()
    assert not path.exists()
    assert list(tmp_path.glob(".long.mid*")) == []  # no half-written temporary file either
    assert not handle.thread_running() and window.workers.handles() == []
    assert not window.playback.bars_export.status.isVisible() and window.live_panel.export_bars_button.isEnabled()
    assert "cancelled" in window.statusBar().currentMessage()


def test_export_new_bars_button_writes_exactly_the_bars_asked_for(qtbot, window, tmp_path, monkeypatch):
    path = tmp_path / "eight.mid"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", staticmethod(lambda *args, **kw: (str(path), "")))
    window.live_panel.bpm.setValue(120)
    window.live_panel.bars.setValue(8)
    with qtbot.waitSignal(window.playback.bars_export.exported, timeout=60_000):
        window.live_panel.export_bars_button.click()
        assert not window.live_panel.export_bars_button.isEnabled()  # one export at a time
        assert window.playback.export_bars(tmp_path / "second.mid", 2) is None
    qtbot.waitUntil(lambda: window.live_panel.export_bars_button.isEnabled(), timeout=10_000)
    midi = mido.MidiFile(path)
    assert sum(message.time for message in midi.tracks[0]) == 8 * 4 * midi.ticks_per_beat
    assert midi.length == pytest.approx(8 * 4 * 60 / 120)
    assert "Saved 8 new bars" in window.statusBar().currentMessage()
    assert not (tmp_path / "second.mid").exists()


def test_an_export_that_cannot_be_written_says_why(qtbot, window, tmp_path):
    path = tmp_path / "no such folder" / "bars.mid"
    with qtbot.waitSignal(window.playback.bars_export.failed, timeout=60_000) as failed:
        window.playback.export_bars(path, 1)
    assert "Cannot write" in failed.args[0] and "Cannot write" in window.statusBar().currentMessage()


def test_settings_persist_across_windows(qtbot, tmp_path, small_model_file):
    settings_file = str(tmp_path / "settings.ini")
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    first = MainWindow(QtCore.QSettings(settings_file, QtCore.QSettings.Format.IniFormat), small_model_file,
                       port_provider=FakePortProvider(), models_dir=tmp_path / "models")
    first.live_panel.bpm.setValue(97)
    first.training_panel.hidden.setValue(77)
    first.close()
    first.deleteLater()
    second = MainWindow(QtCore.QSettings(settings_file, QtCore.QSettings.Format.IniFormat), small_model_file,
                        port_provider=FakePortProvider(), models_dir=tmp_path / "models")
    assert second.live_panel.bpm.value() == 97
    assert second.training_panel.hidden.value() == 77
    second.close()
    second.deleteLater()


def test_no_midi_output_explains_how_to_get_one(qtbot, tmp_path, small_model_file):
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    main = MainWindow(QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat),
                      small_model_file, port_provider=FakePortProvider(names=[]), models_dir=tmp_path / "m")
    qtbot.addWidget(main)
    assert not main.live_panel.play_button.isEnabled()
    assert main.live_panel.port_help.isVisibleTo(main)
    assert "synth" in main.live_panel.port_help.text().lower()
    main.close()


def note_balance(messages) -> int:
    ons = sum(1 for m in messages if m.type == "note_on" and m.velocity > 0)
    offs = sum(1 for m in messages if m.type == "note_off" or (m.type == "note_on" and m.velocity == 0))
    return ons - offs


def test_space_toggles_play(qtbot, window):
    window.live_panel.bpm.setValue(400)
    window.space_shortcut.activated.emit()  # what pressing Space does (offscreen windows get no key focus)
    assert window.playback.live.is_playing()
    assert window.live_panel.play_button.text() == "Stop"
    qtbot.waitUntil(lambda: window.piano_roll.frames_pushed >= 2, timeout=20_000)
    window.space_shortcut.activated.emit()
    assert not window.playback.live.is_playing()
    assert window.live_panel.play_button.text() == "Play"
    assert window.space_shortcut.key().toString() == "Space"


def test_closing_while_playing_leaves_no_note_sounding(qtbot, tmp_path, small_model_file):
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    provider = FakePortProvider()
    main = MainWindow(QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat),
                      small_model_file, port_provider=provider, models_dir=tmp_path / "m")
    main.show()
    main.live_panel.bpm.setValue(400)
    main.playback.toggle_play()
    qtbot.waitUntil(lambda: main.piano_roll.frames_pushed >= 8, timeout=20_000)
    main.close()
    sent = provider.opened[-1].messages
    assert note_balance(sent) <= 0
    assert sent[-1].type == "control_change" and sent[-1].control == 123
    assert provider.opened[-1].closed
    assert_no_qt_leaks(main)
    main.deleteLater()


def test_panic_silences_all_channels(qtbot, window):
    window.live_panel.bpm.setValue(400)
    window.playback.toggle_play()
    qtbot.waitUntil(lambda: window.piano_roll.frames_pushed >= 2, timeout=20_000)
    window.live_panel.panic_button.click()
    sent = window.fake_ports.opened[-1].messages
    channels = {m.channel for m in sent if m.type == "control_change" and m.control == 123}
    assert channels == set(range(16))
    window.playback.toggle_play()


def test_prime_from_a_file_and_reset(qtbot, window, tmp_path):
    write_corpus(tmp_path / "music", n_files=1, broken=0)
    window.playback.prime_from_file(tmp_path / "music" / "piece0.mid")
    assert "Primed" in window.statusBar().currentMessage()
    primed_state = window.playback.live.player.rnn_state.clone()
    assert primed_state.abs().sum() > 0
    window.live_panel.reset_button.click()
    assert window.playback.live.player.rnn_state.abs().sum() == 0
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    window.playback.prime_from_file(tmp_path / "bad.mid")
    assert "Cannot prime" in window.statusBar().currentMessage()


def test_new_and_save_model(qtbot, window, tmp_path):
    window.training_panel.hidden.setValue(12)
    window.training_panel.recurrent.setValue(6)
    window.new_action.trigger()
    assert window.model_file.model.config.n_hidden == 12 and window.model_file.path is None
    saved = tmp_path / "saved.pt"
    window.model_file.save(saved)
    assert window.model_file.path == saved
    model, _ = load_model(saved)
    assert model.config.n_hidden == 12 and model.config.n_hidden_recurrent == 6


def test_dropping_a_folder_loads_it(qtbot, window, tmp_path):
    from PySide6 import QtGui

    folder = write_corpus(tmp_path / "dropped", n_files=2, broken=0)
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(folder))])
    position = QtCore.QPointF(10, 10)
    drop = QtGui.QDropEvent(position, QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
                            QtCore.Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.corpus_loaded, timeout=30_000):
        window.dropEvent(drop)
    assert len(window.corpus.pieces()) == 2


def test_playback_follows_training(qtbot, window, tmp_path):
    load(qtbot, window, write_corpus(tmp_path / "music"))
    configure_small_training(window, epochs=3)
    window.live_panel.follow_training.setChecked(True)
    window.live_panel.bpm.setValue(400)
    window.playback.toggle_play()
    swapped = []
    original = window.playback.live.player.swap_weights

    def counting_swap(source):
        swapped.append(source)
        original(source)

    window.playback.live.player.swap_weights = counting_swap
    with qtbot.waitSignal(window.training_finished, timeout=120_000):
        window.training_panel.train_button.click()
    assert len(swapped) >= 3  # one per epoch, then the finished model
    assert window.playback.live.is_playing()  # the music never stopped
    window.playback.toggle_play()
    assert note_balance(window.fake_ports.opened[-1].messages) <= 0


def test_train_uses_the_quality_recipe_unless_switched_off(qtbot, window, tmp_path):
    panel = window.training_panel
    assert panel.recipe.isChecked()  # the default: how the bundled model was made
    load(qtbot, window, write_corpus(tmp_path / "music"))
    configure_small_training(window, epochs=1)
    with qtbot.waitSignal(window.training_finished, timeout=120_000) as finished:
        panel.train_button.click()
        assert not panel.recipe.isEnabled()  # fixed while training runs
    assert finished.args[0].status == "finished"
    checkpoint = load_checkpoint(window.model_file.path)
    config = checkpoint.training.train_config
    assert (config.cd_start, config.select_by, config.lr_schedule) == ("persistent", "ll", "cosine")
    assert config.epochs == 1 and config.min_updates == 0  # the user's epochs and (visible) minimum
    assert set(checkpoint.training.pretraining) == {"rbm", "rnn"}
    assert checkpoint.history[0].valid_ll is not None  # kept by the validation log-likelihood
    assert checkpoint.model_config.gibbs_steps == 1000  # a sharp model composes with its own setting
    window.live_panel.sampler.setCurrentIndex(1)  # Exact (tutorial): the model's own steps from silence
    assert window.live_panel.gibbs_steps.value() == 1000

    assert config.key_shift == 0  # off by default: the bundled model's corpus is all in C
    panel.key_shift.setValue(1)
    assert panel.configs()[1].key_shift == 1 and panel.configs()[1].cd_start == "persistent"
    panel.recipe.setChecked(False)
    model_config, plain = panel.configs()
    assert plain.key_shift == 1
    assert (plain.cd_start, plain.select_by, plain.rnn_pretrain_epochs, plain.weight_decay) == ("data", "monitor", 0, 0)
    assert plain.batch_seqs == panel.batch_seqs.value() and plain.learning_rate == panel.learning_rate.value()
    assert model_config.gibbs_steps == 25  # the tutorial's setting for the tutorial's training


def test_the_training_panel_starts_at_the_quality_recipe_within_the_engine_s_ranges(window):
    """Train's fields show the recipe's own values (training/recipes.py, as `train --recipe quality`) and
    cannot reach a number a model file could not hold (limits.py)."""
    from rnnrbm_studio import limits
    from rnnrbm_studio.training.recipes import configs

    panel = window.training_panel
    assert panel.recipe.isChecked() and panel.configs() == configs("quality")  # as `train --recipe quality`
    boxes = ((panel.hidden, limits.MODEL_FIELDS, "n_hidden"), (panel.recurrent, limits.MODEL_FIELDS, "n_hidden_recurrent"),
             (panel.cd_k, limits.MODEL_FIELDS, "cd_k"), (panel.learning_rate, limits.TRAIN_FIELDS, "learning_rate"),
             (panel.epochs, limits.TRAIN_FIELDS, "epochs"), (panel.batch_seqs, limits.TRAIN_FIELDS, "batch_seqs"),
             (panel.key_shift, limits.TRAIN_FIELDS, "key_shift"), (panel.seed, limits.TRAIN_CLI_RANGES, "seed"),
             (panel.steps_per_beat, limits.ROLL_FIELDS, "steps_per_beat"))
    for box, table, name in boxes:
        low, high = limits.bounds(table, name)
        above = box.minimum() > low if limits.is_open_low(table, name) else box.minimum() >= low
        assert above and box.maximum() <= high, name
    assert [panel.optimizer.itemText(i) for i in range(panel.optimizer.count())] == ["adam", "sgd"]
    assert set(limits.TRAIN_FIELDS["optimizer"]) == {"adam", "sgd"}


def test_closing_mid_export_cancels_it_and_writes_nothing(qtbot, window, tmp_path):
    window.live_panel.gibbs_steps.setValue(5000)  # slow, as above
    path = tmp_path / "unfinished.mid"
    handle = window.playback.export_bars(path, 16)
    with qtbot.waitSignal(window.playback.bars_export.progress, timeout=30_000):
        pass
    window.close()  # cancels the export and waits for its thread
    assert not handle.thread_running() and not handle.is_running()
    assert not path.exists() and list(tmp_path.glob(".unfinished.mid*")) == []


def test_the_application_collects_garbage_in_its_own_thread_only(qapp):
    """Automatic collection is off and a GUI-thread timer collects (ui/app.collect_garbage_in_this_thread)."""
    import gc

    from rnnrbm_studio.ui.app import collect_garbage_in_this_thread

    app = qapp
    collect_garbage_in_this_thread(app)
    try:
        assert not gc.isenabled()
        assert app._rnnrbm_garbage_collector.timer.isActive()
    finally:
        app._rnnrbm_garbage_collector.timer.stop()
        app._rnnrbm_garbage_collector = None
