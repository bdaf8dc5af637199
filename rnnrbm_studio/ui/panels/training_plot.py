"""The training plot: what a run keeps its epochs by, per epoch, and the epoch it kept.

The main curve (left axis) is the validation log-likelihood per step, with its AIS standard error
(the quality recipe measures it after every epoch and keeps its best epoch by it); a run that keeps
by the tutorial's monitor (the tutorial recipe) has the validation monitor as its main curve. The
tutorial's monitor, on the training music (and on the validation music when the main curve is the
log-likelihood), is secondary: thin, dashed, on its own right axis. A vertical line marks the kept
epoch; the legend sits under the plot, never on a curve; the axes fit the points from the first one.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from ...training.config import EpochRecord, TrainProgress

MAIN_COLOUR, TRAIN_COLOUR, VALID_MONITOR_COLOUR, KEPT_COLOUR = (255, 196, 64), (72, 132, 210), (150, 150, 150), \
    (90, 200, 120)
REFERENCE_COLOUR = (230, 120, 120)
MIN_EPOCHS_SHOWN = 5  # whole epochs on the axis, even after the first
LL_LABEL = "validation log-likelihood per step (higher is better)"
MONITOR_LABEL = "validation monitor (higher is better)"


def fitted_range(values: list[float], errors: list[float] | None = None) -> tuple[float, float]:
    """A y-range holding every value (and its error bar) with a margin; one point gets a narrow range
    around it, not pyqtgraph's default span."""
    errors = errors or [0.0] * len(values)
    low = min(v - e for v, e in zip(values, errors))
    high = max(v + e for v, e in zip(values, errors))
    pad = max(0.1 * (high - low), 0.03 * max(abs(v) for v in values), 0.02)
    return low - pad, high + pad


# an evaluation's log-likelihood, best first: the most temperatures, each frame's log Z at its sure bound
EVALUATION_KEYS = ("log_likelihood_ais_16x4000_floored", "log_likelihood_capped", "log_likelihood_floored",
                   "log_likelihood_ais_16x1000", "log_likelihood")


def evaluation_reference(evaluation: dict | None) -> tuple[float, str] | None:
    """(log-likelihood, label) of `eval --record`'s full evaluation stored with a model, or None.

    The per-epoch curve is a quick estimate that reads high; the full evaluation beside it shows by
    how much (on its own split, usually test)."""
    if not evaluation:
        return None
    for key in EVALUATION_KEYS:
        value = evaluation.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            split = evaluation.get("split") or next(
                (s for s in ("test", "valid", "train") if f"{s} split" in str(evaluation.get("data", ""))), None)
            where = f"{split} split" if split else "its data"
            return float(value), f"full evaluation ({where}): {value:.2f}"
    return None


