"""What a run tells its user, in the command line and the window: the plan (and why it trains more
epochs than asked), pretraining progress with an ETA from measured update times, the per-epoch
validation log-likelihood with its error bar, the kept epoch, and `info`'s summary. Durations come
from a fake clock, never from sleeping."""
from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rnnrbm_studio.assets import default_model_path
from rnnrbm_studio.cli import build_parser
from rnnrbm_studio.cli.training import ProgressBar, settings_from_args
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig
from rnnrbm_studio.training.checkpoint import load_checkpoint
from rnnrbm_studio.training.config import TrainConfig, TrainProgress
from rnnrbm_studio.training.progress import UpdateTimer, count_of, plan
from rnnrbm_studio.training.recipes import configs
from rnnrbm_studio.training.selection import fixed_valid_frames
from rnnrbm_studio.training.state import kept_epoch
from rnnrbm_studio.training.trainer import Trainer

from midi_fixtures import write_arpeggio_corpus

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """Each reading moves time on by `step`; `jump` adds a long pause (start-up, pretraining) at once."""

    def __init__(self, step: float = 0.05):
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def jump(self, seconds: float) -> None:
        self.now += seconds


def small_trainer(tmp_path, clock=None, progress=None, valid=True, **train) -> Trainer:
    torch.manual_seed(2)
    model = RnnRbm(RnnRbmConfig(n_visible=88, n_hidden=10, n_hidden_recurrent=8, cd_k=1))
    rng = np.random.default_rng(2)
    rolls = [(rng.random((t, 88)) < 0.04).astype(np.uint8) for t in (90, 70, 110, 60, 80)]
    config = TrainConfig(**{"optimizer": "adam", "learning_rate": 0.01, "batch_seqs": 1, "seq_len": 10, "seed": 3,
                            **train})
    return Trainer(model, rolls[:3], rolls[3:] if valid else (), config, tmp_path / "m.pt", progress=progress,
                   progress_interval=0.0, **({"clock": clock} if clock else {}))


# ---------------------------------------------------------------------------------------- ETA
def test_the_update_timer_leaves_out_the_warm_up_and_gives_no_rate_from_a_few_updates():
    clock = FakeClock(step=0.0)
    timer = UpdateTimer(clock, warmup=2, min_updates=5)
    timer.begin()
    for seconds in (30.0, 5.0):  # the first updates: slow (allocations, caches)
        clock.jump(seconds)
        timer.tick()
    for i in range(4):
        clock.jump(0.1)
        timer.tick()
        assert timer.seconds_per_update() is None  # 1..4 measured updates: not yet a rate
    clock.jump(0.1)
    timer.tick()
    assert timer.seconds_per_update() == pytest.approx(0.1)
    assert timer.eta(600) == pytest.approx(60.0)
    clock.jump(500.0)  # a pause between epochs (validation): begin() leaves it out
    timer.begin()
    clock.jump(0.1)
    timer.tick()
    assert timer.seconds_per_update() == pytest.approx(0.1)


