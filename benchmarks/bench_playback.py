"""Timing of live playback (not a test): how late the MIDI sends are, and how far ahead of real
time generation runs, with the player alone and with a training run in the same process.

For each mode it plays N frames through LivePlayer with the real clock and reports, per frame,
send time minus deadline (p50 / p99 / max, ms), and the player's own measure of generation time per
frame against the frame period. Modes:

  alone                  the player by itself, port in this process (a null port)
  training               a Trainer runs in a thread of this process, as in the app; its weights
                         are pushed into the player every few seconds (swap_weights), as the app
                         does after each epoch; port in this process
  training-gil5          as training, with Python's GIL switch interval left at 5 ms (the player
                         lowers it to 1 ms)
  training-no-rt         as training, the scheduler thread at normal priority
  sender-training        as training, the port in a sender process (sender.SenderProcessPort, the
                         default of outputs.open_output_port): times are those the sender reports
  sender-training-no-rt  as sender-training, the sender at normal priority (RNNRBM_STUDIO_REALTIME=0),
                         what a user gets where real-time priority is not allowed

    .venv/bin/python benchmarks/bench_playback.py --frames 400     # quick: ~2 min
    .venv/bin/python benchmarks/bench_playback.py                  # 3000 frames per mode: ~13 min
    .venv/bin/python benchmarks/bench_playback.py --modes alone,training,training-gil5,training-no-rt,sender-training,sender-training-no-rt

Messages go to a null port (in the sender process: a file at /dev/null) unless --port names a real
MIDI output. The corpus is ../shared/data/benchmarks/Nottingham.pickle when present, else random rolls.
Target on a 2-core machine: p99 <= 1 ms and max <= 5 ms, also while training.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnrbm_studio.assets import default_model_path  # noqa: E402
from rnnrbm_studio.training.checkpoint import load_model  # noqa: E402
from rnnrbm_studio.model import RnnRbm  # noqa: E402
from rnnrbm_studio.live.player import LivePlayer  # noqa: E402
from rnnrbm_studio.training.trainer import TrainConfig, Trainer  # noqa: E402

SHARED = Path(os.environ.get("RNNRBM_STUDIO_SHARED_DATA", REPO.parent / "shared" / "data"))
MODES = ("alone", "training", "training-gil5", "training-no-rt", "sender-training", "sender-training-no-rt")
DEFAULT_MODES = ("alone", "training", "sender-training", "sender-training-no-rt")


class NullPort:
    name = "null"

    def send(self, message) -> None:
        message.bytes()  # the encoding a real backend does; then nothing


def playing_model() -> tuple[RnnRbm, str]:
    path = default_model_path()
    if path.exists():
        return load_model(path)[0], f"default model {path.name}"
    model = RnnRbm()
    with torch.no_grad():
        model.bv.fill_(-3.0)  # an untrained model with ~4 keys per frame, like real music
    return model.eval(), "untrained model (bv = -3: ~4 keys per frame)"


def training_rolls() -> tuple[list[np.ndarray], str]:
    pickle_path = SHARED / "benchmarks" / "Nottingham.pickle"
    if pickle_path.exists():
        from rnnrbm_studio.music.corpus import load_benchmark_pickle

        corpus = load_benchmark_pickle(pickle_path)
        return [p.roll for p in corpus.train], f"Nottingham train split ({pickle_path})"
    rng = np.random.default_rng(0)
    return [(rng.random((300, 88)) < 0.05).astype(np.uint8) for _ in range(50)], "50 random rolls of 300 frames"


def percentiles(values_ms: np.ndarray) -> str:
    return (f"p50 {np.percentile(values_ms, 50):6.3f}  p99 {np.percentile(values_ms, 99):6.3f}  "
            f"max {values_ms.max():6.3f} ms")


def run_mode(mode: str, args, model: RnnRbm, rolls) -> dict:
    trainer = trainer_thread = None
    if "training" in mode:
        trainer = Trainer(RnnRbm(), rolls, config=TrainConfig(epochs=10_000, seed=1))
        trainer_thread = threading.Thread(target=trainer.run, name="trainer", daemon=True)
        trainer_thread.start()
    from rnnrbm_studio.live import ports
    from rnnrbm_studio.live.sender import SenderProcessPort

    sender = mode.startswith("sender")
    if sender:
        if mode.endswith("no-rt"):
            os.environ["RNNRBM_STUDIO_REALTIME"] = "0"  # read by the sender process as it starts
        try:
            port = (SenderProcessPort(args.port) if args.port
                    else SenderProcessPort(record_to=os.devnull))
        finally:
            os.environ.pop("RNNRBM_STUDIO_REALTIME", None)
    elif args.port:
        port = ports.open_port_in_process(args.port)
    else:
        port = NullPort()
    stopped = threading.Event()
    errors: list[str] = []
    player = LivePlayer(model, port, bpm=60.0 * args.steps_per_second / 4, steps_per_beat=4, seed=0,
                        played_buffer_size=args.frames + 100, on_error=errors.append,
                        on_stopped=lambda reason: stopped.set(),
                        gil_switch_interval=None if mode == "training-gil5" else 0.001,
                        realtime_priority=mode != "training-no-rt")
    swaps = 0
    try:
        player.start()
        next_swap = time.monotonic() + args.swap_every
        while player.frames_played < args.frames and not stopped.is_set():
            stopped.wait(0.1)
            if trainer is not None and time.monotonic() >= next_swap:
                player.swap_weights(trainer.model)  # as the app does after each epoch
                swaps += 1
                next_swap += args.swap_every
        player.stop()
        frames = player.drain_played_frames()
    finally:
        player.stop()
        if trainer is not None:
            trainer.request_stop()
            trainer_thread.join()
        if sender or args.port:
            port.close()
    late_hand_overs = None
    if sender:  # the sender process's own send times
        lateness_ms = np.array([(sent_at - deadline) * 1000 for _, deadline, sent_at in port.send_report()])
        realtime = port.realtime
        # frames this process handed over after their deadline: their lateness is this process's fault
        late_hand_overs = sum(f.sent_at > f.deadline for f in frames)
    else:
        lateness_ms = np.array([(f.sent_at - f.deadline) * 1000 for f in frames])
        realtime = player.realtime_scheduling
    return {"mode": mode, "frames": len(frames), "lateness_ms": lateness_ms, "underruns": player.underruns,
            "swaps": swaps, "generation_ms": player.generation_time_per_frame * 1000, "errors": errors,
            "realtime": realtime, "late_hand_overs": late_hand_overs,
            "notes_per_frame": float(np.mean([f.keys.sum() for f in frames])) if frames else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000, help="frames per mode (default 3000; quick: 400)")
    parser.add_argument("--steps-per-second", type=float, default=16.0, help="frame rate (default 16)")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES),
                        help=f"comma-separated, from {', '.join(MODES)} (default: {','.join(DEFAULT_MODES)})")
    parser.add_argument("--swap-every", type=float, default=5.0, help="seconds between weight swaps while training")
    parser.add_argument("--port", help="a real MIDI output to send to (default: a null port)")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}")

    model, model_text = playing_model()
    rolls, rolls_text = training_rolls() if any("training" in m for m in modes) else ([], "-")
    period_ms = 1000.0 / args.steps_per_second
    print(f"bench_playback: {args.frames} frames per mode at {args.steps_per_second:g} steps/s "
          f"(period {period_ms:.1f} ms), modes {', '.join(modes)}")
    print(f"  python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"  playing: {model_text}; port: {args.port or 'null (encode and drop)'}")
    print(f"  training corpus: {rolls_text}; weights swapped into the player every {args.swap_every:g} s")
    print(f"  expected duration: about {len(modes) * args.frames / args.steps_per_second / 60:.1f} min")
    print()
    results = []
    for mode in modes:
        result = run_mode(mode, args, model, rolls)
        results.append(result)
        late = result["lateness_ms"]
        print(f"{mode:22s} send - deadline: {percentiles(late)}  "
              f"(> 1 ms: {int((late > 1).sum())}, > 5 ms: {int((late > 5).sum())} of {result['frames']}; "
              f"underruns {result['underruns']}, weight swaps {result['swaps']}, "
              f"real-time priority {'yes' if result['realtime'] else 'no'}, "
              f"{result['notes_per_frame']:.1f} keys/frame)")
        print(f"{'':22s} generation (in the player): {result['generation_ms']:.3f} ms per frame = "
              f"{period_ms / result['generation_ms']:.0f}x faster than real time (period {period_ms:.1f} ms)"
              + (f"; frames handed to the sender after their deadline: {result['late_hand_overs']}"
                 if result["late_hand_overs"] is not None else "")
              + (f"; errors: {result['errors']}" if result["errors"] else ""))
        sys.stdout.flush()
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
