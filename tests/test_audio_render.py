"""`render` and `generate --wav`: WAV files played by the built-in synth, whose spectra hold the MIDI's notes."""
from __future__ import annotations

import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from audio_checks import pitch_energies
from rnnrbm_studio.cli import main

pytest.importorskip("fluidsynth", reason="pyfluidsynth and libfluidsynth3 (scripts/setup.sh installs both)")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
        return data.astype(np.float32) / 32768.0, wav.getframerate()


def chord_file(path: Path, notes, seconds: float = 1.0, program: int = 0) -> Path:
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000))  # 120 BPM: a beat is 0.5 s
    track.append(mido.Message("program_change", program=program))
    for note in notes:
        track.append(mido.Message("note_on", note=note, velocity=100, time=0))
    ticks = int(seconds * 960)
    for index, note in enumerate(notes):
        track.append(mido.Message("note_off", note=note, time=ticks if index == 0 else 0))
    midi.save(path)
    return path


def test_render_writes_a_wav_with_the_notes_of_the_midi(tmp_path, capsys):
    notes = (52, 59, 64)  # E3 B3 E4
    out = tmp_path / "piece.wav"
    assert main(["render", str(chord_file(tmp_path / "piece.mid", notes, 1.0)), str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: ")
    audio, rate = read_wav(out)
    assert 1.0 <= len(audio) / rate <= 1.0 + 3.1  # the piece, then release tails of at most 3 s
    energies = pitch_energies(audio[:rate], rate, notes + (54, 56, 61))
    quiet = max(energies[54], energies[56], energies[61])
    for note in notes:
        assert energies[note] > 20 * quiet, energies


def test_render_program_and_soundfont_options(tmp_path, capsys):
    from rnnrbm_studio.assets import resource_path

    out = tmp_path / "organ.wav"
    source = chord_file(tmp_path / "a.mid", (69,), 2.0)
    assert main(["render", str(source), str(out), "--program", "20",
                 "--soundfont", str(resource_path("GMbank.sf2"))]) == 0
    assert "GMbank.sf2 (chosen)" in capsys.readouterr().out
    audio, rate = read_wav(out)
    energies = pitch_energies(audio[rate // 2:rate * 3 // 2], rate, (69, 67, 71))
    assert energies[69] > 20 * max(energies[67], energies[71])


@pytest.mark.parametrize("arguments, reason", [
    (["{missing}", "{out}"], "missing.mid: cannot read file"),
    (["{text}", "{out}"], "text.mid: not a readable MIDI file"),
    (["{good}", "{out}", "--soundfont", "{text}"], "is not a SoundFont"),
    (["{good}", "{nofolder}"], "no such folder"),
    (["{good}", "{out}", "--program", "0"], "must be an integer from 1 to 128"),
])
def test_render_errors_are_one_line(tmp_path, capsys, arguments, reason):
    (tmp_path / "text.mid").write_text("not midi")
    paths = {"missing": tmp_path / "missing.mid", "out": tmp_path / "o.wav", "text": tmp_path / "text.mid",
             "good": chord_file(tmp_path / "good.mid", (60,)), "nofolder": tmp_path / "no" / "o.wav"}
    assert main(["render"] + [a.format(**paths) for a in arguments]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err, err
    assert not (tmp_path / "o.wav").exists()


def test_generate_wav_sounds_the_notes_of_the_generated_midi(tmp_path, capsys):
    out, wav_path = tmp_path / "g.mid", tmp_path / "g.wav"
    assert main(["generate", "--out", str(out), "--wav", str(wav_path), "--frames", "24", "--gibbs-steps", "25",
                 "--seed", "3"]) == 0
    assert f"wrote {wav_path}" in capsys.readouterr().out
    audio, rate = read_wav(wav_path)
    # the notes the .mid holds, and when each sounds: every one must be heard at its pitch then
    midi, now, sounding, spans = mido.MidiFile(out), 0.0, {}, []
    for message in midi:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            sounding[message.note] = now
        elif message.type in ("note_on", "note_off") and message.note in sounding:
            spans.append((message.note, sounding.pop(message.note), now))
    assert spans, "the model played nothing"
    heard = 0
    for note, start, end in spans:
        if end - start < 0.2:
            continue
        window = audio[int(start * rate) + 400:int(end * rate)]
        others = [n for n in (note - 1, note + 1) if all(not (s < end and e > start) or n != m
                                                        for m, s, e in spans)]
        energies = pitch_energies(window, rate, [note] + others)
        if others:
            assert energies[note] > 3 * max(energies[n] for n in others), (note, energies)
        heard += 1
    assert heard > 0


def test_render_keeps_the_wait_of_a_tempo_change(tmp_path, capsys):
    """A tempo change's own delta time belongs to the note after it: the note sounds 4 s in, not at once."""
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=1_000_000),  # 60 BPM: a beat is 1 s
        mido.MetaMessage("set_tempo", tempo=500_000, time=1920),  # after 4 beats (4 s), 120 BPM
        mido.Message("note_on", note=69, velocity=100, time=0),
        mido.Message("note_off", note=69, time=480)]))  # half a second
    midi.save(tmp_path / "late.mid")
    out = tmp_path / "late.wav"
    assert main(["render", str(tmp_path / "late.mid"), str(out)]) == 0
    audio, rate = read_wav(out)
    loudness = np.abs(audio).max(axis=1)
    first_sound = int(np.argmax(loudness > 0.01)) / rate
    assert 3.9 <= first_sound <= 4.1, first_sound