def test_the_eta_comes_from_update_times_not_from_a_long_start(tmp_path):
    """The old ETA divided the time since the start (a minute of pretraining) by the fraction done: a
    few updates into epoch 1 it read hundreds of hours. Every ETA now equals the updates left times the
    measured time per update (0.15 s on the fake clock), plus the measured validations."""
    clock = FakeClock(step=0.0)
    reports = []
    trainer = small_trainer(tmp_path, clock, reports.append, epochs=3)
    cd_loss = trainer.model.cd_loss

    def timed_cd_loss(*args, **kwargs):  # every update (and every valid batch) takes 0.15 s
        clock.jump(0.15)
        return cd_loss(*args, **kwargs)

    trainer.model.cd_loss = timed_cd_loss
    clock.jump(70.0)  # as if pretraining had taken 70 s before the first update
    trainer.run()
    steps = trainer.updates_per_epoch()
    assert trainer.timer.seconds_per_update() == pytest.approx(0.15)
    assert trainer.validation_seconds == pytest.approx(0.15 * len(trainer._valid_batches()))
    assert reports[0].event == "start" and reports[0].eta_seconds is None
    etas = [(p.epoch, p.step, p.eta_seconds) for p in reports if p.event == "step"]
    assert etas[0][2] is None  # the first update: nothing measured yet
    measured = [(epoch, step, eta) for epoch, step, eta in etas if eta is not None]
    assert len(measured) > len(etas) // 2
    validation = trainer.validation_seconds
    for epoch, step, eta in measured:
        left = (steps - step) + (3 - epoch) * steps
        validations = (3 - epoch + 1) * validation if epoch > 1 else 0.0  # none measured during epoch 1
        assert eta == pytest.approx(left * 0.15 + validations, abs=1e-9)
        assert eta <= 3 * steps * 0.15 + 3 * validation + 1e-6  # never more than the whole run
    assert reports[-1].event == "finished" and reports[-1].eta_seconds == 0.0


# -------------------------------------------------------------------------------- pretraining
def test_pretraining_reports_each_phase_with_an_eta_from_the_first_second(tmp_path):
    clock = FakeClock(step=0.01)
    reports = []
    trainer = small_trainer(tmp_path, clock, reports.append, epochs=1, rbm_pretrain_epochs=4, rnn_pretrain_epochs=3)
    trainer.run()
    events = [p.event for p in reports]
    assert events[0] == "start" and events[1] == "pretraining"  # no silence before the first epoch
    assert "pretraining first (RBM 4 epochs, RNN at most 3 epochs)" in reports[0].message
    phases = [p for p in reports if p.event == "pretraining"]
    assert [p.phase for p in phases] == sorted((p.phase for p in phases), key=["RBM pretraining",
                                                                                 "RNN pretraining"].index)
    ends = [(p.phase, p.epoch, p.epochs) for p in phases if p.step == p.steps_in_epoch]
    assert ends[:4] == [("RBM pretraining", i, 4) for i in (1, 2, 3, 4)]
    assert {e for e in ends if e[0] == "RNN pretraining"} <= {("RNN pretraining", i, 3) for i in (1, 2, 3)}
    rbm = [p for p in phases if p.phase == "RBM pretraining"]
    assert rbm[-1].eta_seconds == pytest.approx(0.0) and not rbm[-1].eta_at_most
    assert all(p.eta_seconds is None or p.eta_seconds >= 0 for p in phases)
    assert any(p.eta_seconds for p in rbm)  # measured within the phase (3 updates per epoch here)
    rnn = [p for p in phases if p.phase == "RNN pretraining"]
    assert rnn and all(p.eta_at_most for p in rnn)  # it stops early by the valid LL: the ETA is a bound
    assert any(p.eta_seconds for p in rnn)
    assert all(0.0 <= p.fraction <= 1.0 for p in phases)


