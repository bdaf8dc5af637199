"""The time grid and the primer travel with the model: generate, play and the window time a model's
frames alike and read a primer alike. A model trained on the tutorial's 0.3 s grid is the case that
used to differ (play ran it at 120 bpm and two steps per beat, the window at the tempo box's bpm)."""
from __future__ import annotations

import mido
import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")
from PySide6 import QtCore, QtWidgets  # noqa: E402

from jack_synth import FakePort  # noqa: E402
from rnnrbm_studio.cli import main  # noqa: E402
from rnnrbm_studio.live import outputs  # noqa: E402
from rnnrbm_studio.live.clock import FakeClock  # noqa: E402
from rnnrbm_studio.live.player import LivePlayer  # noqa: E402
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig  # noqa: E402
from rnnrbm_studio.music.midi_files import roll_to_midi  # noqa: E402
from rnnrbm_studio.music.pianoroll import RollSettings  # noqa: E402
from rnnrbm_studio.music.primer import read_primer  # noqa: E402
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint  # noqa: E402
from rnnrbm_studio.ui.main_window import MainWindow  # noqa: E402
from ui_helpers import FakePortProvider, assert_no_qt_leaks  # noqa: E402

SECONDS_GRID = RollSettings(seconds_per_step=0.3, transpose_to_c=True)
START = LivePlayer.start  # play_until_start replaces it for `play`


@pytest.fixture
def seconds_model(tmp_path):
    torch.manual_seed(0)
    model = RnnRbm(RnnRbmConfig(n_hidden=6, n_hidden_recurrent=4, gibbs_steps=2))
    path = tmp_path / "seconds.pt"
    save_checkpoint(path, model_checkpoint(model, SECONDS_GRID))
    return path


@pytest.fixture
def primer_file(tmp_path):
    """Eight frames of a D major arpeggio at 0.25 s per frame: on the 0.3 s grid it is 7 frames, and
    a model whose music was transposed to C hears it a whole tone lower."""
    roll = np.zeros((8, 88), dtype=np.uint8)
    for t in range(8):
        roll[t, [62 - 21, 66 - 21, 69 - 21][t % 3]] = 1
    path = tmp_path / "primer.mid"
    roll_to_midi(roll, path, bpm=120, steps_per_beat=2)
    return path


@pytest.fixture
def window(qtbot, tmp_path, seconds_model):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    main_window = MainWindow(settings, seconds_model, port_provider=FakePortProvider(), models_dir=tmp_path / "m")
    qtbot.addWidget(main_window)
    yield main_window
    main_window.close()
    assert_no_qt_leaks(main_window)


@pytest.fixture
def play_until_start(monkeypatch):
    """`play` on a fake port, stopped (as by Ctrl+C) where it would start: what it would play with,
    recorded, and no time spent playing."""
    seen = {}

    def start(player):
        seen.update(bpm=player.bpm, steps_per_beat=player.steps_per_beat, period=player.frame_period)
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "open_output_port", lambda *args, **kwargs: FakePort(FakeClock()))
    monkeypatch.setattr(LivePlayer, "start", start)
    return seen


@pytest.fixture
def primed_with(monkeypatch):
    """Every roll a model is primed with (generate, the player and the window all prime the model)."""
    rolls = []
    original = RnnRbm.prime

    def prime(self, roll, state=None):
        rolls.append(np.asarray(roll) > 0)
        return original(self, roll, state)

    monkeypatch.setattr(RnnRbm, "prime", prime)
    return rolls


