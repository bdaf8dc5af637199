"""How long the window's event loop stalls while it trains, plays, does both, and exports (target < 50 ms).

Opens the real window offscreen, loads music, and measures with the window's StallMonitor (a 10 ms
timer; any extra delay between firings is time the loop could not run) in four phases: playing
alone, training alone, training while playing (to a silent port: the synth is not what is measured),
and exporting 512 new bars at 1,000 Gibbs steps (measured from the click; then cancelled).

    .venv/bin/python benchmarks/bench_ui_responsiveness.py [--seconds 15] [--data DIR_OR_PICKLE]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtCore, QtWidgets  # noqa: E402

from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint  # noqa: E402
from rnnrbm_studio.model import RnnRbm  # noqa: E402
from rnnrbm_studio.runtime import configure_threads  # noqa: E402
from rnnrbm_studio.ui.app import create_application  # noqa: E402
from rnnrbm_studio.ui.live_controller import SilentPortProvider  # noqa: E402
from rnnrbm_studio.ui.main_window import MainWindow  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nottingham_midi" / "train"


def run_loop(app, seconds: float) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def measure(window, app, seconds: float) -> tuple[float, int]:
    window.stall_monitor.reset()
    run_loop(app, seconds)
    return window.stall_monitor.max_stall_ms, window.stall_monitor.samples


def measure_export(window, app, seconds: float, path: Path) -> tuple[float, int]:
    """Export 512 bars at 1,000 Gibbs steps (most of a minute of generation), measured from the click."""
    window.live_panel.gibbs_steps.setValue(1000)
    window.stall_monitor.reset()
    started = time.perf_counter()
    window.playback.export_bars(path, 512)
    print(f"export_bars returned after {time.perf_counter() - started:.3f} s")
    run_loop(app, seconds)
    result = window.stall_monitor.max_stall_ms, window.stall_monitor.samples
    export = window.playback.bars_export
    if export.is_running():
        export.cancel()
        while export.is_running():
            run_loop(app, 0.05)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a MIDI folder to train on")
    args = parser.parse_args()
    if not Path(args.data).exists():
        print(f"no data at {args.data}; pass --data", file=sys.stderr)
        return 2
    threads = configure_threads()  # as the app does
    app = create_application()
    app.setProperty("no_dialogs", True)
    with tempfile.TemporaryDirectory() as scratch:
        model_file = Path(scratch) / "model.pt"
        save_checkpoint(model_file, model_checkpoint(RnnRbm()))
        settings = QtCore.QSettings(str(Path(scratch) / "s.ini"), QtCore.QSettings.Format.IniFormat)
        window = MainWindow(settings, model_file, port_provider=SilentPortProvider(), models_dir=Path(scratch))
        window.show()
        started = time.perf_counter()
        window.load_folder(args.data)
        while window.corpus is None:
            run_loop(app, 0.2)
        print(f"loaded {window.corpus.summary()} in {time.perf_counter() - started:.1f} s")
        window.live_panel.bpm.setValue(240)  # 8 steps per second
        results = {}
        window.playback.toggle_play()
        # the first second after Play (the player and its sender process start) apart from the steady state
        results["pressing Play (first s)"] = measure(window, app, 1.0)
        results["playing"] = measure(window, app, args.seconds)
        window.playback.toggle_play()
        window.training_panel.epochs.setValue(1000)
        window.start_training()
        run_loop(app, 1.0)  # past the first batches
        results["training"] = measure(window, app, args.seconds)
        window.playback.toggle_play()
        results["Play while training (first s)"] = measure(window, app, 1.0)
        results["training + playing"] = measure(window, app, args.seconds)
        frames = window.piano_roll.frames_pushed
        window.playback.toggle_play()
        window.stop_training()
        while window.training_running():
            run_loop(app, 0.1)
        results["exporting"] = measure_export(window, app, args.seconds, Path(scratch) / "bars.mid")
        window.close()
    print(f"settings: {args.seconds:.0f} s per phase, playing at 240 BPM x 2 steps per beat, training "
          f"150/100 units, CD-15, Adam, 16 subsequences per update; {threads} torch thread(s); "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'phase':<22}{'longest stall (ms)':>20}{'timer ticks':>14}")
    for phase, (stall, samples) in results.items():
        print(f"{phase:<22}{stall:>20.1f}{samples:>14}")
    print(f"frames drawn on the piano-roll while playing: {frames}")
    worst = max(stall for stall, _ in results.values())
    print(f"target < 50 ms: {'met' if worst < 50 else 'NOT met'} (worst {worst:.1f} ms)")
    QtWidgets.QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
