"""The chaos matrix: every fault on every link (primary, replica, and clients -> pgdog-ev).

A fault is a set of toxiproxy toxics (or taking the link down) held for `HOLD` seconds while the
workloads run. Benign faults (latency, bandwidth, slicer, slow_close) must cost no request at all;
disruptive ones (black hole, reset, data limit, link down) may fail requests, but each must end with
an error within the proxy's timeouts and nothing acknowledged may be lost.

`make test` runs FAST (a few minutes); `make chaos` (PGDOG_EV_CHAOS=full) runs all of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tests.harness.toxi import DOWNSTREAM, UPSTREAM

PRIMARY, REPLICA, FRONT = "primary", "replica", "front"
TARGETS = (PRIMARY, REPLICA, FRONT)

# Seconds each fault is held.
HOLD = 3.0

Toxic = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class Fault:
    name: str
    toxics: tuple[Toxic, ...]
    benign: bool
    # Take the link down (toxiproxy enabled=false) instead of adding toxics.
    down: bool = False

    def describe(self) -> str:
        if self.down:
            return "link down (listener closed, connections cut)"
        return "; ".join(f"{kind} {stream} {attrs}" for kind, stream, attrs in self.toxics)


FAULTS: dict[str, Fault] = {f.name: f for f in (
    # 100 +- 80 ms per chunk each way: every round trip slows, nothing may fail.
    Fault("latency", (("latency", DOWNSTREAM, {"latency": 100, "jitter": 80}),
                      ("latency", UPSTREAM, {"latency": 100, "jitter": 80})), benign=True),
    # 32 KB/s: a 12 KB read takes about 0.4 s.
    Fault("bandwidth", (("bandwidth", DOWNSTREAM, {"rate": 32}),), benign=True),
    # Closes held back 1.5 s (servers and clients leaving are slow to go).
    Fault("slow_close", (("slow_close", DOWNSTREAM, {"delay": 1500}),
                         ("slow_close", UPSTREAM, {"delay": 1500})), benign=True),
    # Every chunk cut into ~4-byte TCP segments 20 us apart, both ways.
    Fault("slicer", (("slicer", DOWNSTREAM, {"average_size": 4, "size_variation": 3, "delay": 20}),
                     ("slicer", UPSTREAM, {"average_size": 4, "size_variation": 3, "delay": 20})), benign=True),
    # Black hole: bytes vanish both ways and nothing is closed until the toxic goes.
    Fault("timeout", (("timeout", DOWNSTREAM, {"timeout": 0}), ("timeout", UPSTREAM, {"timeout": 0})), benign=False),
    # Every connection through the link reset (RST) at once, new ones too.
    Fault("reset_peer", (("reset_peer", UPSTREAM, {"timeout": 0}),), benign=False),
    # Each connection closed after 3 KB towards the client: logins pass, results are cut mid-stream.
    Fault("limit_data", (("limit_data", DOWNSTREAM, {"bytes": 3000}),), benign=False),
    Fault("down", (), benign=False, down=True),
)}


@dataclass(frozen=True)
class Case:
    target: str
    fault: Fault

    @property
    def name(self) -> str:
        return f"{self.target}-{self.fault.name}"

    @property
    def server_side(self) -> bool:
        """Faults between pgdog-ev and PostgreSQL: the proxy's own timeouts must end every request."""
        return self.target != FRONT


ALL = [Case(t, f) for t in TARGETS for f in FAULTS.values()]
# The subset `make test` runs: one case of each failure mode the proxy must handle itself.
FAST_NAMES = ("primary-timeout", "primary-reset_peer", "replica-down", "front-slicer", "front-limit_data")
FAST = [c for c in ALL if c.name in FAST_NAMES]


def selected() -> list[Case]:
    return ALL if os.environ.get("PGDOG_EV_CHAOS") == "full" else FAST
