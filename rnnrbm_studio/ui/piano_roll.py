"""A scrolling piano-roll: a preallocated ring buffer of frames drawn by one pyqtgraph ImageItem.

Live, the view scrolls: 0 s is now, the past to the left. A whole roll (a piece's preview, show_roll)
is fitted instead: 0 s at its start, its end at the right edge, with a playhead while it plays.
Frames are pushed as they are played (any thread hands them to the window, which pushes them on
the GUI thread); `refresh()` redraws at most once per display tick, so the cost of drawing does not
grow with the frame rate. The ring is written twice (each frame at row i and at row i + capacity), so
the last `capacity` frames, oldest first, are always one contiguous slice: drawing copies nothing.
Playing along, the musician's keys (held at each frame's deadline) are drawn in a colour of their own.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore

from ..music.pianoroll import LOWEST_PITCH, N_KEYS, note_name

EMPTY, HELD, ONSET, MUSICIAN, BOTH = 0, 1, 2, 3, 4
MODEL_VALUES = (HELD, ONSET, BOTH)  # the values where the model sounds a key
MAX_SHOWN_FRAMES = 20_000  # a preview shows at most this much of a piece (over an hour at 4 steps a second)
# Colours for empty / the model's held / its newly struck keys (onsets stand out from sustained notes) /
# the musician's keys when playing along (green) / a key both sound (white; accompany never does it).
COLOURS = np.array([[24, 26, 33, 255], [72, 132, 210, 255], [255, 196, 64, 255], [80, 200, 120, 255],
                    [240, 240, 240, 255]], dtype=np.uint8)


class PianoRollView(pg.PlotWidget):
    """Time runs left to right (seconds, 0 = now), keys bottom to top with note names."""

    def __init__(self, capacity: int = 256, parent=None, title: str | None = None):
        super().__init__(parent=parent, background=(24, 26, 33))
        self.capacity = capacity
        self._ring = np.zeros((2 * capacity, N_KEYS), dtype=np.uint8)  # rows: frames (twice), cols: keys
        self._write = 0  # next row of the ring to write (and row + capacity)
        self._count = 0  # frames pushed in all
        self._dirty = True
        self._seconds_per_frame = 0.25
        self._fitted = False  # True: a whole roll from 0 s (show_roll); False: scrolling, 0 s = now
        self.image = pg.ImageItem(axisOrder="row-major")  # row-major: rows are keys (y), columns frames (x)
        self.image.setLookupTable(COLOURS)
        self.addItem(self.image)
        plot = self.getPlotItem()
        plot.setMenuEnabled(False)
        plot.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        plot.setLabel("bottom", "seconds")
        if title:
            plot.setTitle(title)
        left = plot.getAxis("left")
        left.setTicks([[(pitch - LOWEST_PITCH + 0.5, note_name(pitch))
                        for pitch in range(LOWEST_PITCH, LOWEST_PITCH + N_KEYS) if pitch % 12 == 0]])
        self.setYRange(0, N_KEYS, padding=0)
        self.playhead = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen((240, 240, 240), width=2))
        self.playhead.setVisible(False)
        self.addItem(self.playhead)
        self._apply_geometry()

    # ------------------------------------------------------------------------------ input
    def set_seconds_per_frame(self, seconds: float) -> None:
        if seconds > 0 and seconds != self._seconds_per_frame:
            self._seconds_per_frame = seconds
            self._apply_geometry()

    def push(self, keys: np.ndarray, onsets: np.ndarray | None = None, musician: np.ndarray | None = None) -> None:
        """Append one frame: the model's keys (88,) 0/1, their onsets (88,) bool (default: keys not held
        before), and the musician's keys (88,) bool when playing along (None: nobody else played)."""
        keys = np.asarray(keys) > 0
        if onsets is None:
            previous = self._ring[(self._write - 1) % self.capacity] if self._count else np.zeros(N_KEYS, np.uint8)
            onsets = keys & ~np.isin(previous, MODEL_VALUES)
        row = np.full(N_KEYS, EMPTY, dtype=np.uint8)
        row[keys] = HELD
        row[np.asarray(onsets, dtype=bool) & keys] = ONSET
        if musician is not None:
            musician = np.asarray(musician, dtype=bool)
            row[musician] = np.where(keys[musician], BOTH, MUSICIAN)
        self._ring[self._write] = row
        self._ring[self._write + self.capacity] = row
        self._write = (self._write + 1) % self.capacity
        self._count += 1
        self._dirty = True

    def show_roll(self, roll: np.ndarray, seconds_per_frame: float | None = None) -> None:
        """Show a whole roll (a piece's preview) fitted to the view: from 0 s at the left to its end at
        the right (its first MAX_SHOWN_FRAMES frames). The view keeps this roll's length until the next."""
        keys = np.asarray(roll)[:MAX_SHOWN_FRAMES] > 0
        if seconds_per_frame and seconds_per_frame > 0:
            self._seconds_per_frame = float(seconds_per_frame)
        self._fitted = True
        self.capacity = max(1, keys.shape[0])
        self._ring = np.zeros((2 * self.capacity, N_KEYS), dtype=np.uint8)
        previous = np.zeros_like(keys)
        previous[1:] = keys[:-1]
        rows = np.where(keys, np.where(previous, HELD, ONSET), EMPTY).astype(np.uint8)
        self._ring[:len(rows)] = rows
        self._ring[self.capacity:self.capacity + len(rows)] = rows
        self._write, self._count = len(rows) % self.capacity, len(rows)
        self._dirty = True
        self.set_playhead(None)
        self.refresh()

    def set_playhead(self, frame: int | None) -> None:
        """A line at `frame` of a shown roll (None: no line)."""
        self.playhead.setVisible(frame is not None)
        if frame is not None:
            self.playhead.setPos(frame * self._seconds_per_frame)

    def clear_frames(self) -> None:
        self._ring[:] = EMPTY
        self._write = 0
        self._count = 0
        self._dirty = True

    @property
    def frames_pushed(self) -> int:
        return self._count

    def latest_frames(self, n: int) -> np.ndarray:
        """The last n frames pushed, oldest first, as values EMPTY/HELD/ONSET/MUSICIAN/BOTH (n, 88)."""
        n = min(n, self._count, self.capacity)
        return self._window()[self.capacity - n:].copy()

    def _window(self) -> np.ndarray:
        """The last `capacity` frames, oldest first: a view into the doubled ring, no copy."""
        return self._ring[self._write:self._write + self.capacity]

    # ---------------------------------------------------------------------------- drawing
    def refresh(self) -> None:
        """Redraw if anything changed since the last call (called by the window's display timer)."""
        if not self._dirty:
            return
        self._dirty = False
        self.image.setImage(self._window().T, autoLevels=False, levels=(0, len(COLOURS) - 1))
        self._apply_geometry()

    def _apply_geometry(self) -> None:
        width = self.capacity * self._seconds_per_frame
        left = 0.0 if self._fitted else -width
        self.image.setRect(QtCore.QRectF(left, 0, width, N_KEYS))
        self.setXRange(left, left + width, padding=0)
