"""The composing sampler as a visible choice: Fast (the chain from the RNN's guess, 25 steps unless
asked for more) or Exact (the tutorial's chain from silence, the model's own steps), in the
PlaybackSettings' rules, the window's Sampler box and `play --sampler`."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore, QtWidgets  # noqa: E402

from rnnrbm_studio.cli import build_parser  # noqa: E402
from rnnrbm_studio.cli.live import playback_settings  # noqa: E402
from rnnrbm_studio.live.settings import PREDICTION_GIBBS_STEPS, SAMPLERS, PlaybackSettings  # noqa: E402
from rnnrbm_studio.music.pianoroll import RollSettings  # noqa: E402
from rnnrbm_studio.ui import export_controller  # noqa: E402
from rnnrbm_studio.ui.main_window import MainWindow  # noqa: E402
from test_ui import small_model_file, window  # noqa: E402,F401 (fixtures: a model of 5 Gibbs steps)
from ui_helpers import FakePortProvider  # noqa: E402

SMALL_MODEL_STEPS = 5  # test_ui.small_model_file's own setting
FAST, EXACT = 0, 1  # the Sampler box's rows


# ---------------------------------------------------------------------------------- the rules
def test_fast_runs_25_steps_unless_asked_and_then_exactly_as_many_as_asked():
    assert PREDICTION_GIBBS_STEPS == 25
    assert PlaybackSettings().chain(1000) == (25, "prediction")  # not the model's 1,000
    assert PlaybackSettings().chain(5) == (25, "prediction")  # nor a small model's 5
    assert PlaybackSettings(gibbs_steps=10).chain(1000) == (10, "prediction")
    assert PlaybackSettings(gibbs_steps=400).chain(1000) == (400, "prediction")  # no silent cap
    assert PlaybackSettings(gibbs_steps=5000).chain(25) == (5000, "prediction")


def test_exact_runs_the_models_own_steps_from_silence_unless_asked():
    assert PlaybackSettings(chain_start="silence").chain(1000) == (1000, None)
    assert PlaybackSettings(chain_start="silence").chain(5) == (5, None)
    assert PlaybackSettings(chain_start="silence", gibbs_steps=40).chain(1000) == (40, None)
    assert SAMPLERS == {"fast": "prediction", "exact": "silence"}


# ---------------------------------------------------------------------------------- the window
def test_the_sampler_box_sets_the_steps_and_the_players_settings(qtbot, window):
    panel = window.live_panel
    assert panel.sampler.currentText() == "Fast" and panel.gibbs_steps.value() == PREDICTION_GIBBS_STEPS
    assert panel.playback_settings().chain(SMALL_MODEL_STEPS) == (PREDICTION_GIBBS_STEPS, "prediction")
    tips = panel.gibbs_steps.toolTip() + panel.sampler.toolTip()
    assert "Fast" in tips and "Exact" in tips

    panel.bpm.setValue(400)
    window.playback.toggle_play()
    qtbot.waitUntil(lambda: window.piano_roll.frames_pushed >= 2, timeout=20_000)
    player = window.playback.live.player
    assert player.settings.chain_start == "prediction" and player.settings.gibbs_steps == PREDICTION_GIBBS_STEPS

    with qtbot.waitSignal(panel.settings_changed, timeout=1000):
        panel.sampler.setCurrentIndex(EXACT)
    assert panel.sampler.currentText() == "Exact (tutorial)"
    assert panel.gibbs_steps.value() == SMALL_MODEL_STEPS  # the open model's own
    assert (player.settings.chain_start, player.settings.gibbs_steps) == ("silence", SMALL_MODEL_STEPS)

    panel.gibbs_steps.setValue(300)  # the user's steps are run as given, whichever sampler
    assert player.settings.chain(SMALL_MODEL_STEPS) == (300, None)
    panel.sampler.setCurrentIndex(FAST)
    assert panel.gibbs_steps.value() == PREDICTION_GIBBS_STEPS
    panel.gibbs_steps.setValue(300)
    assert player.settings.chain(SMALL_MODEL_STEPS) == (300, "prediction")
    window.playback.toggle_play()
    assert not window.playback.live.is_playing()


def test_opening_a_model_shows_the_chosen_samplers_steps_for_it(window):
    panel = window.live_panel
    panel.sampler.setCurrentIndex(EXACT)
    panel.set_model_gibbs_steps(1000)  # what opening the bundled model does
    assert panel.gibbs_steps.value() == 1000
    panel.sampler.setCurrentIndex(FAST)
    assert panel.gibbs_steps.value() == PREDICTION_GIBBS_STEPS
    panel.set_model_gibbs_steps(7)
    assert panel.gibbs_steps.value() == PREDICTION_GIBBS_STEPS
    panel.sampler.setCurrentIndex(EXACT)
    assert panel.gibbs_steps.value() == 7


def test_export_new_bars_uses_the_chosen_sampler(qtbot, window, tmp_path, monkeypatch):
    seen = []
    real_job = export_controller.export_bars_job

    def recording_job(job, *args, **kwargs):
        seen.append((kwargs["gibbs_steps"], kwargs["start"]))
        return real_job(job, *args, **kwargs)

    monkeypatch.setattr(export_controller, "export_bars_job", recording_job)
    for row, expected in ((FAST, (PREDICTION_GIBBS_STEPS, "prediction")), (EXACT, (SMALL_MODEL_STEPS, None))):
        window.live_panel.sampler.setCurrentIndex(row)
        path = tmp_path / f"bars{row}.mid"
        with qtbot.waitSignal(window.playback.bars_export.exported, timeout=60_000):
            window.playback.export_bars(path, 1)
        assert seen[-1] == expected and path.stat().st_size > 0


def test_the_sampler_is_remembered(qtbot, tmp_path, small_model_file):  # noqa: F811
    settings_file = str(tmp_path / "settings.ini")
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    first = MainWindow(QtCore.QSettings(settings_file, QtCore.QSettings.Format.IniFormat), small_model_file,
                       port_provider=FakePortProvider(), models_dir=tmp_path / "models")
    first.live_panel.sampler.setCurrentIndex(EXACT)
    first.close()
    first.deleteLater()
    second = MainWindow(QtCore.QSettings(settings_file, QtCore.QSettings.Format.IniFormat), small_model_file,
                        port_provider=FakePortProvider(), models_dir=tmp_path / "models")
    try:
        assert second.live_panel.sampler.currentText() == "Exact (tutorial)"
        assert second.live_panel.gibbs_steps.value() == SMALL_MODEL_STEPS
        assert second.live_panel.playback_settings().chain_start == "silence"
    finally:
        second.close()
        second.deleteLater()


# ------------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("given, expected", [
    ([], ("prediction", None, (PREDICTION_GIBBS_STEPS, "prediction"))),
    (["--sampler", "fast"], ("prediction", None, (PREDICTION_GIBBS_STEPS, "prediction"))),
    (["--sampler", "exact"], ("silence", None, (1000, None))),
    (["--sampler", "exact", "--gibbs-steps", "40"], ("silence", 40, (40, None))),
    (["--gibbs-steps", "400"], ("prediction", 400, (400, "prediction"))),
])
def test_play_sampler_reaches_the_playback_settings(given, expected):
    args = build_parser().parse_args(["play", *given])
    settings = playback_settings(args, RollSettings())
    assert (settings.chain_start, settings.gibbs_steps, settings.chain(1000)) == expected


def test_play_sampler_refuses_other_names_in_one_line_and_says_its_steps(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["play", "--sampler", "slow"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and "argument --sampler: invalid choice: 'slow'" in lines[0]
    play = build_parser()._subparsers._group_actions[0].choices["play"]
    sampler = next(action for action in play._actions if "--sampler" in action.option_strings)
    assert f"runs {PREDICTION_GIBBS_STEPS} steps" in sampler.help  # the help's figure is the player's
