"""The *Train* panel: the model's and the training's settings, Train / Stop / Resume, and progress."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ...model import RnnRbmConfig
from ...music.pianoroll import RollSettings
from ...limits import TRAIN_FIELDS
from ...training.config import TrainConfig, TrainProgress
from ...training.progress import eta_text, format_seconds, ll_text
from ...training.recipes import QUALITY, TUTORIAL, configs, recipe_value
from .boxes import double_spin_box, spin_box


TRAIN_HINT = "Train a new model on the loaded music (checkpoints are saved every epoch)"
RESUME_HINT = "Continue the current model's training from its checkpoint"

class TrainingPanel(QtWidgets.QGroupBox):
    """Hyperparameters, Train / Stop / Resume, and progress."""

    train_requested = QtCore.Signal()
    stop_requested = QtCore.Signal()
    resume_requested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__("2 · Train", parent)
        defaults, train_defaults = configs(QUALITY)  # the recipe box starts ticked
        self.hidden = spin_box(8, 2000, defaults.n_hidden, "Hidden units of each frame's RBM: more can model "
                               "richer chords, but train more slowly. The paper used 150.", 10)
        self.recurrent = spin_box(4, 2000, defaults.n_hidden_recurrent, "Units of the RNN that carries the music's "
                                  "history from frame to frame. The paper used 100.", 10)
        self.learning_rate = double_spin_box(1e-5, 1.0, train_defaults.learning_rate, 5, "Step size. The tutorial "
                                             "used 0.001 with plain SGD; with Adam, 0.001-0.003 learns fast.", 0.0005)
        self.cd_k = spin_box(1, 100, defaults.cd_k, "Gibbs steps of contrastive divergence (CD-k) per update. "
                             "More is more accurate and slower. The paper used 15.")
        self.epochs = spin_box(1, 10_000, train_defaults.epochs, "Passes over the music. The tutorial ran 200 "
                               "(plain SGD); the bundled model 60. Min. updates can raise it on a small folder.")
        self.min_updates = spin_box(0, min(TRAIN_FIELDS["min_updates"][1], 2**31 - 1), train_defaults.min_updates,
                                    "Train at least this many updates: raises the epochs on a small folder, so "
                                    "that it gets as much training as a big one (the quality recipe: 28,000). "
                                    "Off: exactly the epochs above.\nThe command line's --min-updates; there, "
                                    "--epochs given alone turns it off. The run says at its start when it "
                                    "trains more epochs than asked.", 1000)
        self.min_updates.setSpecialValueText("off")
        self.min_updates.setSuffix(" updates")
        self.optimizer = QtWidgets.QComboBox()
        self.optimizer.addItems(["adam", "sgd"])
        self.optimizer.setCurrentText(train_defaults.optimizer)
        self.optimizer.setToolTip("adam: fast and robust. sgd: the tutorial's plain gradient descent.")
        self.batch_seqs = spin_box(1, 256, train_defaults.batch_seqs, "Subsequences of 100 steps per update. "
                                   "1 reproduces the tutorial's schedule; 4 learns best (docs/quality.md); "
                                   "16-32 is faster per epoch.")
        self.key_shift = spin_box(0, 12, train_defaults.key_shift, "Transpose each piece by up to this many "
                                  "semitones, up or down, drawn anew every epoch: a small folder learns more "
                                  "and overfits less.\n"
                                  "Leave it at 0 for a large folder whose pieces share one key (e.g. Nottingham, "
                                  "all in C). docs/quality.md, round three, has the measurements.")
        self.key_shift.setSuffix(" semitones")
        self.key_shift.setSpecialValueText("off")
        self.recipe = QtWidgets.QCheckBox("Quality recipe")
        self.recipe.setChecked(True)
        self.recipe.setToolTip("Pretrain the RBM and the RNN, decay the learning rate, use persistent CD "
                               "chains and weight decay (on W and on the RNN's weights), and keep the epoch "
                               "with the best validation log-likelihood: how the bundled model was trained "
                               "(docs/quality.md). "
                               "The model then composes with 1,000 Gibbs steps per step, which its sharper "
                               "RBMs need.\n"
                               "Off: plain CD-k training with the settings above, as in the tutorial (25 steps).")
        self.steps_per_beat = spin_box(1, 16, 2, "Time grid: steps per quarter note (2 = eighth notes, "
                                       "as the Nottingham benchmark). Changing it reloads the music.")
        self.seed = spin_box(0, 2**31 - 1, train_defaults.seed, "Random seed: the same seed and data give the "
                             "same model.")

        form = QtWidgets.QFormLayout()
        form.addRow("Hidden units", self.hidden)
        form.addRow("Recurrent units", self.recurrent)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Batch (subsequences)", self.batch_seqs)
        form.addRow("CD-k", self.cd_k)
        form.addRow("Epochs", self.epochs)
        form.addRow("Min. updates", self.min_updates)
        form.addRow("Steps per beat", self.steps_per_beat)
        form.addRow("Seed", self.seed)
        form.addRow("Transpose (augment)", self.key_shift)
        form.addRow("", self.recipe)

        self.train_button = QtWidgets.QPushButton("Train")
        self.train_button.setToolTip(TRAIN_HINT)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current update; the checkpoint keeps the weights so far")
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.resume_button.setToolTip(RESUME_HINT)
        buttons = QtWidgets.QHBoxLayout()
        for button in (self.train_button, self.stop_button, self.resume_button):
            buttons.addWidget(button)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        self.checkpoint_label = QtWidgets.QLabel("")
        self.checkpoint_label.setWordWrap(True)
        self.checkpoint_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.checkpoint_label)

        self.train_button.clicked.connect(self.train_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.resume_button.clicked.connect(self.resume_requested)
        self.recipe.toggled.connect(self._recipe_toggled)
        self.set_state(running=False, can_train=False, can_resume=False)

    def configs(self) -> tuple[RnnRbmConfig, TrainConfig]:
        """The model's and the training's settings: the recipe's (training/recipes.py, as `train --recipe`
        gives them), with the fields of this panel."""
        recipe = QUALITY if self.recipe.isChecked() else TUTORIAL
        # both fields are the user's, shown: the run trains Epochs, raised to reach Min. updates (as `train`)
        return configs(recipe, min_updates=self.min_updates.value(), n_hidden=self.hidden.value(), n_hidden_recurrent=self.recurrent.value(),
                       cd_k=self.cd_k.value(), epochs=self.epochs.value(), learning_rate=self.learning_rate.value(),
                       optimizer=self.optimizer.currentText(), batch_seqs=self.batch_seqs.value(),
                       seed=self.seed.value(), key_shift=self.key_shift.value())

    def _recipe_toggled(self, quality: bool) -> None:
        self.min_updates.setValue(recipe_value(QUALITY if quality else TUTORIAL, "min_updates"))

    def roll_settings(self) -> RollSettings:
        return RollSettings(steps_per_beat=self.steps_per_beat.value())

    def set_state(self, running: bool, can_train: bool, can_resume: bool) -> None:
        self.progress.setVisible(running or self.progress.value() > 0)
        self.train_button.setEnabled(can_train and not running)
        # a greyed-out button says why (Qt shows tooltips on disabled buttons too)
        self.train_button.setToolTip(
            TRAIN_HINT if can_train else "Load music first: choose a folder in 1 · Music to learn from")
        self.resume_button.setEnabled(can_resume and can_train and not running)
        if not can_resume:
            self.resume_button.setToolTip("Nothing to resume: open a model whose training was stopped (File > Open)")
        elif not can_train:
            self.resume_button.setToolTip("Load the music the model was trained on first (1 · Music to learn from)")
        else:
            self.resume_button.setToolTip(RESUME_HINT)
        self.stop_button.setEnabled(running)
        for widget in (self.hidden, self.recurrent, self.learning_rate, self.cd_k, self.epochs, self.min_updates,
                       self.optimizer,
                       self.batch_seqs, self.steps_per_beat, self.seed, self.key_shift, self.recipe):
            widget.setEnabled(not running)

    def show_progress(self, p: TrainProgress) -> None:
        """The bar and the line under it, from the first report on: the plan, each pretraining phase with
        its ETA, then the epochs."""
        self.progress.setValue(int(p.fraction * 1000))
        if p.event == "start":
            self.progress.setFormat("starting")
            self.status.setText(f"Plan: {p.message}")
        elif p.event == "pretraining":
            of = f"at most {p.epochs}" if p.eta_at_most else f"{p.epochs}"
            self.progress.setFormat(f"{p.phase} {p.epoch}/{p.epochs}  {p.fraction * 100:.0f}%")
            self.status.setText(f"{p.phase}: epoch {p.epoch} of {of} · update {p.step:,}/{p.steps_in_epoch:,} · "
                                f"phase ETA {eta_text(p)}" + (f" · {p.message}" if p.message else ""))
        elif p.event in ("step", "epoch"):
            self.progress.setFormat(f"epoch {p.epoch}/{p.epochs}  {p.fraction * 100:.0f}%")
            valid = f" · valid monitor {p.valid_monitor:.2f}" if p.valid_monitor is not None else ""
            if p.valid_ll is not None:
                valid += f" · valid LL {ll_text(p.valid_ll, p.valid_ll_se)}"
            if p.kept_epoch is not None:
                valid += f" · kept epoch {p.kept_epoch}"
            self.status.setText(f"{p.frames_per_second:,.0f} frames/s · monitor {p.monitor:.2f}{valid} · "
                                f"elapsed {format_seconds(p.elapsed_seconds)} · ETA {eta_text(p)}")
        else:
            self.status.setText(p.message)
