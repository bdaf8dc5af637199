"""Playing a training piece (live/roll_player.py): on time, every note released, stop silences."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from jack_synth import FakePort, unbalanced_notes
from rnnrbm_studio.live.clock import FakeClock
from rnnrbm_studio.live.output_port import PortError
from rnnrbm_studio.live.roll_player import STOP_FINISHED, RollPlayer
from rnnrbm_studio.live.settings import PlaybackSettings
from rnnrbm_studio.live.transport import STOP_REQUESTED


def piece(*steps: tuple[int, ...]) -> np.ndarray:
    roll = np.zeros((len(steps), 88), dtype=np.uint8)
    for t, keys in enumerate(steps):
        roll[t, list(keys)] = 1
    return roll


class Run:
    def __init__(self, roll, **settings):
        self.clock = FakeClock()
        self.port = FakePort(self.clock)
        self.reasons: list[str] = []
        self.stopped = threading.Event()
        self.player = RollPlayer(roll, self.port, PlaybackSettings(**settings), clock=self.clock,
                                 on_stopped=self._stopped)

    def _stopped(self, reason: str) -> None:
        self.reasons.append(reason)
        self.stopped.set()

    def next_deadline(self) -> float:
        return self.clock.wait_until_waiting("scheduler", after=self.clock.now())


def test_a_piece_plays_at_its_deadlines_then_ends_with_every_note_released():
    run = Run(piece((39,), (39, 43), (), (46,)), bpm=120, steps_per_beat=2, dynamics=False)  # 0.25 s a step
    run.player.start()
    deadlines = []
    for _ in range(5):  # four steps, then the silence that ends the piece
        deadlines.append(run.clock.advance_to(run.next_deadline()))
    assert run.stopped.wait(5) and run.reasons == [STOP_FINISHED]
    assert run.player.wait_stopped(5) and run.player.state == "stopped"
    # 0.25 s apart, on absolute deadlines
    assert np.diff(deadlines) == pytest.approx([0.25] * 4)
    notes = [(t, m.type, m.note) for t, m in run.port.sent if m.type.startswith("note")]
    t0 = deadlines[0]
    assert notes == [(t0, "note_on", 60), (t0 + 0.25, "note_on", 64), (t0 + 0.5, "note_off", 60),
                     (t0 + 0.5, "note_off", 64), (t0 + 0.75, "note_on", 67), (t0 + 1.0, "note_off", 67)]
    assert unbalanced_notes(run.port.messages()) == {} and run.port.messages()[-1].is_cc(123)
    assert run.player.frames_played == 4 and run.player.open_notes == []


def test_stop_mid_piece_releases_the_notes_sounding():
    run = Run(piece(*[(30, 34, 37)] * 40), bpm=120, steps_per_beat=2)
    run.player.start()
    for _ in range(3):
        run.clock.advance_to(run.next_deadline())
    run.next_deadline()
    assert run.player.open_notes == [51, 55, 58]
    run.player.stop()
    assert run.reasons == [STOP_REQUESTED] and run.player.open_notes == []
    assert unbalanced_notes(run.port.messages()) == {} and run.port.messages()[-1].is_cc(123)
    velocities = [m.velocity for m in run.port.messages("note_on")]
    assert velocities == [86, 86, 98]  # the dynamics rule: a downbeat chord under its top voice


def test_no_port_is_a_port_error():
    with pytest.raises(PortError):
        RollPlayer(piece((1,)), None, PlaybackSettings())
