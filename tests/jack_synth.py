"""Helpers for the live-player tests: models whose music is known in advance, a fake MIDI port, and
fixtures that start real parts (a JACK server with the dummy driver, FluidSynth as the synth).

The fixtures kill everything they start, whatever happens in the test. Integration tests skip, with
the reason, only when the jackd or fluidsynth programs (or the soundfont) are not installed.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from rnnrbm_studio.live.output_port import BaseOutputPort
from rnnrbm_studio.model import RnnRbm, RnnRbmConfig

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
CHURCH_ORGAN = 19  # GM program (0-based): sustains for as long as a key is held, so a stuck note shows
MIDO_JACK = "mido.backends.rtmidi/UNIX_JACK"


# ------------------------------------------------------------------------------ models
def scale_model(step: int = 1, base: int = 39, span: int = 8, first: int = 0) -> RnnRbm:
    """An RNN-RBM that plays one key per frame, deterministically: after key base+k comes
    base+((k+step) mod span); the first frame from the initial state is base+first.

    The RNN state is a one-hot picture of the last frame (u_j = +1 if key base+j sounded, else -1);
    the visible biases are +-40 (sigmoid saturates: no random flips) and W = 0. Two such models
    with different steps tell apart "state kept" from "state reset" after a weight swap.
    """
    config = RnnRbmConfig(n_hidden=4, n_hidden_recurrent=span, learned_u0=True, gibbs_steps=1)
    model = RnnRbm(config)
    strength = 40.0
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.bv.fill_(-strength)
        model.bv[base:base + span] = 0.0
        model.bu.fill_(-strength / 2)
        for k in range(span):
            model.Wvu[base + k, k] = strength  # u_k = tanh(-20 + 40) = +1 iff key k sounded
            model.Wuv[k, base + (k + step) % span] = strength  # then key k+step gets bias +40, others -40
        model.u0.fill_(-1.0)
        model.u0[(first - step) % span] = 1.0
    return model.eval()


class ScriptedModel(torch.nn.Module):
    """A stand-in for RnnRbm whose frame t is script[t % len(script)] (lists of key indices); its
    state is t. It records the generation settings of each step, and `gate`, when set, makes step()
    wait for it (a slow generator). Copies share the script, the records and the gate."""

    def __init__(self, script, n_visible: int = 88, lowest_pitch: int = 21, echo_settings: bool = False):
        super().__init__()
        self.config = RnnRbmConfig(n_visible=n_visible, lowest_pitch=lowest_pitch)
        self.script = [list(keys) for keys in script]
        self.echo_settings = echo_settings
        self.calls: list[tuple[int | None, float]] = []
        self.gate: threading.Event | None = None
        self.fail_at: int | None = None

    def __deepcopy__(self, memo):
        return self

    def initial_state(self):
        return torch.zeros(1)

    def step(self, state, sampler=None, gibbs_steps=None, inverse_temperature=1.0, start=None):
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        t = int(state[0])
        if self.fail_at is not None and t >= self.fail_at:
            raise RuntimeError("the model broke")
        self.calls.append((gibbs_steps, inverse_temperature))
        frame = torch.zeros(self.config.n_visible)
        if self.echo_settings:  # the frame shows the settings it was made with
            frame[gibbs_steps or 0] = 1
            frame[40 + round(10 * inverse_temperature)] = 1
        else:
            frame[self.script[t % len(self.script)]] = 1
        return frame, state + 1

    def prime(self, roll, state=None):
        return torch.tensor([float(len(roll))])


# ----------------------------------------------------------------------------- fake port
class FakePort(BaseOutputPort):
    """Records every message with the time it was sent; can fail, or report itself gone."""

    def __init__(self, clock, name: str = "fake synth"):
        super().__init__(name)
        self.clock = clock
        self.sent: list[tuple[float, mido.Message]] = []
        self.fail_after: int | None = None  # raise on send once this many messages went out
        self.gone: str | None = None  # what problem() says
        self._changed = threading.Condition()

    def send(self, message: mido.Message) -> None:
        with self._changed:
            if self.fail_after is not None and len(self.sent) >= self.fail_after:
                raise OSError("the port went away")
            self.sent.append((self.clock.now(), message))
            self._changed.notify_all()

    def problem(self) -> str | None:
        return self.gone

    def messages(self, *types: str) -> list[mido.Message]:
        with self._changed:
            return [m for _, m in self.sent if not types or m.type in types]

    def wait_for(self, predicate, timeout: float = 5.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self), timeout), "the port never saw that"


def heard_roll(sent: list[tuple[float, mido.Message]], times: list[float], n_keys: int = 88,
               lowest: int = 21, channel: int = 0) -> np.ndarray:
    """The keys sounding just after each of `times`, replaying the note messages as a synth would."""
    sounding = np.zeros(128, dtype=bool)
    rows, i = [], 0
    for moment in times:
        while i < len(sent) and sent[i][0] <= moment:
            message = sent[i][1]
            if message.type in ("note_on", "note_off") and message.channel == channel:
                sounding[message.note] = message.type == "note_on" and message.velocity > 0
            elif message.type == "control_change" and message.control == 123 and message.channel == channel:
                sounding[:] = False
            i += 1
        rows.append(sounding[lowest:lowest + n_keys].astype(np.uint8))
    return np.array(rows, dtype=np.uint8).reshape(len(times), n_keys)


def unbalanced_notes(messages) -> dict[tuple[int, int], int]:
    """(channel, note) -> note-ons without a later note-off (All Notes Off closes a channel)."""
    open_count: dict[tuple[int, int], int] = {}
    for message in messages:
        if message.type == "note_on" and message.velocity > 0:
            key = (message.channel, message.note)
            open_count[key] = open_count.get(key, 0) + 1
        elif message.type == "note_off" or (message.type == "note_on" and message.velocity == 0):
            open_count.pop((message.channel, message.note), None)
        elif message.type == "control_change" and message.control == 123:
            for key in [k for k in open_count if k[0] == message.channel]:
                del open_count[key]
    return open_count


# ------------------------------------------------------------------------- real parts
def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll an outside process's state (no event to wait on) until true; fail after timeout."""
    end = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        pause.wait(interval)


