"""Corpora: folders, splits, the roll cache, progress, cancel, worker processes, pickles, bad input."""
from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from rnnrbm_studio.music import corpus as corpus_module
from rnnrbm_studio.music.corpus import (
    PARALLEL_THRESHOLD, CorpusError, LoadCancelled, load_benchmark_pickle, load_corpus,
)
from rnnrbm_studio.music.corpus_folder import find_midi_files
from rnnrbm_studio.music.roll_cache import RollCache
from rnnrbm_studio.errors import StudioError
from rnnrbm_studio.music.midi_files import read_midi
from rnnrbm_studio.music.pianoroll import RollSettings

from midi_fixtures import arpeggio_roll, roll_notes, write_arpeggio_corpus, write_notes


@pytest.fixture
def count_reads(monkeypatch):
    """Counts read_midi calls made in this process by the corpus loader."""
    calls = []
    original = corpus_module.read_midi

    def counting(data, settings=None):
        calls.append(len(data))
        return original(data, settings)

    monkeypatch.setattr(corpus_module, "read_midi", counting)
    return calls


def write_piece(path: Path, first_pitch: int = 60, n_frames: int = 8) -> Path:
    """A distinct small piece per first_pitch (a rising line), so names can be told apart by content."""
    notes = [(first_pitch + (t % 5), t * 240, (t + 1) * 240) for t in range(n_frames)]
    return write_notes(path, notes)


# ------------------------------------------------------------------------------- folders
def test_a_folder_is_read_recursively_and_hidden_files_are_ignored(tmp_path):
    write_piece(tmp_path / "a.mid", 60)
    write_piece(tmp_path / "sub" / "b.MID", 62)
    write_piece(tmp_path / "sub" / "deeper" / "c.midi", 64)
    write_piece(tmp_path / "sub" / "d.kar", 66)
    write_piece(tmp_path / ".hidden.mid", 40)
    write_piece(tmp_path / ".git" / "e.mid", 41)
    write_piece(tmp_path / "sub" / ".cache" / "f.mid", 42)
    (tmp_path / "notes.txt").write_text("not music")
    (tmp_path / "g.mid.bak").write_bytes((tmp_path / "a.mid").read_bytes())

    found = [str(p.relative_to(tmp_path)) for p in find_midi_files(tmp_path)]
    assert found == ["a.mid", "sub/b.MID", "sub/d.kar", "sub/deeper/c.midi"]
    loaded = load_corpus(tmp_path, cache_dir=tmp_path / ".cache-here")
    names = sorted(p.name for p in loaded.pieces())
    assert names == ["a.mid", "sub/b.MID", "sub/d.kar", "sub/deeper/c.midi"]
    assert not loaded.skipped
    by_name = {p.name: p for p in loaded.pieces()}
    np.testing.assert_array_equal(by_name["sub/b.MID"].roll, read_midi(tmp_path / "sub" / "b.MID").roll)
    # without split folders some pieces form the valid split, and never none of them
    assert len(loaded.train) + len(loaded.valid) == 4 and loaded.valid and loaded.train and not loaded.test


def test_split_choice_is_stable_and_about_the_requested_fraction(tmp_path):
    write_arpeggio_corpus(tmp_path, 40, n_frames=8)
    first = load_corpus(tmp_path, cache_dir=tmp_path / ".c")
    second = load_corpus(tmp_path, cache_dir=tmp_path / ".c")
    assert [p.name for p in first.valid] == [p.name for p in second.valid]
    assert 1 <= len(first.valid) <= 12  # ~10% of 40, chosen by a hash of the names


