"""The proxy's resident memory, read from /proc: tests of backpressure check that it stays bounded
while far more data than the slack streams through the proxy."""

from __future__ import annotations

import threading


def rss(pid: int) -> int:
    """Resident set size of process `pid`, in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread while in the `with` block.

    A single reading after the fact misses a peak the proxy has already freed; `peak` is the highest
    sample and `samples` how many were taken (a test asserts there were enough to mean anything).
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss(self.pid))
                self.samples += 1
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