def test_a_seconds_grid_model_steps_0_3_s_in_generate_play_and_the_window(qtbot, tmp_path, seconds_model,
                                                                          play_until_start, window, monkeypatch):
    # generate: the file's tempo and grid make 0.3 s steps
    out = tmp_path / "generated.mid"
    assert main(["generate", str(seconds_model), "--out", str(out), "--frames", "6", "--seed", "1"]) == 0
    assert mido.MidiFile(out).length == pytest.approx(6 * 0.3)

    # play: the player is made for 0.3 s frames...
    assert main(["play", str(seconds_model)]) == 0
    assert play_until_start["period"] == pytest.approx(0.3)
    # ...and schedules them 0.3 s apart
    clock = FakeClock()
    player = LivePlayer(RnnRbm(RnnRbmConfig(n_hidden=6, n_hidden_recurrent=4)), FakePort(clock), clock=clock,
                        bpm=play_until_start["bpm"], steps_per_beat=play_until_start["steps_per_beat"])
    deadlines = []
    try:
        START(player)  # not the fixture's: this one plays
        for _ in range(4):
            deadlines.append(clock.wait_until_waiting("scheduler", after=clock.now()))
            clock.advance_to(deadlines[-1])
    finally:
        player.stop()
    assert np.diff(deadlines) == pytest.approx([0.3] * 3)

    # the window: the tempo box shows the model's own tempo, playing and exporting keep it
    assert window.live_panel.bpm.value() == pytest.approx(200)
    assert window.live_panel.playback_settings().frame_period == pytest.approx(0.3)
    bars = tmp_path / "bars.mid"
    window.playback.export_bars(bars, 1)  # one bar of four beats: four 0.3 s steps
    qtbot.waitUntil(bars.exists, timeout=20_000)
    assert mido.MidiFile(bars).length == pytest.approx(4 * 0.3)
    monkeypatch.setattr(LivePlayer, "start", START)  # the window plays for real, on a fake port
    window.live_panel.port.setCurrentText("Fake Synth")
    window.playback.toggle_play()
    try:
        assert window.playback.live.player.frame_period == pytest.approx(0.3)
    finally:
        window.playback.toggle_play()


def test_export_new_bars_keeps_a_tempo_the_box_can_only_round(qtbot, tmp_path):
    """0.35 s steps are 171.43 bpm, which the tempo box shows as 171: export plays them at 0.35 s, as Play does."""
    path = tmp_path / "odd.pt"
    save_checkpoint(path, model_checkpoint(RnnRbm(RnnRbmConfig(n_hidden=6, n_hidden_recurrent=4, gibbs_steps=2)),
                                           RollSettings(seconds_per_step=0.35)))
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    window = MainWindow(settings, path, port_provider=FakePortProvider(), models_dir=tmp_path / "m")
    qtbot.addWidget(window)
    try:
        assert window.live_panel.bpm.value() == 171
        assert window.live_panel.playback_settings().frame_period == pytest.approx(0.35)
        bars = tmp_path / "bars.mid"
        with qtbot.waitSignal(window.playback.bars_export.exported, timeout=20_000):
            window.playback.export_bars(bars, 1)
        assert mido.MidiFile(bars).length == pytest.approx(4 * 0.35)
    finally:
        window.close()
    assert_no_qt_leaks(window)


def test_a_primer_primes_generate_play_and_the_window_with_the_same_roll(tmp_path, seconds_model, primer_file,
                                                                         play_until_start, primed_with, window):
    expected = read_primer(primer_file, SECONDS_GRID) > 0
    assert expected.shape == (7, 88)  # on the model's 0.3 s grid, not two steps per beat
    assert sorted({int(k) + 21 for k in np.flatnonzero(expected.any(axis=0))}) == [60, 64, 67]  # in C
    primed_with.clear()  # the window primed nothing yet; opening it must not count

    assert main(["generate", str(seconds_model), "--out", str(tmp_path / "g.mid"), "--frames", "2",
                 "--primer", str(primer_file)]) == 0
    assert main(["play", str(seconds_model), "--primer", str(primer_file)]) == 0
    window.playback.prime_from_file(primer_file)
    assert "Primed" in window.statusBar().currentMessage()
    assert len(primed_with) == 3
    for roll in primed_with:
        assert roll.shape == expected.shape
        np.testing.assert_array_equal(roll, expected)


def test_a_bad_primer_is_named_in_every_face(tmp_path, seconds_model, window, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi")
    for command in (["generate", str(seconds_model), "--out", str(tmp_path / "g.mid")], ["play", str(seconds_model)]):
        assert main([*command, "--primer", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"rnnrbm-studio: error: --primer {bad}: not a readable MIDI file"), err
    window.playback.prime_from_file(bad)
    assert window.statusBar().full_message().startswith(f"Cannot prime: primer {bad}: not a readable MIDI file")