def test_train_valid_test_subfolders_are_kept_as_splits(tmp_path):
    for split, count in (("train", 3), ("valid", 2), ("test", 1)):
        for i in range(count):
            write_piece(tmp_path / split / f"{split}{i}.mid", 50 + 3 * i)
    write_piece(tmp_path / "extra" / "x.mid", 70)  # outside the three: counts as train
    loaded = load_corpus(tmp_path, cache_dir=tmp_path / ".c")
    assert sorted(p.name for p in loaded.train) == ["extra/x.mid", "train/train0.mid", "train/train1.mid",
                                                    "train/train2.mid"]
    assert sorted(p.name for p in loaded.valid) == ["valid/valid0.mid", "valid/valid1.mid"]
    assert [p.name for p in loaded.test] == ["test/test0.mid"]


def test_a_single_file_is_a_one_piece_corpus(tmp_path):
    path = write_piece(tmp_path / "one.mid")
    loaded = load_corpus(path, cache_dir=tmp_path / ".c")
    assert [p.name for p in loaded.train] == ["one.mid"] and not loaded.valid
    summary = loaded.summary()
    assert summary.files == 1 and summary.frames == 8 and summary.notes_per_frame == 1.0
    assert "1 pieces, 8 steps" in str(summary)


# --------------------------------------------------------------------------------- cache
def test_the_second_load_is_served_from_the_cache(tmp_path, count_reads):
    folder = tmp_path / "music"
    write_arpeggio_corpus(folder, 5, n_frames=12)
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    cache = tmp_path / "cache"
    first = load_corpus(folder, cache_dir=cache)
    assert len(count_reads) == 6
    second = load_corpus(folder, cache_dir=cache)
    # only the broken file is parsed again: skip reasons are not cached (a forged one could hide a
    # good file), and a bad file costs little to refuse again
    assert count_reads[6:] == [len(b"MThd garbage")], "the second load parsed good files again"
    for a, b in zip(first.pieces(), second.pieces()):
        assert a.name == b.name and a.bpm == b.bpm
        np.testing.assert_array_equal(a.roll, b.roll)
        assert b.roll.dtype == np.uint8
    assert [str(s) for s in second.skipped] == [str(s) for s in first.skipped]  # the same reasons again
    distinct_pieces = {p.read_bytes() for p in folder.glob("piece_*.mid")}
    assert len(list(cache.rglob("*.npz"))) == len(distinct_pieces)  # none for the broken file

    # a changed file is read again, the others still come from the cache
    write_notes(folder / "piece_000.mid", [(72, 0, 480)])
    third = load_corpus(folder, cache_dir=cache)
    assert len(count_reads) == 9
    assert [p for p in third.pieces() if p.name == "piece_000.mid"][0].roll.sum() == 2
    # other roll settings are other cache entries
    load_corpus(folder, RollSettings(steps_per_beat=4), cache_dir=cache)
    assert len(count_reads) == 15
    # no cache at all
    load_corpus(folder, cache_dir=cache, use_cache=False)
    assert len(count_reads) == 21


def test_a_damaged_cache_entry_is_only_a_miss(tmp_path, count_reads):
    folder = tmp_path / "music"
    write_arpeggio_corpus(folder, 2, n_frames=12)
    cache = tmp_path / "cache"
    first = load_corpus(folder, cache_dir=cache)
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 2
    entries[0].write_bytes(b"not an npz")
    second = load_corpus(folder, cache_dir=cache)
    assert len(count_reads) == 3
    for a, b in zip(first.pieces(), second.pieces()):
        np.testing.assert_array_equal(a.roll, b.roll)
    assert not list(cache.rglob("*.tmp"))


def test_cache_keys_depend_on_content_and_settings(tmp_path):
    a = RollCache(tmp_path, RollSettings())
    b = RollCache(tmp_path, RollSettings(transpose_to_c=True))
    assert a.key(b"x") != a.key(b"y")
    assert a.key(b"x") != b.key(b"x")
    assert a.key(b"x") == RollCache(tmp_path / "elsewhere", RollSettings()).key(b"x")