# ------------------------------------------------------------------------------------ the plan
def test_the_plan_says_when_the_minimum_raises_the_epochs(tmp_path):
    reports = []
    trainer = small_trainer(tmp_path, progress=reports.append, epochs=2, min_updates=100)
    steps = trainer.updates_per_epoch()
    assert trainer.config.epochs == -(-100 // steps) > 2
    assert trainer.plan == plan(2, 100, steps)
    trainer.request_stop()
    trainer.run()
    assert reports[0].event == "start"
    assert f"{trainer.config.epochs} epochs of {steps} updates" in reports[0].message
    assert "2 asked for, raised to reach the minimum of 100 updates" in reports[0].message
    assert "raised" not in plan(9, 100, steps).describe()  # never lowered, and then nothing to explain


def test_given_epochs_win_over_the_recipe_s_minimum_in_the_command_line():
    parser = build_parser()
    recipe = settings_from_args(parser.parse_args(["train", "d", "--out", "m.pt", "--recipe", "quality"]))[1]
    assert (recipe.epochs, recipe.min_updates) == (60, 28000)  # the recipe's own: both apply
    given = settings_from_args(parser.parse_args(["train", "d", "--out", "m.pt", "--recipe", "quality",
                                                  "--epochs", "2"]))[1]
    assert (given.epochs, given.min_updates) == (2, 0)  # --epochs alone wins
    both = settings_from_args(parser.parse_args(["train", "d", "--out", "m.pt", "--recipe", "quality",
                                                 "--epochs", "2", "--min-updates", "500"]))[1]
    assert (both.epochs, both.min_updates) == (2, 500)  # both given: the run says why it trains longer


def test_the_window_shows_the_recipe_s_minimum_and_trains_what_the_command_line_trains(qtbot):
    from rnnrbm_studio.ui.panels.training import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    assert panel.min_updates.value() == 28000 and panel.recipe.isChecked()
    cli = settings_from_args(build_parser().parse_args(["train", "d", "--out", "m.pt", "--recipe", "quality"]))
    assert panel.configs()[1] == cli[1]  # the same settings, hence the same plan, from both faces
    panel.recipe.setChecked(False)
    assert panel.min_updates.value() == 0 and panel.min_updates.text() == "off"
    panel.recipe.setChecked(True)
    panel.min_updates.setValue(0)
    panel.epochs.setValue(2)
    assert (panel.configs()[1].epochs, panel.configs()[1].min_updates) == (2, 0)


# ----------------------------------------------------------------------------- the two faces
def progress(event, **values) -> TrainProgress:
    base = dict(event=event, epoch=1, epochs=3, step=0, steps_in_epoch=10, frames_per_second=500.0, loss=-0.5,
                monitor=-5.0)
    return TrainProgress(**{**base, **values})


STREAM = [progress("start", message="3 epochs of 10 updates (30 updates)"),
          progress("pretraining", phase="RBM pretraining", epoch=1, epochs=2, step=4, eta_seconds=None),
          progress("pretraining", phase="RBM pretraining", epoch=1, epochs=2, step=10, eta_seconds=12.4),
          progress("pretraining", phase="RNN pretraining", epoch=1, epochs=100, step=10, eta_seconds=95.0,
                   eta_at_most=True, message="valid log-likelihood -3.100, best -3.100"),
          progress("step", step=5, eta_seconds=61.0),
          progress("epoch", step=10, valid_monitor=-5.2, valid_ll=-3.0456, valid_ll_se=0.0312, kept_epoch=1,
                   eta_seconds=40.0, elapsed_seconds=20.0)]


def test_the_command_line_prints_the_plan_pretraining_and_each_epoch_s_log_likelihood():
    stream = io.StringIO()
    bar = ProgressBar(stream)
    for report in STREAM:
        bar.training(report)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "plan: 3 epochs of 10 updates (30 updates)"
    assert lines[1] == "RBM pretraining epoch 1/2 (phase ETA 0:12)"
    assert lines[2] == ("RNN pretraining epoch 1/100 at most: valid log-likelihood -3.100, best -3.100 "
                        "(phase ETA ≤ 1:35)")
    assert lines[3].startswith("epoch 1/3: monitor -5.000, valid monitor -5.200, valid LL -3.046 ± 0.031, "
                               "kept epoch 1 (")
    assert lines[3].endswith("ETA 0:40)") and len(lines) == 4


def test_the_window_s_panel_shows_the_plan_then_the_phase_and_its_eta(qtbot):
    from rnnrbm_studio.ui.panels.training import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.show_progress(STREAM[0])
    assert panel.status.text() == "Plan: 3 epochs of 10 updates (30 updates)"
    panel.show_progress(STREAM[1])
    assert panel.progress.format().startswith("RBM pretraining 1/2")
    assert "phase ETA ?" in panel.status.text()  # not measured yet: said, not guessed
    panel.show_progress(STREAM[3])
    assert "epoch 1 of at most 100" in panel.status.text() and "phase ETA ≤ 1:35" in panel.status.text()
    panel.show_progress(STREAM[5])
    assert "valid LL -3.046 ± 0.031 · kept epoch 1" in panel.status.text()
    assert "ETA 0:40" in panel.status.text()


# ------------------------------------------------------------------------ validation log-likelihood
def test_the_valid_frames_are_fixed_and_spread_over_pieces():
    rng = np.random.default_rng(0)
    rolls = [torch.as_tensor((rng.random((n, 88)) < 0.05).astype(np.float32)) for n in (50, 80, 40, 120, 60, 90)]
    first, again = fixed_valid_frames(rolls, 100), fixed_valid_frames(rolls, 100)
    assert torch.equal(first.index, again.index) and len(first.index) == 100
    assert len(first.rolls) >= 2 and all(len(r) >= 1 for r in first.rolls)
    assert int(first.index.max()) < sum(len(r) for r in first.rolls)
    assert len(fixed_valid_frames(rolls[:1], 100).index) == 50  # fewer frames than asked: all of them


def test_each_epoch_records_its_log_likelihood_error_bar_and_kept_epoch(tmp_path):
    trainer = small_trainer(tmp_path, epochs=3, select_by="ll", select_frames=40)
    result = trainer.run()
    history = trainer.history
    lls = [h.valid_ll for h in history]
    assert all(np.isfinite(lls)) and all(0 < h.valid_ll_se < 1 for h in history)
    best = int(np.argmax(lls)) + 1
    assert history[-1].kept_epoch == best == trainer.best.epoch
    assert f"kept epoch {best}" in result.message and result.message.startswith("3 epochs trained")
    read = load_checkpoint(tmp_path / "m.pt")
    assert [h.valid_ll_se for h in read.history] == [h.valid_ll_se for h in history]
    assert kept_epoch(read) == best
    # the weights kept are the kept epoch's: measured again, they give its number
    trainer.model.load_state_dict(read.best_model_state)
    assert trainer.validation_log_likelihood() == pytest.approx(lls[best - 1], abs=1e-9)


def test_one_epoch_is_said_in_the_singular(tmp_path):
    result = small_trainer(tmp_path, epochs=1, valid=False).run()
    assert result.message == "1 epoch trained"
    assert (count_of(1, "epoch"), count_of(2, "epoch"), count_of(28000, "update")) == (
        "1 epoch", "2 epochs", "28,000 updates")
    trainer = small_trainer(tmp_path, epochs=5, patience=1, select_by="ll")
    readings = iter([-1.0, -1.5, -0.5])  # epoch 2 is worse than epoch 1: patience 1 stops the run there
    trainer.validation_estimate = lambda: SimpleNamespace(mean_floored=next(readings), se=0.01)
    stopped = trainer.run()
    assert stopped.status == "early-stopped" and stopped.epochs_completed == 2
    assert stopped.message == "no better valid log-likelihood for 1 epoch; kept epoch 1"


# ---------------------------------------------------------------------------------- info
def test_info_says_which_epoch_it_kept_and_why_with_the_evaluation_as_a_table():
    result = subprocess.run([sys.executable, "-m", "rnnrbm_studio", "info"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "kept: epoch 60 of 60, the best validation log-likelihood per step (-0.968" in out
    assert "best valid monitor" not in out  # the bundled run kept its epoch by the log-likelihood
    assert "data: Nottingham.pickle\n" in out and "../" not in out.split("evaluation")[0]
    assert "training: 60 of 60 epochs" in out
    table = out[out.index("evaluation on"):].splitlines()
    assert re.match(r"  log-likelihood per step \(AIS 16 x 1,000\) +-2\.2406 ± 0\.0011$", table[1])
    assert "{" not in out and "'log_likelihood" not in out  # no Python dict
    assert kept_epoch(load_checkpoint(default_model_path())) == 60


def test_info_of_a_fresh_run_names_its_data_and_its_kept_epoch(tmp_path):
    data = tmp_path / "songs"
    write_arpeggio_corpus(data, 5, n_frames=32)
    out = tmp_path / "model.pt"
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    train = subprocess.run([sys.executable, "-m", "rnnrbm_studio", "train", str(data), "--out", str(out),
                            "--recipe", "quality", "--epochs", "1", "--hidden", "16", "--recurrent", "8",
                            "--cd-k", "1", "--rnn-pretrain-epochs", "2", "--rbm-pretrain-epochs", "1",
                            "--select-frames", "40"], capture_output=True, text=True, timeout=300, env=env)
    assert train.returncode == 0, train.stderr
    lines = train.stderr.splitlines()
    plan_line = next(line for line in lines if line.startswith("plan: "))
    assert plan_line.startswith("plan: 1 epoch of ") and "raised" not in plan_line  # --epochs 1 won
    assert any(line.startswith("RBM pretraining epoch 1/1") for line in lines)
    assert any(re.search(r"epoch 1/1: .*valid LL -?\d+\.\d{3} ± \d\.\d{3}, kept epoch 1", line) for line in lines)
    assert "finished: 1 epoch trained; kept epoch 1; model in" in train.stderr
    info = subprocess.run([sys.executable, "-m", "rnnrbm_studio", "info", str(out)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert "data: songs\n" in info.stdout and "training: 1 of 1 epoch," in info.stdout
    assert "kept: epoch 1 of 1, the best validation log-likelihood per step" in info.stdout


# ----------------------------------------------------------------------------------- the plot
def test_the_plot_shows_the_log_likelihood_first_the_monitor_second_and_the_kept_epoch(qtbot, tmp_path):
    from rnnrbm_studio.ui.panels.training_plot import TrainingPlot

    plot = TrainingPlot()
    qtbot.addWidget(plot)
    plot.resize(900, 500)
    plot.show()
    qtbot.waitExposed(plot)
    plot.add_epoch(STREAM[5])
    x, y, secondary = plot.view_ranges()
    assert x == pytest.approx([0.5, 5.5])  # the run's epochs (at least 5), whole epochs from the first point
    assert y[0] < -3.0456 - 0.0312 and y[1] > -3.0456 + 0.0312 and y[1] - y[0] < 0.5  # one point: near it
    assert secondary[0] < -5.2 and secondary[1] > -5.0 and secondary[1] - secondary[0] < 1.0
    assert plot.getPlotItem().getAxis("left").labelText.startswith("validation log-likelihood")
    assert plot.legend_names()[0] == "validation log-likelihood (quick estimate) (bars: ± 1 AIS standard error)"
    assert plot.kept_epoch() == 1 and plot.kept_line.isVisible()
    # the legend is laid out under the view, never over a point
    qtbot.waitUntil(lambda: plot.legend.geometry().top() > 0)  # laid out
    assert plot.legend.geometry().top() >= plot.getPlotItem().vb.geometry().bottom()
    plot.set_history(load_checkpoint(default_model_path()).history)
    assert plot.kept_epoch() == 60 and plot.valid_epochs == list(range(1, 61))
    assert plot.legend_names() == ["validation log-likelihood (quick estimate)", "validation monitor (right axis)",
                                   "kept epoch (best log-likelihood)"]
    assert not plot.reference_line.isVisible()  # no evaluation given
    plot.set_history(load_checkpoint(default_model_path()).history,
                     {"log_likelihood_capped": -2.5, "split": "valid", "log_likelihood": -2.4})
    assert plot.reference_line.isVisible() and plot.reference_line.value() == -2.5
    assert "full evaluation (valid split): -2.50" in plot.legend_names()
    assert plot.view_ranges()[1][0] < -2.5  # the axis reaches down to it
    plot.grab().save(str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 0
