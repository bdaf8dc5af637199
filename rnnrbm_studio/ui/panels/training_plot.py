"""The training plot: the monitor of each epoch, on the training and the validation music."""
from __future__ import annotations

import pyqtgraph as pg

from ...training.config import EpochRecord, TrainProgress


class TrainingPlot(pg.PlotWidget):
    """The training and validation monitor per epoch (the tutorial's reconstruction log-likelihood)."""

    def __init__(self, parent=None):
        super().__init__(parent=parent)
        plot = self.getPlotItem()
        plot.setLabel("bottom", "epoch")
        plot.setLabel("left", "monitor (higher is better)")
        self.legend = plot.addLegend(offset=(-10, 10))
        plot.showGrid(x=True, y=True, alpha=0.2)
        self.train_curve = plot.plot([], [], pen=pg.mkPen((72, 132, 210), width=2), name="training")
        self.valid_curve = plot.plot([], [], pen=pg.mkPen((255, 196, 64), width=2), name="validation",
                                     symbol="o", symbolSize=4)
        self.epochs: list[int] = []
        self.train_values: list[float] = []
        self.valid_epochs: list[int] = []
        self.valid_values: list[float] = []
        self._redraw()

    def set_history(self, history: list[EpochRecord]) -> None:
        # a history may lack training readings (the bundled model's: resources/default_model.md)
        self.epochs = [h.epoch for h in history if h.monitor is not None]
        self.train_values = [h.monitor for h in history if h.monitor is not None]
        self.valid_epochs = [h.epoch for h in history if h.valid_monitor is not None]
        self.valid_values = [h.valid_monitor for h in history if h.valid_monitor is not None]
        self._redraw()

    def add_epoch(self, p: TrainProgress) -> None:
        self.epochs.append(p.epoch)
        self.train_values.append(p.monitor)
        if p.valid_monitor is not None:
            self.valid_epochs.append(p.epoch)
            self.valid_values.append(p.valid_monitor)
        self._redraw()

    def _redraw(self) -> None:
        self.train_curve.setData(self.epochs, self.train_values)
        self.valid_curve.setData(self.valid_epochs, self.valid_values)
        # a curve without points has no place in the legend (the bundled model has no training readings)
        self.legend.clear()
        for curve, name, values in ((self.train_curve, "training", self.train_values),
                                    (self.valid_curve, "validation", self.valid_values)):
            if values:
                self.legend.addItem(curve, name)

    def legend_names(self) -> list[str]:
        return [label.text for _, label in self.legend.items]
