"""MIDI <-> piano-roll on files made with mido: known notes at known ticks, round trips, bad bytes."""
from __future__ import annotations

import struct
import time

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rnnrbm_studio.music import midi_files
from rnnrbm_studio.errors import StudioError
from rnnrbm_studio.music.midi_files import MidiReadError, read_midi, roll_to_midi
from rnnrbm_studio.music.pianoroll import (
    RollSettings, estimate_transposition_to_c, note_name, notes_to_roll, roll_duration_seconds, roll_to_notes,
    transpose_roll,
)

from midi_fixtures import (
    TICKS_PER_BEAT, midi_bytes, midi_file, notes_track, roll_notes, scale_in_d_major, track_from_events, vlq,
    write_notes,
)

KEY = lambda pitch: pitch - 21  # noqa: E731  (roll column of a MIDI note)


def expected_roll(n_frames, spans):
    """A roll with key `pitch` down over frames [start, end) for each (pitch, start, end)."""
    roll = np.zeros((n_frames, 88), dtype=np.uint8)
    for pitch, start, end in spans:
        roll[start:end, KEY(pitch)] = 1
    return roll


def random_roll(rng, n_frames, density=0.08):
    roll = (rng.random((n_frames, 88)) < density).astype(np.uint8)
    roll[-1, rng.integers(88)] = 1  # a roll read from MIDI ends with its last sounding note
    return roll


# ------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("steps_per_beat", [1, 2, 3, 4, 8])
def test_roll_to_midi_to_roll_is_identical(tmp_path, steps_per_beat):
    rng = np.random.default_rng(steps_per_beat)
    for i in range(3):
        roll = random_roll(rng, 60 + 17 * i)
        path = tmp_path / f"r{i}.mid"
        roll_to_midi(roll, path, steps_per_beat=steps_per_beat, bpm=97)
        back = read_midi(path, RollSettings(steps_per_beat=steps_per_beat))
        assert back.roll.dtype == np.uint8
        np.testing.assert_array_equal(back.roll, roll)
        assert back.bpm == pytest.approx(97, rel=1e-5)
        assert mido.MidiFile(str(path)).type == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("bpm,steps_per_beat", [(100, 2), (120, 4), (50, 1)])
def test_round_trip_through_the_seconds_grid(tmp_path, bpm, steps_per_beat):
    """With one step = 60 / (bpm * steps_per_beat) seconds the seconds grid is exact too (100 bpm: 0.3 s)."""
    roll = random_roll(np.random.default_rng(bpm), 80)
    path = roll_to_midi(roll, None, bpm=bpm, steps_per_beat=steps_per_beat)
    back = read_midi(midi_bytes(path), RollSettings(seconds_per_step=60.0 / (bpm * steps_per_beat)))
    np.testing.assert_array_equal(back.roll, roll)


def test_pickle_note_lists_round_trip():
    sequence = [(60, 64, 67), (), (21, 108), (48,)]
    roll = notes_to_roll(sequence)
    assert roll.shape == (4, 88) and roll[2, 0] == 1 and roll[2, 87] == 1 and roll[1].sum() == 0
    assert roll_to_notes(roll) == sequence
    assert notes_to_roll([(20, 109, 60)]).sum() == 1  # outside the piano: dropped


def test_roll_to_midi_rejects_a_grid_that_does_not_divide_the_beat():
    with pytest.raises(ValueError):
        roll_to_midi(np.ones((2, 88)), None, steps_per_beat=7, ticks_per_beat=480)


# ------------------------------------------------------------------------ MIDI -> roll
def test_known_notes_at_known_ticks():
    step = TICKS_PER_BEAT // 2  # eighth notes
    notes = [(60, 0, 2 * step), (64, step, 3 * step), (67, 4 * step, 5 * step),
             (72, 6 * step, 6 * step + 10),  # shorter than a step: still one frame
             (48, 7 * step + 100, 9 * step - 100)]  # off the grid: rounded to the nearest step
    piece = read_midi(midi_bytes(midi_file([notes_track(notes)], 0)))
    expected = expected_roll(9, [(60, 0, 2), (64, 1, 3), (67, 4, 5), (72, 6, 7), (48, 7, 9)])
    np.testing.assert_array_equal(piece.roll, expected)
    assert piece.notes == 5 and piece.dropped_notes == 0 and piece.bpm == 120.0


