"""Starting the window: `rnnrbm-studio` (and `rnnrbm-studio --screenshot out.png`)."""
from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from ..errors import StudioError

log = logging.getLogger(__name__)

APP_NAME = "RNN-RBM Studio"
SCREENSHOT_PLAY_MS = 6000


def _has_display() -> bool:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def create_application():
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    collect_garbage_in_this_thread(app)
    return app


def collect_garbage_in_this_thread(app) -> None:
    """Python's automatic garbage collection off, a timer of the GUI thread collecting instead.

    Automatic collection runs in whichever thread allocates: a worker thread then destroys the Qt
    objects of a closed window, holding Qt's lock while it waits for the GIL that the GUI thread holds
    while it waits for that lock (seen: Export new bars hung for ever). pyqtgraph's GarbageCollector
    does exactly this; it is kept on the application so it lives as long as it."""
    from pyqtgraph.util.garbage_collector import GarbageCollector

    if getattr(app, "_rnnrbm_garbage_collector", None) is None:
        app._rnnrbm_garbage_collector = GarbageCollector(interval=1.0)


def run_app(model_path: str | None = None, screenshot: str | None = None) -> int:
    if screenshot and not _has_display():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if not _has_display():
        raise StudioError("no display found: run it on a desktop session, or under a virtual display "
                          "(xvfb-run -a rnnrbm-studio), or save a screenshot with --screenshot out.png")
    from PySide6 import QtCore

    from ..runtime import configure_threads
    from .main_window import MainWindow

    configure_threads()
    app = create_application()
    if screenshot:
        return _screenshot(app, model_path, Path(screenshot))
    window = MainWindow(QtCore.QSettings(), model_path)
    window.show()
    # Qt's loop runs in C++; a periodic no-op lets Python see Ctrl+C, which then closes the window
    # (stopping training and sending note-offs) instead of killing the process mid-note.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    heartbeat = QtCore.QTimer()
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(200)
    return app.exec()


def _screenshot(app, model_path: str | None, out: Path) -> int:
    """The window in a realistic state: the model loaded, its training curve, a few seconds played."""
    from PySide6 import QtCore

    from .live_controller import SilentPortProvider
    from .main_window import MainWindow

    if model_path is not None:
        from ..training.checkpoint import load_checkpoint

        load_checkpoint(model_path)  # a model that cannot be opened is this command's one-line error
    with tempfile.TemporaryDirectory() as scratch:
        settings = QtCore.QSettings(str(Path(scratch) / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        app.setProperty("no_dialogs", True)
        window = MainWindow(settings, model_path, port_provider=SilentPortProvider(),
                            models_dir=Path(scratch) / "models")
        window.resize(1280, 800)  # a laptop's screen: everything to play in sight
        window.tabs.setCurrentIndex(1)  # the Train tab: the bundled model's curve beside its settings
        window.show()
        if window.model_file.model is None:
            raise StudioError("no model to show: the bundled default model is missing; pass --model MODEL")
        window.live_panel.bpm.setValue(300)
        window.playback.toggle_play()
        loop = QtCore.QEventLoop()
        QtCore.QTimer.singleShot(SCREENSHOT_PLAY_MS, loop.quit)
        loop.exec()
        image = window.grab()  # while still playing: the window as a user sees it
        window.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out)):
        raise StudioError(f"cannot write the screenshot to {out}")
    print(f"wrote {out} ({image.width()}x{image.height()})")
    return 0
