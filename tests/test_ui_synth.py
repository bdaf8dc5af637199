"""The first launch, in a real offscreen window: no MIDI output -> the built-in synth is chosen -> Play
-> the synth's audio has energy at the pitches the model played -> Stop -> silence, no voice left."""
from __future__ import annotations

import threading
import wave

import mido
import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

from audio_checks import pitch_energies, rms
from jack_synth import scale_model
from rnnrbm_studio.live.builtin_synth import BUILTIN_SYNTH_NAME, BuiltinSynthPort, SynthSettings
from rnnrbm_studio.training.checkpoint import model_checkpoint, save_checkpoint
from rnnrbm_studio.ui.live_controller import SystemPortProvider
from rnnrbm_studio.ui.main_window import MainWindow
from ui_helpers import assert_no_qt_leaks

pytest.importorskip("fluidsynth", reason="pyfluidsynth and libfluidsynth3 (scripts/setup.sh installs both)")


class RecordingProvider(SystemPortProvider):
    """The window's own provider, with a machine that has no MIDI system; it keeps the ports it opened
    and every message sent to them (the notes actually played)."""

    def __init__(self):
        super().__init__(SynthSettings(tap_seconds=120), list_midi=lambda: ([], "no MIDI system is available (test)"))
        self.opened: list[BuiltinSynthPort] = []
        self.sent: list[mido.Message] = []
        self.sent_at: list[tuple[int, mido.Message]] = []  # (frames the synth had rendered then, message)

    def open(self, name):
        port = super().open(name)
        real_send = port.send
        def send(message):
            self.sent.append(message)
            self.sent_at.append((port.tap.frames_written, message))
            real_send(message)

        port.send = send
        self.opened.append(port)
        return port


@pytest.fixture
def first_launch(qtbot, tmp_path):
    QtWidgets.QApplication.instance().setProperty("no_dialogs", True)
    model = tmp_path / "scale.pt"  # one key per step, C4..G4 (MIDI 60..67) in turn
    save_checkpoint(model, model_checkpoint(scale_model(step=3, base=39, span=8)))
    provider = RecordingProvider()
    window = MainWindow(QtCore.QSettings(str(tmp_path / "fresh.ini"), QtCore.QSettings.Format.IniFormat), model,
                        port_provider=provider, models_dir=tmp_path / "models")
    qtbot.addWidget(window)
    yield window, provider
    window.close()
    assert_no_qt_leaks(window)


def test_first_play_is_heard_through_the_built_in_synth(qtbot, first_launch):
    window, provider = first_launch
    panel = window.live_panel
    assert panel.port.currentText() == BUILTIN_SYNTH_NAME and panel.play_button.isEnabled()
    assert not panel.port_help.isVisibleTo(window)  # no wall of help: it just plays
    panel.bpm.setValue(240)
    panel.play_button.click()
    qtbot.waitUntil(lambda: window.playback.live.is_playing(), timeout=10_000)
    (port,) = provider.opened
    if port.notice:  # no sound card here: one line says so, in the Sound box
        assert port.notice.startswith("No audio device") and "\n" not in port.notice
        assert panel.synth.notice.isVisibleTo(window) and panel.synth.notice.text() == port.notice
    start = port.tap.frames_written
    qtbot.waitUntil(lambda: len({m.note for m in provider.sent if m.type == "note_on" and m.velocity}) >= 5,
                    timeout=20_000)
    loud = rms(port.tap.samples(since=start))
    # each note actually sent, heard at its pitch while it sounded (in the synth's own output)
    checked = 0
    for index, (frame_on, message) in enumerate(provider.sent_at):
        if message.type != "note_on" or not message.velocity:
            continue
        frame_off = next((f for f, m in provider.sent_at[index + 1:] if m.type in ("note_off", "note_on")
                          and m.note == message.note), None)
        if frame_off is None or frame_off - frame_on < 4096:
            continue
        segment = port.tap.samples(since=frame_on + 512)[:frame_off - frame_on - 512]
        unplayed = list(range(48, 56))  # not played, and not a harmonic of a note that was
        energies = pitch_energies(segment, port.tap.sample_rate, [message.note] + unplayed)
        assert energies[message.note] > 10 * max(energies[n] for n in unplayed), (message, energies)
        checked += 1
    assert checked >= 4
    assert {m.note for m in provider.sent if m.type == "note_on"} <= set(range(60, 68))

    panel.play_button.click()  # Stop
    qtbot.waitUntil(lambda: not window.playback.live.is_playing(), timeout=10_000)
    assert port.closed and port.voices_at_close == 0  # FluidSynth's own count: every voice released
    # silence: no voice, only the reverb's fading echo, at least 20 dB below the music
    assert rms(port.tap.samples(since=port.tap.frames_written - 256)) < 0.1 * loud
    offs = [m for m in provider.sent if m.type == "control_change" and m.control == 123]
    assert offs, "no All Notes Off on stop"