def test_paths_and_bytes_give_the_same_roll(tmp_path):
    notes = [(60, 0, 480), (62, 480, 960)]
    path = write_notes(tmp_path / "a.mid", notes)
    from_path = read_midi(path)
    from_bytes = read_midi(path.read_bytes())
    np.testing.assert_array_equal(from_path.roll, from_bytes.roll)
    assert from_path.source == str(path) and from_bytes.source == "<bytes>"


def test_tempo_changes_beat_grid_ignores_them_seconds_grid_honours_them():
    beat = TICKS_PER_BEAT
    notes = [(60, 0, beat), (62, 2 * beat, 3 * beat), (64, 4 * beat, 5 * beat)]
    data = midi_bytes(midi_file([notes_track(notes, tempos=[(0, 120), (2 * beat, 60)])], 0))
    on_beats = read_midi(data, RollSettings(steps_per_beat=1))
    np.testing.assert_array_equal(on_beats.roll, expected_roll(5, [(60, 0, 1), (62, 2, 3), (64, 4, 5)]))
    assert on_beats.bpm == pytest.approx(120)
    # 120 bpm for two beats (0.5 s each), then 60 bpm (1 s per beat): beats at 0, .5, 1, 2, 3, 4 s
    in_seconds = read_midi(data, RollSettings(seconds_per_step=0.5))
    np.testing.assert_array_equal(in_seconds.roll, expected_roll(8, [(60, 0, 1), (62, 2, 4), (64, 6, 8)]))


def test_tempo_change_in_a_separate_conductor_track_is_honoured():
    beat = TICKS_PER_BEAT
    conductor = notes_track([], tempos=[(0, 60), (beat, 120)])
    music = notes_track([(60, 0, beat), (62, beat, 3 * beat)])
    piece = read_midi(midi_bytes(midi_file([conductor, music], 1)), RollSettings(seconds_per_step=0.5))
    # 1 s for the first beat (60 bpm), then 0.5 s per beat
    np.testing.assert_array_equal(piece.roll, expected_roll(4, [(60, 0, 2), (62, 2, 4)]))
    assert piece.bpm == pytest.approx(60)


def test_drums_on_channel_10_are_left_out_and_counted():
    notes = [(60, 0, 480, 0), (36, 0, 240, 9), (38, 240, 480, 9), (42, 480, 720, 9)]
    data = midi_bytes(midi_file([notes_track(notes)], 0))
    piece = read_midi(data)
    np.testing.assert_array_equal(piece.roll, expected_roll(2, [(60, 0, 2)]))
    assert piece.dropped_notes == 3 and piece.notes == 1
    with_drums = read_midi(data, RollSettings(include_drums=True))
    np.testing.assert_array_equal(with_drums.roll,
                                  expected_roll(3, [(60, 0, 2), (36, 0, 1), (38, 1, 2), (42, 2, 3)]))
    assert with_drums.dropped_notes == 0


def test_notes_outside_the_piano_are_dropped_and_counted():
    notes = [(20, 0, 240), (21, 0, 240), (108, 240, 480), (109, 240, 480), (0, 0, 480), (127, 0, 480)]
    piece = read_midi(midi_bytes(midi_file([notes_track(notes)], 0)))
    assert piece.dropped_notes == 4 and piece.notes == 2
    assert piece.roll[0, 0] == 1 and piece.roll[1, 87] == 1 and piece.roll.sum() == 2


def test_note_on_with_velocity_zero_is_a_note_off():
    notes = [(60, 0, 480), (64, 240, 720), (67, 720, 960)]
    with_off = read_midi(midi_bytes(midi_file([notes_track(notes)], 0)))
    with_zero = read_midi(midi_bytes(midi_file([notes_track(notes, note_off_as_velocity_zero=True)], 0)))
    np.testing.assert_array_equal(with_zero.roll, with_off.roll)
    np.testing.assert_array_equal(with_zero.roll, expected_roll(4, [(60, 0, 2), (64, 1, 3), (67, 3, 4)]))


