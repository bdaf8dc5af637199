"""scripts/apt_wait.sh: setup waits for another package manager's lock instead of failing at once."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LOCKED = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)"


def fake_apt(tmp_path: Path, failures: int, message: str = LOCKED, status: int = 100) -> Path:
    """An apt-get stand-in that fails `failures` times with `message`, then succeeds; it logs each call."""
    script = tmp_path / "apt-get"
    script.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {tmp_path}/calls
n=$(wc -l < {tmp_path}/calls)
if [ "$n" -le {failures} ]; then echo "{message}" >&2; exit {status}; fi
echo "installed"
""")
    script.chmod(0o755)
    return script


def run_with(tmp_path: Path, apt: Path, wait_seconds: int = 60) -> subprocess.CompletedProcess:
    command = (f"set -euo pipefail; APT_GET={apt} APT_LOCK_WAIT_SECONDS={wait_seconds} APT_LOCK_POLL_SECONDS=0.05; "
               f"source {REPO}/scripts/apt_wait.sh; apt_get_waiting_for_lock install -y jackd2")
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


def test_a_held_lock_is_waited_for_then_the_install_runs(tmp_path):
    done = run_with(tmp_path, fake_apt(tmp_path, failures=2))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("waiting for another package manager") == 2
    assert len(calls(tmp_path)) == 3
    assert all("DPkg::Lock::Timeout=60" in call and call.endswith("install -y jackd2") for call in calls(tmp_path))


def test_other_failures_are_not_retried_and_keep_apts_message(tmp_path):
    done = run_with(tmp_path, fake_apt(tmp_path, failures=5, message="E: Unable to locate package jackd2"))
    assert done.returncode == 100
    assert "Unable to locate package" in done.stderr and "waiting" not in done.stderr
    assert len(calls(tmp_path)) == 1


def test_a_lock_never_released_gives_up_after_the_wait_with_apts_message(tmp_path):
    done = run_with(tmp_path, fake_apt(tmp_path, failures=10**6), wait_seconds=0)
    assert done.returncode == 100
    assert "Could not get lock" in done.stderr
    assert len(calls(tmp_path)) == 1


def test_setup_uses_the_waiting_apt_for_every_apt_call():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    apt_lines = [line for line in setup.splitlines() if "apt-get" in line or "apt_get" in line]
    assert apt_lines and all("apt_get_waiting_for_lock" in line or "APT_GET" in line for line in apt_lines), apt_lines