def test_instrument_volume_and_export_audio(qtbot, first_launch, tmp_path):
    window, provider = first_launch
    synth = window.live_panel.synth
    synth.program.setCurrentIndex(19)  # Church Organ
    synth.volume.setValue(80)
    assert provider.synth.gain == pytest.approx(0.8)
    window.live_panel.bpm.setValue(240)
    window.live_panel.play_button.click()
    qtbot.waitUntil(lambda: len(provider.sent) > 8, timeout=20_000)
    assert any(m.type == "program_change" and m.program == 19 for m in provider.sent)
    window.live_panel.play_button.click()
    out = tmp_path / "session.wav"
    export = window.playback.synth.audio_export
    with qtbot.waitSignal(export.exported, timeout=60_000) as done:
        assert window.playback.synth.export_audio(out) is not None
    assert done.args[0].seconds > 0 and out.stat().st_size > 44  # more than a WAV header
    window.playback.live.export_session(tmp_path / "session.mid")
    elapsed, last_sound = 0.0, 0.0
    for message in mido.MidiFile(tmp_path / "session.mid"):  # times in seconds, tempo changes included
        elapsed += message.time
        last_sound = elapsed if not message.is_meta else last_sound
    assert done.args[0].seconds >= last_sound - 0.01  # every event at its time, none moved earlier
    with wave.open(str(out), "rb") as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert frames.size and np.abs(frames).max() > 1000
    assert window.statusBar().currentMessage() == f"Saved {done.args[0].seconds:.1f} s of audio to {out}"
    qtbot.waitUntil(window.live_panel.synth.export_audio_button.isEnabled, timeout=10_000)  # once its thread ends


def played_a_little(qtbot, window, provider) -> None:
    window.live_panel.bpm.setValue(240)
    window.live_panel.play_button.click()
    qtbot.waitUntil(lambda: len(provider.sent) > 8, timeout=20_000)
    window.live_panel.play_button.click()


def test_export_audio_renders_in_a_worker_while_the_window_stays_responsive(qtbot, first_launch, tmp_path,
                                                                           monkeypatch):
    """The render runs off the GUI thread: held inside it, the window's event loop still turns (a
    timer fires, the button is disabled, the status bar shows Cancel), then the WAV is saved."""
    from rnnrbm_studio.live import audio_render

    window, provider = first_launch
    played_a_little(qtbot, window, provider)
    real_render, threads, release = audio_render.render_messages, [], threading.Event()

    def held_render(*args, **kwargs):
        threads.append(threading.get_ident())  # not current_thread(): it would register a dummy Thread
        assert release.wait(30), "the test never let the render go on"
        return real_render(*args, **kwargs)

    monkeypatch.setattr(audio_render, "render_messages", held_render)
    out = tmp_path / "held.wav"
    export = window.playback.synth.audio_export
    handle = window.playback.synth.export_audio(out)
    try:
        assert handle is not None and export.is_running()
        ticks = []
        QtCore.QTimer.singleShot(10, lambda: ticks.append(1))
        qtbot.waitUntil(lambda: bool(threads and ticks), timeout=10_000)  # the GUI turns while the job holds on
        assert threads[0] != threading.main_thread().ident == threading.get_ident()  # the job ran off the GUI thread
        assert not window.live_panel.synth.export_audio_button.isEnabled()
        assert export.status.isVisibleTo(window) and export.status.cancel_button.isEnabled()
        assert window.playback.synth.export_audio(tmp_path / "second.wav") is None  # one at a time
        with qtbot.waitSignal(export.exported, timeout=60_000):
            release.set()
    finally:
        release.set()
    assert out.stat().st_size > 44
    qtbot.waitUntil(window.live_panel.synth.export_audio_button.isEnabled, timeout=10_000)  # once its thread ends
    assert not export.status.isVisibleTo(window)