def test_overlapping_notes_of_the_same_pitch():
    on = lambda tick, ch=0: (tick, 1, mido.Message("note_on", note=60, velocity=90, channel=ch))  # noqa: E731
    off = lambda tick, ch=0: (tick, 0, mido.Message("note_off", note=60, velocity=0, channel=ch))  # noqa: E731
    # a re-strike before the note-off ends the sounding note and starts a new one; the second
    # note-off then finds nothing open and is ignored (no note may sound beyond its last note-off pair)
    track = track_from_events([on(0), on(240), off(480), off(720), (960, 1, mido.Message(
        "note_on", note=62, velocity=90)), (1200, 0, mido.Message("note_off", note=62))])
    piece = read_midi(midi_bytes(midi_file([track], 0)))
    np.testing.assert_array_equal(piece.roll, expected_roll(5, [(60, 0, 2), (62, 4, 5)]))
    assert piece.notes == 3
    # the same pitch on two channels overlaps freely: the key is down while either sounds
    track = track_from_events([on(0, 0), on(240, 1), off(480, 0), off(720, 1)])
    piece = read_midi(midi_bytes(midi_file([track], 0)))
    np.testing.assert_array_equal(piece.roll, expected_roll(3, [(60, 0, 3)]))


def test_a_note_never_released_is_held_to_the_end_of_the_file():
    track = track_from_events([(0, 1, mido.Message("note_on", note=60, velocity=90)),
                               (240, 1, mido.Message("note_on", note=64, velocity=90)),
                               (480, 0, mido.Message("note_off", note=64))], end_tick=960)
    piece = read_midi(midi_bytes(midi_file([track], 0)))
    np.testing.assert_array_equal(piece.roll, expected_roll(4, [(60, 0, 4), (64, 1, 2)]))


def test_midi_types_0_1_and_2():
    voice_a = [(60, 0, 480), (62, 480, 960)]
    voice_b = [(48, 0, 960, 1)]
    type0 = read_midi(midi_bytes(midi_file([notes_track(voice_a + voice_b)], 0)))
    type1 = read_midi(midi_bytes(midi_file([notes_track(voice_a), notes_track(voice_b)], 1)))
    expected = expected_roll(4, [(60, 0, 2), (62, 2, 4), (48, 0, 4)])
    np.testing.assert_array_equal(type0.roll, expected)
    np.testing.assert_array_equal(type1.roll, expected)
    # type 2: independent sequences, played one after the other
    type2 = read_midi(midi_bytes(midi_file([notes_track(voice_a), notes_track(voice_b)], 2)))
    np.testing.assert_array_equal(type2.roll, expected_roll(8, [(60, 0, 2), (62, 2, 4), (48, 4, 8)]))


def test_no_notes_gives_an_empty_roll_not_an_error():
    track = track_from_events([(0, 0, mido.Message("program_change", program=5))], end_tick=960)
    piece = read_midi(midi_bytes(midi_file([track], 0)))
    assert piece.roll.shape == (0, 88) and piece.notes == 0


# ------------------------------------------------------------------------ transposition
def test_a_piece_in_d_major_is_transposed_down_two_semitones():
    notes = scale_in_d_major()
    data = midi_bytes(midi_file([notes_track(notes)], 0))
    plain = read_midi(data)
    in_c = read_midi(data, RollSettings(transpose_to_c=True))
    assert plain.transposition == 0 and in_c.transposition == -2
    np.testing.assert_array_equal(in_c.roll, transpose_roll(plain.roll, -2))
    assert in_c.roll.sum() == plain.roll.sum() > 0


def test_other_keys_move_to_c_by_the_shortest_way():
    d_major = scale_in_d_major()
    # D + 5 = G major: G -> C is +5 (shorter than -7); D - 2 = C: nothing; D + 3 = F: -5
    for shift, expected in [(5, 5), (-2, 0), (3, -5)]:
        notes = [(p + shift, s, e) for p, s, e in d_major]
        piece = read_midi(midi_bytes(midi_file([notes_track(notes)], 0)), RollSettings(transpose_to_c=True))
        assert piece.transposition == expected, shift
    assert estimate_transposition_to_c([]) == 0