def require_live_tools() -> None:
    missing = [tool for tool in ("jackd", "jack_wait", "jack_lsp", "fluidsynth", "jack_rec") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt install jackd2 fluidsynth; CI installs them)")
    if not SOUNDFONT.exists():
        pytest.skip(f"no soundfont at {SOUNDFONT} (apt install fluidsynth brings it)")


def _stop_process(process: subprocess.Popen | None, grace: float = 5.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)


class JackServer:
    def __init__(self, name: str, log_path: Path):
        self.name = name
        self.env = {"JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1", "MIDO_BACKEND": MIDO_JACK}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.killed = False

    def start(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                ["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "1024"],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        done = subprocess.run(["jack_wait", "-w", "-t", "10", "-s", self.name], capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"JACK server did not start: {done.stdout} {self.log_path.read_text()[-500:]}")

    def ports(self) -> list[str]:
        done = subprocess.run(["jack_lsp", "-s", self.name], capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=10)
        return done.stdout.split("\n")

    def kill(self) -> None:
        """SIGKILL the server: what a crash looks like to its clients.

        A killed server keeps its slot in /dev/shm/jack-shm-registry (8 slots per machine, and no
        JACK server starts once they are full); libjack reclaims a dead server's slot only for a new
        server of the same name, so stop() then starts one under the name and stops it cleanly.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        self.process.wait(10)
        self.killed = True

    def stop(self) -> None:
        # Once a synth has been connected, jackd takes about 6 s to honour SIGTERM. It must be let
        # finish: a killed server keeps its slot in /dev/shm/jack-shm-registry, and after 8 such
        # slots no JACK server starts on the machine until that file is deleted (see kill()).
        _stop_process(self.process, grace=20.0)
        if self.killed:
            self.killed = False
            try:
                self.start()  # no client is left on it: it stops at once
            finally:
                _stop_process(self.process, grace=20.0)
        # a killed server leaves its socket and semaphores behind in /dev/shm
        for leftover in Path("/dev/shm").glob(f"*{self.name}*"):
            leftover.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def jack_server(tmp_path_factory):
    """A private JACK server (dummy driver) for the module; the environment points mido and JACK
    clients at it. Every rtmidi client must be closed before it goes: libjack crashes closing a
    client whose server died."""
    require_live_tools()
    server = JackServer(f"rnnrbm-test-{os.getpid()}", tmp_path_factory.mktemp("jack") / "jackd.log")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in server.env.items():
            patch.setenv(key, value)
        try:
            server.start()
            yield server
        finally:
            server.stop()


_own_servers = itertools.count(1)


@pytest.fixture
def own_jack_server(tmp_path, monkeypatch):
    """A JACK server for one test, which the test may kill (JackServer.kill): the module's server
    stays up for the other tests. The environment points mido and JACK clients at it."""
    require_live_tools()
    server = JackServer(f"rnnrbm-test-{os.getpid()}-{next(_own_servers)}", tmp_path / "jackd.log")
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_fluidsynth(own_jack_server, tmp_path):
    """FluidSynth on own_jack_server."""
    yield from _running_synth(own_jack_server, tmp_path)


def _running_synth(server, folder):
    """FluidSynth on `server` for as long as the generator is held; stopped whatever happens."""
    synth = FluidSynth(server, folder)
    try:
        synth.start()
        yield synth
    finally:
        synth.stop()


class FluidSynth:
    """FluidSynth on the JACK server: MIDI in at synth:midi_00, audio at synth:left/right, a TCP
    shell for voice_count and channels, and -v logging each note it receives."""

    def __init__(self, server: JackServer, folder: Path):
        self.server = server
        self.log_path = folder / "fluidsynth.log"
        self.shell_port = _free_tcp_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                ["fluidsynth", "-i", "-s", "-v", "-g", "1.0", "-a", "jack", "-m", "jack",
                 "-o", "midi.jack.id=synth", "-o", "audio.jack.id=synth", "-o", f"shell.port={self.shell_port}",
                 str(SOUNDFONT)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.server.env}, start_new_session=True)
        wait_until(lambda: "synth:midi_00" in self.server.ports() or self.process.poll() is not None, 20,
                   what="FluidSynth's MIDI port")
        if self.process.poll() is not None:
            raise RuntimeError(f"FluidSynth quit: {self.log_path.read_text()[-800:]}")
        wait_until(self._shell_answers, 10, what="FluidSynth's shell")

    def _shell_answers(self) -> bool:
        try:
            self.command("voice_count")
            return True
        except OSError:
            return False

    def command(self, text: str, lines: int = 1, timeout: float = 2.0) -> list[str]:
        with socket.create_connection(("127.0.0.1", self.shell_port), timeout=timeout) as connection:
            connection.sendall(text.encode() + b"\n")
            received = b""
            end = time.monotonic() + timeout
            while received.count(b"\n") < lines and time.monotonic() < end:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
        return received.decode(errors="replace").splitlines()

    def voice_count(self) -> int:
        for line in self.command("voice_count"):
            match = re.search(r"voice_count:\s*(\d+)", line)
            if match:
                return int(match.group(1))
        raise AssertionError("FluidSynth did not answer voice_count")

    def channel_programs(self) -> list[str]:
        return self.command("channels", lines=16)

    def log_events(self, kind: str) -> list[tuple[int, int]]:
        """(channel, key) of each note event of `kind` ('noteon'/'noteoff') in the -v log.

        FluidSynth logs one line per voice (a GM organ sounds two voices per key); the lines of one
        event share its note id, the fifth field.
        """
        events, seen = [], set()
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = re.match(rf"fluidsynth: {kind}\t(\d+)\t(\d+)\t\d+\t(\d+)\t", line)
            if match and match.groups() not in seen:
                seen.add(match.groups())
                events.append((int(match.group(1)), int(match.group(2))))
        return events

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        self.kill()  # it takes seconds to honour SIGTERM and holds nothing that needs a clean exit


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def fluidsynth(jack_server, tmp_path):
    yield from _running_synth(jack_server, tmp_path)


# ---------------------------------------------------------------------------- the CLI
REPO = Path(__file__).resolve().parent.parent


def start_cli(*arguments, **kwargs) -> subprocess.Popen:
    """`python -m rnnrbm_studio ARGUMENTS` (str or bytes), stdout and stderr piped as text."""
    # faulthandler: a command that hangs is sent SIGABRT by cli_outcome and prints every thread's stack
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen([sys.executable, "-m", "rnnrbm_studio", *arguments], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kwargs)


def cli_outcome(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """The command's (stdout, stderr) once it exits; a command still running after `timeout` seconds
    fails the test with its threads' stacks, so that a rare hang says where it hung."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        masks = signal_masks(process.pid)
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate(timeout=30)
        pytest.fail(f"the command did not exit within {timeout:g} s; its threads' signal masks:\n{masks}\n"
                    f"its stderr and stacks:\n{err}")


def signal_masks(pid: int) -> str:
    """Each thread's name and pending / blocked / ignored / caught signal masks (Linux /proc)."""
    lines = []
    for status in sorted(Path(f"/proc/{pid}/task").glob("*/status")):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        lines.append(" ".join(f"{key}={fields.get(key, '?').strip()}"
                              for key in ("Name", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")))
    return "\n".join(lines)


def live_processes_in_group(pgid: int) -> list[int]:
    """Pids of the processes of process group `pgid` that still run (a zombie has ended: it only
    waits for its parent, or for init, to collect its exit status)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
        except OSError:  # ended while we looked
            continue
        state, _ppid, pgrp = text[text.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(int(stat_file.parent.name))
    return found


def sender_processes_of(pid: int) -> list[int]:
    """Pids of the MIDI sender processes that process `pid` started."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat_file.read_text()
            command = (stat_file.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid and b"rnnrbm_studio.live.sender" in command:
            found.append(int(stat_file.parent.name))
    return found


def process_running(pid: int) -> bool:
    """Whether `pid` exists and has not ended (a zombie has ended)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2:].split()[0] != "Z"


def record_audio(server: JackServer, path: Path, seconds: int) -> subprocess.Popen:
    """jack_rec of synth:left/right for `seconds`, started now (wait on the returned process)."""
    return subprocess.Popen(["jack_rec", "-f", str(path), "-d", str(seconds), "-b", "16", "synth:left", "synth:right"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **server.env})


def wav_rms(path: Path) -> float:
    with wave.open(str(path)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples ** 2))) if samples.size else 0.0
