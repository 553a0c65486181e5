"""Reading a proxy's event log with `python -m pgdog_ev events`, the way an operator would: tests
wait on what the proxy recorded (a client queued, dequeued) instead of guessing with sleeps."""

from __future__ import annotations

import subprocess
import sys

from tests.harness.proxy import REPO_ROOT, ProxyProcess, _child_env


def run_events(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pgdog_ev events PATH ARGS...`, run from the repository with the proxy's environment."""
    return subprocess.run(
        [sys.executable, "-m", "pgdog_ev", "events", path, *args],
        capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, env=_child_env(None), stdin=subprocess.DEVNULL,
    )


def events_text(proxy: ProxyProcess, *args: str) -> str:
    """The decoded event log of `proxy` (filtered by `args`, e.g. "--kind", "enqueue").

    "" while the log cannot be decoded yet, so a caller polling for an event just polls again.
    """
    res = run_events(proxy.event_log_path, *args)
    return res.stdout if res.returncode == 0 else ""
