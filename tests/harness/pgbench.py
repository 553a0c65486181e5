"""Locating and running PostgreSQL's pgbench, the load generator of the benchmark-style tests."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.harness.pgserver import find_bindir


def pgbench_path() -> str:
    """pgbench from the same PostgreSQL as the test servers, else from PATH; skips the test if none."""
    p = os.path.join(find_bindir(), "pgbench")
    if os.access(p, os.X_OK):
        return p
    found = shutil.which("pgbench")
    if not found:
        pytest.skip("pgbench not installed")
    return found


def pgbench_env(password: str) -> dict[str, str]:
    """The environment without the caller's PG* variables (they would redirect pgbench), plus the
    password and a connect timeout, so a proxy that does not answer fails instead of hanging."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def run_pgbench(args: list[str], timeout: float, password: str, output_tail: int | None = None) -> str:
    """Run pgbench with `args`; return its stdout and stderr, and fail the test if it exits non-zero.

    `output_tail`: show only the last that many characters of the output in the failure message.
    """
    res = subprocess.run(
        [pgbench_path(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=pgbench_env(password),
        stdin=subprocess.DEVNULL,
    )
    out = res.stdout + res.stderr
    shown = out if output_tail is None else out[-output_tail:]
    assert res.returncode == 0, f"pgbench {' '.join(args)} exited {res.returncode}:\n{shown}"
    return out