def test_export_audio_cancelled_leaves_no_file_and_a_failure_is_one_line(qtbot, first_launch, tmp_path,
                                                                         monkeypatch):
    import tempfile

    from rnnrbm_studio.live import audio_render

    window, provider = first_launch
    scratch = tmp_path / "scratch"  # where the session's MIDI is written for the worker, and removed
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    messages = []
    window.playback.failed.connect(messages.append)
    out = tmp_path / "nothing.wav"
    assert window.playback.synth.export_audio(out) is None  # nothing played yet: said at once, no worker
    assert messages == ["Cannot export audio: nothing has been played yet"] and not out.exists()
    assert window.playback.synth.export_audio(tmp_path) is None  # a folder: said before any work
    assert messages[-1].startswith(f"Cannot export audio: cannot write {tmp_path}: it is a folder")

    played_a_little(qtbot, window, provider)
    export = window.playback.synth.audio_export
    real_render, first_message, go_on = audio_render.render_messages, threading.Event(), threading.Event()

    def held_messages(pairs):
        for pair in pairs:  # the job checks for Cancel before each message it hands on
            first_message.set()
            assert go_on.wait(30), "the test never let the render go on"
            yield pair

    monkeypatch.setattr(audio_render, "render_messages",
                        lambda pairs, *args, **kwargs: real_render(held_messages(pairs), *args, **kwargs))
    window.playback.synth.export_audio(out)
    try:
        qtbot.waitUntil(first_message.is_set, timeout=10_000)
        with qtbot.waitSignal(export.cancelled, timeout=60_000):
            export.status.cancel_button.click()  # the status bar's Cancel
            go_on.set()
    finally:
        go_on.set()
    qtbot.waitUntil(lambda: not export.is_running(), timeout=10_000)
    assert not out.exists() and list(tmp_path.glob("*.wav*")) == [] and list(scratch.iterdir()) == []
    assert window.statusBar().full_message() == "Export cancelled"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audio_render, "render_messages", full_disk)
    with qtbot.waitSignal(export.failed, timeout=60_000):
        assert window.playback.synth.export_audio(out) is not None
    qtbot.waitUntil(lambda: not export.is_running(), timeout=10_000)
    assert messages[-1] == f"Cannot export audio: {out}: No space left on device"  # one line, no traceback
    assert window.statusBar().full_message() == messages[-1]
    assert list(scratch.iterdir()) == [] and not out.exists()


def test_a_missing_fluidsynth_is_one_line_with_a_command_to_copy(qtbot, first_launch, monkeypatch):
    from rnnrbm_studio.live import builtin_synth
    from rnnrbm_studio.live.synth_engine import SynthUnavailable

    window, provider = first_launch

    def missing(*args, **kwargs):
        raise SynthUnavailable("the built-in synth needs FluidSynth (Couldn't find the FluidSynth library.): install")

    monkeypatch.setattr(builtin_synth, "SynthEngine", missing)
    messages = []
    window.playback.failed.connect(messages.append)
    window.live_panel.play_button.click()
    assert not window.playback.live.is_playing()
    assert messages and "\n" not in messages[0]
    synth = window.live_panel.synth
    assert synth.copy_button.isVisibleTo(window)
    synth.copy_button.click()
    assert QtWidgets.QApplication.clipboard().text().startswith("sudo apt install libfluidsynth3")


def test_the_audio_job_keeps_the_time_of_tempo_changes_and_stops_when_cancelled(tmp_path):
    """ui/jobs.export_audio_job without a window: a tempo change's own wait is kept (the note after it
    sounds late, not at once), the temporary folder goes, and a cancelled job writes nothing."""
    from rnnrbm_studio.ui.jobs import export_audio_job
    from rnnrbm_studio.ui.workers import Job, JobCancelled

    def session() -> tuple:
        folder = tmp_path / f"session{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=100, time=0),
                                mido.Message("note_off", note=60, velocity=0, time=240),  # 0.5 s at 120 BPM
                                mido.MetaMessage("set_tempo", tempo=500_000, time=3840),  # 4 s: past any tail
                                mido.Message("note_on", note=64, velocity=100, time=0),
                                mido.Message("note_off", note=64, velocity=0, time=240)])
        midi = mido.MidiFile(ticks_per_beat=480)
        midi.tracks.append(track)
        midi.save(folder / "session.mid")
        return folder / "session.mid", folder

    midi, folder = session()
    result = export_audio_job(Job(), midi, tmp_path / "one.wav", gain=0.5, remove_folder=folder)
    # the second note at 4.5 s, not at 0.5 s (render's tail after the last event is 3 s at most)
    assert result.seconds >= 5.0 and result.notes == 2
    assert not folder.exists() and (tmp_path / "one.wav").stat().st_size > 44

    midi, folder = session()
    cancelled = Job()
    cancelled.cancel()
    with pytest.raises(JobCancelled):
        export_audio_job(cancelled, midi, tmp_path / "none.wav", gain=0.5, remove_folder=folder)
    assert not folder.exists() and not (tmp_path / "none.wav").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["one.wav"]