# ------------------------------------------------------------------- progress and cancel
def test_progress_reports_every_file(tmp_path):
    folder = tmp_path / "music"
    write_arpeggio_corpus(folder, 4, n_frames=8)
    calls = []
    load_corpus(folder, cache_dir=tmp_path / "cache", progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 4, "")
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4]
    assert all(total == 4 for _, total, _ in calls)
    assert sorted(c[2] for c in calls[1:]) == [f"piece_{i:03d}.mid" for i in range(4)]
    # from the cache: everything is done at once
    calls.clear()
    load_corpus(folder, cache_dir=tmp_path / "cache", progress=lambda *a: calls.append(a))
    assert calls == [(4, 4, "")]


def test_cancel_raises_load_cancelled(tmp_path, count_reads):
    folder = tmp_path / "music"
    write_arpeggio_corpus(folder, 6, n_frames=8)
    done = []
    with pytest.raises(LoadCancelled):
        load_corpus(folder, cache_dir=tmp_path / "cache", progress=lambda d, t, n: done.append(d),
                    cancel=lambda: done[-1] >= 2)
    assert len(count_reads) == 2  # it stopped as soon as asked, before reading the third file
    assert not isinstance(LoadCancelled(), StudioError)  # not a user error: the user asked for it


# ----------------------------------------------------------------------- worker processes
def test_many_files_load_in_worker_processes_with_the_same_result(tmp_path, monkeypatch, count_reads):
    folder = tmp_path / "music"
    n_files = PARALLEL_THRESHOLD + 4
    write_arpeggio_corpus(folder, n_files - 2, n_frames=16)
    (folder / "broken.mid").write_bytes(b"not a midi file")
    write_notes(folder / "drums.mid", [(36, 0, 240, 9)])
    recorded_in_workers = []
    original = corpus_module._load_in_processes

    def spy(pending, settings, n_workers, cancel, record):
        def counting_record(file, outcome):
            recorded_in_workers.append(file)
            record(file, outcome)
        return original(pending, settings, n_workers, cancel, counting_record)

    monkeypatch.setattr(corpus_module, "_load_in_processes", spy)
    progress = []
    parallel = load_corpus(folder, cache_dir=tmp_path / "cache-a", workers=2,
                           progress=lambda d, t, n: progress.append(d))
    assert len(recorded_in_workers) == n_files and not count_reads  # all of it in spawned workers
    assert progress[-1] == n_files and sorted(progress) == progress

    serial = load_corpus(folder, cache_dir=tmp_path / "cache-b", workers=1)
    assert len(count_reads) == n_files
    assert [p.name for p in parallel.train] == [p.name for p in serial.train]
    assert [p.name for p in parallel.valid] == [p.name for p in serial.valid]
    for a, b in zip(parallel.pieces(), serial.pieces()):
        np.testing.assert_array_equal(a.roll, b.roll)
    assert sorted(map(str, parallel.skipped)) == sorted(map(str, serial.skipped))
    assert {s.path for s in parallel.skipped} == {"broken.mid", "drums.mid"}


def test_cancel_stops_worker_processes(tmp_path):
    folder = tmp_path / "music"
    write_arpeggio_corpus(folder, PARALLEL_THRESHOLD + 2, n_frames=8)
    seen = []
    with pytest.raises(LoadCancelled):
        load_corpus(folder, cache_dir=tmp_path / "cache", workers=2, progress=lambda d, t, n: seen.append(d),
                    cancel=lambda: len(seen) >= 4)
    assert len(seen) < PARALLEL_THRESHOLD  # it did not go on to the end


# ------------------------------------------------------------------------------- pickles
def test_benchmark_pickle_in_the_icml_format(tmp_path):
    data = {"train": [[(60, 64), (), (67,)], [(21,)]], "valid": [[(108, 50)]], "test": []}
    path = tmp_path / "tiny.pickle"
    path.write_bytes(pickle.dumps(data, protocol=2))
    loaded = load_corpus(path)
    assert [p.name for p in loaded.train] == ["train/0", "train/1"]
    assert loaded.train[0].roll.shape == (3, 88) and loaded.train[0].roll[0, 39] == 1
    assert loaded.valid[0].roll[0, 87] == 1 and loaded.valid[0].roll[0, 29] == 1 and not loaded.test


