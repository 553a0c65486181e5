"""Port helpers: free ports from the kernel (port 0), and waiting for a listener."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (bind port 0, read it back, release it).

    Another process may grab it before the caller binds it; callers retry once on
    "address already in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 20.0,
    proc: subprocess.Popen | None = None,
    interval: float = 0.05,
) -> bool:
    """Poll until host:port accepts TCP connections.

    Returns True when it does; False if `proc` (when given) exits first or the deadline passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            return False
        if port_open(host, port, timeout=min(0.5, max(0.05, deadline - time.monotonic()))):
            # The listener might belong to someone else if the process died meanwhile.
            return proc is None or proc.poll() is None
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
