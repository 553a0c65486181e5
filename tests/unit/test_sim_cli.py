"""`pgdog-ev sim` as a user runs it: one seed writes an event log that is byte-identical across
processes and readable by `pgdog-ev replay`; a failure prints its seed, the events before it and a
shrunk reproduction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def sim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    return subprocess.run([sys.executable, "-m", "pgdog_ev", "sim", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_one_seed_gives_the_same_log_bytes_in_two_processes(tmp_path: Path) -> None:
    first = sim("replica_crash", "--seed", "3", "--out", "a.evlog", cwd=tmp_path)
    second = sim("replica_crash", "--seed", "3", "--out", "b.evlog", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert "ok replica_crash seed 3" in first.stdout
    a, b = (tmp_path / "a.evlog").read_bytes(), (tmp_path / "b.evlog").read_bytes()
    assert len(a) > 10_000 and a == b


def test_the_log_reads_as_a_timeline_with_the_fault_and_the_ban(tmp_path: Path) -> None:
    assert sim("replica_crash", "--seed", "3", "--out", "run.evlog", cwd=tmp_path).returncode == 0
    out = subprocess.run([sys.executable, "-m", "pgdog_ev", "replay", "run.evlog"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    crash = next(i for i, line in enumerate(lines) if "fault_crash" in line)
    ban = next(i for i, line in enumerate(lines) if " BAN " in line)
    assert crash < ban, "the ban should follow the injected crash in the timeline"


def test_a_mutant_failure_names_the_seed_shows_the_events_and_shrinks(tmp_path: Path) -> None:
    out = sim("--mutant", "cancel_wrong_client", "--seed", "1", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    text = out.stdout
    assert "FAIL cancel_race seed 1 --mutant cancel_wrong_client: cancel" in text
    assert "rerun: pgdog-ev sim cancel_race --seed 1 --mutant cancel_wrong_client" in text
    assert "last 25 events before it:" in text
    assert "minimal reproduction (seed 1):" in text or "could not make it smaller" in text


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert sim("no_such_scenario", "--seed", "1", cwd=tmp_path).returncode == 2
    assert sim("--mutant", "no_such_mutant", cwd=tmp_path).returncode == 2
    listing = sim("--list", cwd=tmp_path)
    assert listing.returncode == 0 and "primary_failover" in listing.stdout and "skip_rollback" in listing.stdout