def test_the_nottingham_benchmark_pickle(shared_data):
    loaded = load_benchmark_pickle(shared_data / "benchmarks" / "Nottingham.pickle")
    assert (len(loaded.train), len(loaded.valid), len(loaded.test)) == (694, 173, 170)
    assert sum(p.roll.shape[0] for p in loaded.train) == 176_561
    assert all(p.roll.dtype == np.uint8 and p.roll.shape[1] == 88 for p in loaded.train)
    assert 1.0 < loaded.summary().notes_per_frame < 6.0


def test_bad_pickles_are_corpus_errors(tmp_path):
    (tmp_path / "list.pickle").write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x02junk")
    with pytest.raises(CorpusError, match="not a benchmark pickle"):
        load_corpus(tmp_path / "list.pickle")
    with pytest.raises(CorpusError, match="cannot read benchmark pickle"):
        load_corpus(tmp_path / "junk.pkl")


# -------------------------------------------------------------------------------- errors
def test_corpus_errors_have_clear_one_line_messages(tmp_path):
    with pytest.raises(CorpusError, match="no such file or folder") as error:
        load_corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(CorpusError, match=r"no MIDI files \(\.mid, \.midi\) in") as error:
        load_corpus(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.mid").write_bytes(b"")
    (broken / "b.mid").write_bytes(b"not a midi file")
    write_notes(broken / "c.mid", [(36, 0, 240, 9)])  # drums only
    with pytest.raises(CorpusError, match=r"no readable MIDI .* \(3 files skipped\)") as error:
        load_corpus(broken, cache_dir=tmp_path / "cache")
    assert "\n" not in str(error.value) and isinstance(error.value, StudioError)
    with pytest.raises(CorpusError, match="no readable MIDI"):
        load_corpus(broken / "b.mid", cache_dir=tmp_path / "cache")


def test_unreadable_files_are_skipped_with_their_reason(tmp_path):
    folder = tmp_path / "music"
    write_piece(folder / "good.mid")
    (folder / "text.mid").write_bytes(b"hello")
    write_notes(folder / "high.mid", [(120, 0, 480)])
    loaded = load_corpus(folder, cache_dir=tmp_path / "cache")
    reasons = {s.path: s.reason for s in loaded.skipped}
    assert [p.name for p in loaded.pieces()] == ["good.mid"]
    assert reasons["text.mid"].startswith("not a readable MIDI file")
    assert reasons["high.mid"] == "no notes in the piano range (1 drum or out-of-range notes left out)"


# ---------------------------------------------------------------------- the odd MIDI files
EXPECTED_SKIPS = {
    "jazzsoft__test-empty-file.mid": "empty file",
    "jazzsoft__test-empty.mid": "no notes",
    "jazzsoft__test-silence-end-of-track.mid": "no notes",
    "jazzsoft__test-sysex-7e-09-01-gm1-enable.mid": "no notes",
    "jazzsoft__test-all-gm-percussion.mid": "no notes in the piano range (183 drum",
    "jazzsoft__test-corrupt-file-missing-byte.mid": "not a readable MIDI file (the file ends too early)",
    "jazzsoft__test-running-status-sysex.mid": "not a readable MIDI file (the file ends too early)",
    "jazzsoft__test-not-a-midi-file.mid": "not a readable MIDI file (OSError: MThd not found",
    "jazzsoft__test-illegal-message-f4.mid": "not a readable MIDI file (OSError: undefined status byte 0xf4",
    "jazzsoft__test-illegal-message-all.mid": "not a readable MIDI file (OSError: undefined status byte",
}


def test_the_midi_oddities_folder_loads_or_skips_each_file_with_a_reason(shared_data, tmp_path):
    folder = shared_data / "midi_oddities"
    started = time.perf_counter()
    loaded = load_corpus(folder, cache_dir=tmp_path / "cache", workers=1)
    assert time.perf_counter() - started < 30
    files = sorted(p.name for p in folder.glob("*.mid"))
    assert len(files) == 30
    pieces = {p.name: p for p in loaded.pieces()}
    skipped = {s.path: s.reason for s in loaded.skipped}
    assert sorted([*pieces, *skipped]) == files  # every file accounted for, once
    for name, reason in EXPECTED_SKIPS.items():
        assert name in skipped, f"{name} should be skipped"
        assert skipped[name].startswith(reason), (name, skipped[name])
        assert "\n" not in skipped[name]
    assert set(skipped) == set(EXPECTED_SKIPS)

    scale = [60, 62, 64, 65, 67, 69, 71, 72]  # C major scale, a quarter note (2 steps) each
    for name in ("jazzsoft__test-c-major-scale.mid", "jazzsoft__test-vlq-4-byte.mid",
                 "jazzsoft__test-corrupt-file-extra-byte.mid", "jazzsoft__test-running-status-metaevent.mid",
                 "jazzsoft__test-illegal-message-f8.mid", "jazzsoft__test-smpte-offset.mid"):
        roll = pieces[name].roll
        assert roll.shape == (16, 88), name
        assert [int(np.flatnonzero(frame)[0]) + 21 for frame in roll[::2]] == scale, name
        assert roll.sum() == 16, name
    # the same two voices as type 0 (with a wrong track count), type 1, and type 2 (one after the other)
    np.testing.assert_array_equal(pieces["jazzsoft__test-2-tracks-type-0.mid"].roll,
                                  pieces["jazzsoft__test-2-tracks-type-1.mid"].roll)
    assert pieces["jazzsoft__test-2-tracks-type-2.mid"].roll.shape[0] == 36
    assert pieces["jazzsoft__test-2-tracks-type-2.mid"].roll.sum() == \
        pieces["jazzsoft__test-2-tracks-type-1.mid"].roll.sum()
    # an unknown chunk before the track is skipped, as the SMF spec asks readers to
    np.testing.assert_array_equal(pieces["jazzsoft__test-non-midi-track.mid"].roll,
                                  pieces["jazzsoft__test-c-major-scale.mid"].roll)
    assert pieces["jazzsoft__test-karaoke-kar.mid"].bpm == pytest.approx(90, rel=1e-3)
    assert pieces["prettymidi__example.mid"].roll.shape[0] == 1206  # 420 tempo changes: beats, not seconds
    bank = pieces["jazzsoft__test-control-00-20-bank-select.mid"].roll
    assert bank.sum() == 8  # four melodic notes kept, the four on the drum channel left out


def test_real_nottingham_midi_files_load_on_the_eighth_note_grid(shared_data, tmp_path):
    """A few real files (original keys), read on the eighth-note grid and transposed to C like the pickle."""
    folder = shared_data / "nottingham_midi" / "test"
    names = sorted(p.name for p in folder.glob("*.mid"))[:5]
    subset = tmp_path / "subset"
    subset.mkdir()
    for name in names:
        (subset / name).symlink_to(folder / name)
    loaded = load_corpus(subset, RollSettings(transpose_to_c=True), cache_dir=tmp_path / "cache")
    assert len(loaded.pieces()) == 5 and not loaded.skipped
    for piece in loaded.pieces():
        assert 50 < piece.roll.shape[0] < 2000
        assert 1.0 < piece.roll.sum(1).mean() < 6.0


def test_a_roll_written_by_the_fixture_helpers_reads_back(tmp_path):
    roll = arpeggio_roll(12)
    path = write_notes(tmp_path / "arp.mid", roll_notes(roll, 240))
    np.testing.assert_array_equal(read_midi(path).roll, roll)
