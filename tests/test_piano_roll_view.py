"""The window's scrolling piano-roll: a ring written twice, drawn without copying."""
from __future__ import annotations

import numpy as np

from rnnrbm_studio.ui.piano_roll import EMPTY, HELD, ONSET, PianoRollView


def frame(*keys: int) -> np.ndarray:
    row = np.zeros(88, dtype=np.uint8)
    row[list(keys)] = 1
    return row


def test_the_last_frames_come_back_oldest_first_across_the_wrap(qtbot):
    view = PianoRollView(capacity=4)
    qtbot.addWidget(view)
    for key in range(10):  # 2.5 times round the ring
        view.push(frame(key))
    latest = view.latest_frames(4)
    assert [int(np.flatnonzero(row)[0]) for row in latest] == [6, 7, 8, 9]
    assert all(row[np.flatnonzero(row)[0]] == ONSET for row in latest)
    assert [int(np.flatnonzero(row)[0]) for row in view.latest_frames(2)] == [8, 9]


def test_a_held_key_is_drawn_held_after_its_onset(qtbot):
    view = PianoRollView(capacity=3)
    qtbot.addWidget(view)
    for _ in range(5):
        view.push(frame(40))
    assert view.latest_frames(3)[:, 40].tolist() == [HELD, HELD, HELD]
    view.push(frame(41))
    assert view.latest_frames(1)[0, 40] == EMPTY and view.latest_frames(1)[0, 41] == ONSET


def test_refresh_draws_a_view_of_the_ring_not_a_copy(qtbot):
    view = PianoRollView(capacity=5)
    qtbot.addWidget(view)
    for key in range(7):
        view.push(frame(key))
    view.refresh()
    drawn = view.image.image
    assert drawn.shape == (88, 5)
    assert np.shares_memory(drawn, view._ring)
    assert [int(np.flatnonzero(drawn[:, column])[0]) for column in range(5)] == [2, 3, 4, 5, 6]