def test_transpose_roll_shifts_and_drops_the_edges():
    roll = np.zeros((2, 88), dtype=np.uint8)
    roll[0, 0] = roll[0, 87] = roll[1, 40] = 1
    up = transpose_roll(roll, 1)
    assert up[0, 1] == 1 and up[1, 41] == 1 and up.sum() == 2  # key 87 fell off the top
    down = transpose_roll(roll, -3)
    assert down[0, 84] == 1 and down[1, 37] == 1 and down.sum() == 2  # key 0 fell off the bottom
    assert transpose_roll(roll, 0) is roll
    assert not transpose_roll(roll, 88).any()


def test_transposition_pushing_notes_out_of_range_counts_them_as_dropped():
    notes = scale_in_d_major(octave_start=38)  # low D major (lowest note D1 = 26): -2 keeps all of it
    notes.append((21, 0, 240))  # A0 moves below the keyboard when shifted down 2
    piece = read_midi(midi_bytes(midi_file([notes_track(notes)], 0)), RollSettings(transpose_to_c=True))
    assert piece.transposition == -2 and piece.dropped_notes == 1


# -------------------------------------------------------------------------------- bad input
def test_bad_input_raises_midi_read_error_with_one_line(tmp_path):
    cases = {
        "empty": b"",
        "text": b"not a midi file",
        "truncated": midi_bytes(midi_file([notes_track([(60, 0, 480)])], 0))[:-5],
    }
    for name, data in cases.items():
        with pytest.raises(MidiReadError) as error:
            read_midi(data)
        assert "\n" not in str(error.value) and str(error.value), name
        assert isinstance(error.value, StudioError)
    with pytest.raises(MidiReadError, match="empty file"):
        read_midi(b"")
    with pytest.raises(MidiReadError, match="cannot read file"):
        read_midi(tmp_path / "missing.mid")
    with pytest.raises(MidiReadError, match=r"not a regular file \(a folder\)"):
        read_midi(tmp_path)


def test_unknown_chunks_are_skipped_as_the_smf_spec_requires():
    data = midi_bytes(midi_file([notes_track([(60, 0, 480)]), notes_track([(64, 0, 480)])], 1))
    junk = b"Junk" + struct.pack(">I", 11) + b"hello world"
    # after the header, and between the two tracks
    first_track_end = 14 + 8 + struct.unpack(">I", data[18:22])[0]
    patched = data[:14] + junk + data[14:first_track_end] + junk + data[first_track_end:]
    np.testing.assert_array_equal(read_midi(patched).roll, read_midi(data).roll)
    # a chunk that is cut short is still an error, not a silent partial read
    with pytest.raises(MidiReadError):
        read_midi(data[:14] + b"Junk" + struct.pack(">I", 5000) + b"abc" + data[14:])


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path, monkeypatch):
    path = write_notes(tmp_path / "a.mid", [(60, 0, 480)])
    monkeypatch.setattr(midi_files, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(MidiReadError, match="too large"):
        read_midi(path)
    with pytest.raises(MidiReadError, match="too large"):
        read_midi(path.read_bytes())


def test_smpte_time_division_is_refused():
    data = bytearray(midi_bytes(midi_file([notes_track([(60, 0, 480)])], 0)))
    data[12:14] = struct.pack(">bB", -25, 40)  # 25 fps, 40 ticks per frame
    with pytest.raises(MidiReadError, match="SMPTE"):
        read_midi(bytes(data))


def raw_midi(track_body: bytes, ticks_per_beat: int = 96) -> bytes:
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_beat)
            + b"MTrk" + struct.pack(">I", len(track_body)) + track_body)


@pytest.mark.parametrize("settings", [RollSettings(), RollSettings(seconds_per_step=0.3),
                                      RollSettings(steps_per_beat=48)])
