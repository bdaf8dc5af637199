"""The window's status bar: a message too long for it is cut at a word, with "…", never mid-word.

QStatusBar clips a long message wherever the bar ends ("…start a synth (e.g. Flui"). This one shows
a message's first line, shortened at the last whole word that fits beside the permanent widgets;
the whole message is in the tooltip, and a resize shortens it again from the whole text.
"""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

ELLIPSIS = "…"
MARGIN = 16  # the bar's own padding around the message, in pixels


def elide_at_word(text: str, metrics: QtGui.QFontMetrics, width: int) -> str:
    """`text` if it fits in `width` pixels, else its longest run of whole words that fits, then "…"
    (a single word too long for the width is cut by Qt's own eliding, the only case left)."""
    if metrics.horizontalAdvance(text) <= width:
        return text
    words = text.split(" ")
    low, high = 0, len(words)  # the most words whose shortened text fits: binary search
    while low < high:
        middle = (low + high + 1) // 2
        if metrics.horizontalAdvance(_shortened(words, middle)) <= width:
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return metrics.elidedText(text, QtGui.Qt.TextElideMode.ElideRight, width)
    return _shortened(words, low)


def _shortened(words: list[str], count: int) -> str:
    return " ".join(words[:count]).rstrip(" ,;:.-(") + ELLIPSIS


class StatusBar(QtWidgets.QStatusBar):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._whole = ""  # the message as given, while it shows
        self._shown = ""
        self._timeout = 0  # ms the message was to show (0: until replaced)
        self._since = QtCore.QElapsedTimer()
        self.messageChanged.connect(self._message_changed)

    def showMessage(self, message: str, timeout: int = 0) -> None:  # noqa: N802 (Qt's name)
        self._whole = message or ""
        self._timeout = max(0, int(timeout))
        self._since.start()
        self._shown = self._fitted(self._whole)
        self.setToolTip(self._whole if self._shown != self._whole else "")
        super().showMessage(self._shown, timeout)

    def full_message(self) -> str:
        """The whole of the message shown now (the bar may show it shortened)."""
        return self._whole if self.currentMessage() == self._shown else self.currentMessage()

    def _fitted(self, message: str) -> str:
        first_line = message.strip().splitlines()[0] if message.strip() else ""
        fitted = elide_at_word(first_line, self.fontMetrics(), self._room())
        if first_line != message.strip() and not fitted.endswith(ELLIPSIS):
            fitted = fitted.rstrip(" ,;:.") + ELLIPSIS  # more lines follow: say so
        return fitted

    def _room(self) -> int:
        """Pixels left for the message beside the permanent widgets."""
        taken = sum(widget.sizeHint().width() + MARGIN for widget in self.findChildren(QtWidgets.QWidget)
                    if widget.parent() is self and widget.isVisible() and not isinstance(widget, QtWidgets.QSizeGrip))
        return max(40, self.width() - taken - MARGIN)

    def _message_changed(self, message: str) -> None:
        if message != self._shown:  # cleared, or set by Qt itself (an action's status tip)
            self._whole, self._shown = message, message
            self.setToolTip("")

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        if self._whole and self.currentMessage() == self._shown:
            fitted = self._fitted(self._whole)
            remaining = self._timeout - self._since.elapsed() if self._timeout else 0
            if fitted != self._shown and (remaining > 0 or not self._timeout):  # the same time left to show
                self._shown = fitted
                self.setToolTip(self._whole if fitted != self._whole else "")
                super().showMessage(fitted, max(0, remaining))
