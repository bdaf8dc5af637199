"""The *Music to learn from* panel: a folder to load, its loading progress and its summary."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets


class CorpusPanel(QtWidgets.QGroupBox):
    """Choose a MIDI folder; shows loading progress and the summary."""

    load_requested = QtCore.Signal(str)
    cancel_requested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__("1 · Music to learn from", parent)
        self.folder = QtWidgets.QComboBox()
        self.folder.setEditable(True)
        self.folder.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        self.folder.lineEdit().setPlaceholderText("a folder of MIDI files (or drop one here)")
        self.folder.setToolTip("The folder is searched recursively for .mid and .midi files. "
                               "Recent folders are in the list.")
        self.folder.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.browse_button = QtWidgets.QPushButton("Choose…")
        self.browse_button.setToolTip("Choose a folder of MIDI files")
        self.load_button = QtWidgets.QPushButton("Load")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setFormat("%v / %m files")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.summary = QtWidgets.QLabel("No music loaded yet: choose a folder of MIDI files to train on "
                                        "(the bundled model plays without one).")
        self.summary.setWordWrap(True)

        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.load_button)
        progress_row = QtWidgets.QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(progress_row)
        layout.addWidget(self.summary)
        self.set_loading(False)

        self.browse_button.clicked.connect(self._browse)
        self.load_button.clicked.connect(lambda: self._request(self.folder.currentText()))
        self.folder.lineEdit().returnPressed.connect(lambda: self._request(self.folder.currentText()))
        self.folder.activated.connect(lambda index: self._request(self.folder.itemText(index)))
        self.cancel_button.clicked.connect(self.cancel_requested)

    def _browse(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Choose a folder of MIDI files",
                                                            self.folder.currentText())
        if folder:
            self._request(folder)

    def _request(self, folder: str) -> None:
        folder = folder.strip()
        if folder:
            self.load_requested.emit(folder)

    def set_recent(self, folders: list[str]) -> None:
        current = self.folder.currentText()
        self.folder.blockSignals(True)
        self.folder.clear()
        self.folder.addItems(folders)
        self.folder.setCurrentText(current or (folders[0] if folders else ""))
        self.folder.blockSignals(False)

    def set_loading(self, loading: bool) -> None:
        self.progress.setVisible(loading)
        self.cancel_button.setVisible(loading)
        self.load_button.setEnabled(not loading)
        self.browse_button.setEnabled(not loading)
        if loading:
            self.progress.setRange(0, 0)

    def show_progress(self, done: int, total: int, name: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setToolTip(name)