def test_a_huge_delta_time_is_refused_quickly_without_a_huge_array(settings):
    """The largest delta a file can hold (0x0FFFFFFF ticks) would be millions of frames."""
    body = (vlq(0) + bytes([0x90, 60, 100]) + vlq(0x0FFFFFFF) + bytes([0x80, 60, 0])
            + vlq(0) + b"\xff\x2f\x00")
    started = time.perf_counter()
    with pytest.raises(MidiReadError, match="too long"):
        read_midi(raw_midi(body, ticks_per_beat=1), settings)
    assert time.perf_counter() - started < 1.0
    # a note starting after the huge gap is refused the same way
    body = vlq(0x0FFFFFFF) + bytes([0x90, 60, 100]) + vlq(10) + bytes([0x80, 60, 0]) + vlq(0) + b"\xff\x2f\x00"
    with pytest.raises(MidiReadError, match="too long"):
        read_midi(raw_midi(body, ticks_per_beat=1), settings)


def test_a_huge_silent_tail_does_not_make_a_huge_roll():
    body = vlq(0) + bytes([0x90, 60, 100]) + vlq(96) + bytes([0x80, 60, 0]) + vlq(0x0FFFFFFF) + b"\xff\x2f\x00"
    piece = read_midi(raw_midi(body))
    assert piece.roll.shape == (2, 88)


def test_max_frames_bounds_a_long_file():
    data = midi_bytes(midi_file([notes_track([(60, 0, 480 * 100)])], 0))
    assert read_midi(data, RollSettings(max_frames=200)).n_frames == 200
    with pytest.raises(MidiReadError, match="too long"):
        read_midi(data, RollSettings(max_frames=199))


VALID_FILE = midi_bytes(midi_file([
    notes_track([(60, 0, 480), (64, 240, 720, 0, 1), (67, 480, 960, 1, 127), (36, 0, 240, 9)],
                tempos=[(0, 90), (480, 140)],
                extra_events=[(100, 2, mido.Message("control_change", control=64, value=127)),
                              (200, 2, mido.Message("pitchwheel", pitch=1000)),
                              (300, 2, mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01])),
                              (400, 2, mido.MetaMessage("text", text="hello"))]),
    notes_track([(48, 0, 960, 2), (50, 960, 1200, 2)]),
], 1, ticks_per_beat=96))


@st.composite
def mutated_midi(draw):
    data = bytearray(VALID_FILE)
    for _ in range(draw(st.integers(1, 4))):
        # flips and overwrites listed twice: they keep the structure and reach deeper than cuts
        kind = draw(st.sampled_from(["flip", "flip", "set", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 8))]
        else:
            del data[position:]
    return bytes(data)


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_midi())
def test_mutated_midi_bytes_only_ever_raise_midi_read_error(data):
    started = time.perf_counter()
    try:
        piece = read_midi(data)
    except MidiReadError as error:
        assert str(error) and "\n" not in str(error)
        event("refused")
    else:
        event("loaded")
        assert piece.roll.dtype == np.uint8 and piece.roll.shape[1] == 88
        assert set(np.unique(piece.roll)) <= {0, 1}
    assert time.perf_counter() - started < 2.0


def test_the_unmutated_fuzz_seed_is_valid():
    piece = read_midi(VALID_FILE)  # so the property test starts from a file that does load
    assert piece.notes == 5 and piece.dropped_notes == 1


# ---------------------------------------------------------------------------------- misc
def test_settings_round_trip_and_describe():
    settings = RollSettings(steps_per_beat=4, transpose_to_c=True)
    assert RollSettings.from_dict({**settings.to_dict(), "future": 1}) == settings
    assert RollSettings.from_dict(None) == RollSettings()
    assert "4 steps per beat" in settings.describe() and "C" in settings.describe()
    assert "0.3 s per step" in RollSettings(seconds_per_step=0.3).describe()
    assert roll_duration_seconds(100, RollSettings(seconds_per_step=0.3)) == pytest.approx(30)
    assert roll_duration_seconds(100, RollSettings(steps_per_beat=2), bpm=60) == pytest.approx(50)
    assert note_name(60) == "C4" and note_name(21) == "A0" and note_name(108) == "C8"


def test_roll_notes_helper_matches_roll_to_midi():
    """The fixture helper and the engine's writer describe the same notes (keeps the helpers honest)."""
    roll = random_roll(np.random.default_rng(0), 30)
    ours = read_midi(midi_bytes(midi_file([notes_track(roll_notes(roll, 240))], 0)))
    np.testing.assert_array_equal(ours.roll, roll)
