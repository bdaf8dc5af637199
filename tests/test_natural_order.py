"""Names listed as a person expects them (1, 2, ..., 12, 13): the window's lists and train's output."""
from __future__ import annotations

from rnnrbm_studio.music.natural_order import natural_order_key

from midi_fixtures import write_arpeggio_corpus


def test_numbers_compare_as_numbers_and_letters_without_case():
    names = ["piece 12.mid", "Piece 2.mid", "piece 1.mid", "piece 13.mid", "intro.mid", "piece 2b.mid"]
    assert sorted(names, key=natural_order_key) == ["intro.mid", "piece 1.mid", "Piece 2.mid", "piece 2b.mid",
                                                    "piece 12.mid", "piece 13.mid"]
    assert sorted(["a10/x", "a9/x", "a9/y"], key=natural_order_key) == ["a9/x", "a9/y", "a10/x"]


def test_train_lists_the_files_it_skipped_in_natural_order(tmp_path, capsys):
    from rnnrbm_studio.cli import main

    data = tmp_path / "songs"
    write_arpeggio_corpus(data, 3, n_frames=24)
    for number in (12, 2, 1):
        (data / f"broken {number}.mid").write_bytes(b"this is not MIDI")
    status = main(["train", str(data), "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--hidden", "8",
                   "--recurrent", "4", "--cd-k", "1", "--seq-len", "8", "--batch-seqs", "2", "--recipe", "tutorial"])
    err = capsys.readouterr().err
    assert status == 0, err
    skipped = [line.split()[1:3] for line in err.splitlines() if line.startswith("  skipped ")]
    assert skipped == [["broken", "1.mid:"], ["broken", "2.mid:"], ["broken", "12.mid:"]]