class TrainingPlot(pg.PlotWidget):
    def __init__(self, parent=None):
        super().__init__(parent=parent)
        plot = self.getPlotItem()
        plot.setLabel("bottom", "epoch")
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setMenuEnabled(False)
        # the secondary axis: its own view box, sharing the epochs
        self.secondary = pg.ViewBox()
        plot.showAxis("right")
        plot.scene().addItem(self.secondary)
        plot.getAxis("right").linkToView(self.secondary)
        plot.getAxis("right").setLabel("the tutorial's monitor (secondary)")
        self.secondary.setXLink(plot)
        plot.vb.sigResized.connect(self._sync_views)
        self.main_curve = pg.PlotDataItem([], [], pen=pg.mkPen(MAIN_COLOUR, width=2), symbol="o", symbolSize=5,
                                          symbolBrush=MAIN_COLOUR)
        self.error_bars = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), height=np.zeros(0),
                                          pen=pg.mkPen(MAIN_COLOUR, width=1), beam=0.15)
        self.kept_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(KEPT_COLOUR, width=1.5,
                                                                               style=QtCore.Qt.PenStyle.DashLine),
                                         label="kept", labelOpts={"position": 0.95, "color": KEPT_COLOUR})
        # the legend's sample of the kept line (a legend draws plot items, not infinite lines)
        self.kept_sample = pg.PlotDataItem([], [], pen=self.kept_line.pen)
        self.reference_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(REFERENCE_COLOUR, width=1.5,
                                                                                    style=QtCore.Qt.PenStyle.DotLine),
                                              label="", labelOpts={"position": 0.3, "color": REFERENCE_COLOUR})
        self.reference_sample = pg.PlotDataItem([], [], pen=self.reference_line.pen)
        self.reference: tuple[float, str] | None = None
        for item in (self.error_bars, self.main_curve, self.kept_line, self.reference_line):
            plot.addItem(item)
        secondary_pen = dict(width=1, style=QtCore.Qt.PenStyle.DashLine)
        self.train_curve = pg.PlotDataItem([], [], pen=pg.mkPen(TRAIN_COLOUR, **secondary_pen), symbol="t",
                                           symbolSize=4, symbolBrush=TRAIN_COLOUR, symbolPen=None)
        self.valid_monitor_curve = pg.PlotDataItem([], [], pen=pg.mkPen(VALID_MONITOR_COLOUR, **secondary_pen),
                                                   symbol="t", symbolSize=4, symbolBrush=VALID_MONITOR_COLOUR,
                                                   symbolPen=None)
        for item in (self.train_curve, self.valid_monitor_curve):
            self.secondary.addItem(item)
        # under the plot, in the plot item's own layout: it can never cover a point
        self.legend = pg.LegendItem(colCount=1)  # one column: the plot keeps its width at 1280x800
        plot.layout.addItem(self.legend, 4, 1)
        self.records: list[EpochRecord] = []
        self.planned_epochs = 0  # the running run's epochs: the axis spans them from the first point
        self._redraw()

    # ------------------------------------------------------------------------------ data
    def set_history(self, history: list[EpochRecord], evaluation: dict | None = None) -> None:
        """A model's epochs, and its recorded full evaluation (`eval --record`) drawn as a reference."""
        self.records = list(history)
        self.reference = evaluation_reference(evaluation)
        self.planned_epochs = 0
        self._redraw()

    def add_epoch(self, p: TrainProgress) -> None:
        self.records.append(EpochRecord(p.epoch, p.loss, p.monitor, p.valid_monitor, p.valid_ll, p.valid_ll_se,
                                        p.kept_epoch))
        self.planned_epochs = p.epochs
        self._redraw()

    # read by the window's tests: what each curve holds
    @property
    def epochs(self) -> list[int]:
        return [r.epoch for r in self.records if r.monitor is not None]

    @property
    def train_values(self) -> list[float]:
        return [r.monitor for r in self.records if r.monitor is not None]

    @property
    def by_log_likelihood(self) -> bool:
        """The main curve is the validation log-likelihood (else the validation monitor)."""
        return any(r.valid_ll is not None for r in self.records)

    def main_points(self) -> tuple[list[int], list[float], list[float]]:
        """(epochs, values, standard errors, 0 where none) of the main curve."""
        key = "valid_ll" if self.by_log_likelihood else "valid_monitor"
        rows = [r for r in self.records if getattr(r, key) is not None]
        errors = [(r.valid_ll_se or 0.0) if key == "valid_ll" else 0.0 for r in rows]
        return [r.epoch for r in rows], [getattr(r, key) for r in rows], errors

    @property
    def valid_epochs(self) -> list[int]:
        return self.main_points()[0]

    def kept_epoch(self) -> int | None:
        """The epoch the run kept: as the run recorded it, else (older files) the best of the main curve,
        which is the measure the run kept by (the quality recipe's log-likelihood, the tutorial's monitor)."""
        recorded = [r.kept_epoch for r in self.records if r.kept_epoch is not None]
        if recorded:
            return recorded[-1]
        epochs, values, _ = self.main_points()
        return epochs[int(np.argmax(values))] if values else None

    def legend_names(self) -> list[str]:
        return [label.text for _, label in self.legend.items]

    # ---------------------------------------------------------------------------- drawing
    def _sync_views(self) -> None:
        self.secondary.setGeometry(self.getPlotItem().vb.sceneBoundingRect())
        self.secondary.linkedViewChanged(self.getPlotItem().vb, self.secondary.XAxis)

    def _redraw(self) -> None:
        plot = self.getPlotItem()
        by_ll = self.by_log_likelihood
        epochs, values, errors = self.main_points()
        self.main_curve.setData(epochs, values)
        self.error_bars.setData(x=np.asarray(epochs, dtype=float), y=np.asarray(values, dtype=float),
                                height=2 * np.asarray(errors, dtype=float))
        self.train_curve.setData(self.epochs, self.train_values)
        monitor_rows = [r for r in self.records if r.valid_monitor is not None] if by_ll else []
        self.valid_monitor_curve.setData([r.epoch for r in monitor_rows], [r.valid_monitor for r in monitor_rows])
        plot.setLabel("left", LL_LABEL if by_ll else MONITOR_LABEL)
        kept = self.kept_epoch()
        self.kept_line.setVisible(kept is not None)
        if kept is not None:
            self.kept_line.setValue(kept)
            self.kept_line.label.setFormat(f"kept: epoch {kept}")
        show_reference = by_ll and self.reference is not None
        self.reference_line.setVisible(show_reference)
        if show_reference:
            self.reference_line.setValue(self.reference[0])
            self.reference_line.label.setFormat(self.reference[1])
        self._legend(by_ll, values, errors, monitor_rows, kept)
        self._fit_axes(epochs, values + ([self.reference[0]] if show_reference else []),
                       errors + ([0.0] if show_reference else []), monitor_rows)

    def _legend(self, by_ll, values, errors, monitor_rows, kept) -> None:
        self.legend.clear()
        if values:
            label = "validation log-likelihood (quick estimate)" if by_ll else "validation monitor"
            if by_ll and any(errors):
                label += " (bars: ± 1 AIS standard error)"
            self.legend.addItem(self.main_curve, label)
        if self.train_values:
            self.legend.addItem(self.train_curve, "training monitor (right axis)")
        if monitor_rows:
            self.legend.addItem(self.valid_monitor_curve, "validation monitor (right axis)")
        if by_ll and self.reference is not None:
            self.legend.addItem(self.reference_sample, self.reference[1])
        if kept is not None:
            self.legend.addItem(self.kept_sample, f"kept epoch ({'best log-likelihood' if by_ll else 'best monitor'})")

    def _fit_axes(self, epochs, values, errors, monitor_rows) -> None:
        plot = self.getPlotItem()
        last = max([r.epoch for r in self.records] + [self.planned_epochs, MIN_EPOCHS_SHOWN])
        plot.vb.setXRange(0.5, last + 0.5, padding=0)
        step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10**9) if last / s <= 12)
        plot.getAxis("bottom").setTickSpacing(step, step)  # whole epochs
        if values:
            plot.vb.setYRange(*fitted_range(values, errors), padding=0)
        secondary = self.train_values + [r.valid_monitor for r in monitor_rows]
        plot.getAxis("right").setVisible(bool(secondary))
        if secondary:
            self.secondary.setYRange(*fitted_range(secondary), padding=0)
        self._sync_views()

    def view_ranges(self) -> tuple[list[float], list[float], list[float]]:
        """(x range, main y range, secondary y range), as drawn."""
        (x, y), secondary = self.getPlotItem().vb.viewRange(), self.secondary.viewRange()[1]
        return list(x), list(y), list(secondary)
