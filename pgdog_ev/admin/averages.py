"""Per-pool averages over the last stats_period, as PgBouncer computes them.

Counters only grow; every stats_period the daemon takes a reading, and the
averages shown until the next reading come from the difference between the
last two: rates per second for counts and bytes, mean microseconds per
transaction, query or checkout for times. Between readings they stay put, so
two SHOW STATS in a row agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from state.pool import Pool, PoolStats

RATES = (
    "xact_count", "query_count", "server_assignment_count", "received", "sent", "client_parse_count",
    "server_parse_count", "bind_count", "errors", "logins",
)
MEANS = ("xact_time", "query_time", "wait_time")


@dataclass(frozen=True, slots=True)
class Reading:
    at: float
    xact_count: int
    query_count: int
    server_assignment_count: int
    received: int
    sent: int
    client_parse_count: int
    server_parse_count: int
    bind_count: int
    errors: int
    logins: int
    xact_time: float
    query_time: float
    wait_time: float

    @classmethod
    def of(cls, at: float, s: PoolStats) -> Reading:
        return cls(at, s.xact_count, s.query_count, s.checkouts, s.received, s.sent, s.client_parse_count,
                   s.server_parse_count, s.bind_count, s.errors, s.logins, s.xact_time, s.query_time,
                   s.wait_time_total)


# What each mean time is divided by.
_PER = {"xact_time": "xact_count", "query_time": "query_count", "wait_time": "server_assignment_count"}


def averages(old: Reading, new: Reading) -> dict[str, float]:
    """avg_* values from two readings of one pool."""
    span = new.at - old.at
    out: dict[str, float] = {}
    for name in RATES:
        delta = getattr(new, name) - getattr(old, name)
        out[name] = delta / span if span > 0 else 0.0
    for name in MEANS:
        count = getattr(new, _PER[name]) - getattr(old, _PER[name])
        total = getattr(new, name) - getattr(old, name)
        out[name] = total / count * 1e6 if count > 0 else 0.0
    return out


class StatsWindow:
    """The last two readings per pool id."""

    def __init__(self) -> None:
        self._last: dict[int, Reading] = {}
        self._avg: dict[int, dict[str, float]] = {}

    def tick(self, now: float, pools: list[Pool]) -> None:
        seen = set()
        for pool in pools:
            seen.add(pool.id)
            reading = Reading.of(now, pool.stats)
            old = self._last.get(pool.id)
            if old is not None:
                self._avg[pool.id] = averages(old, reading)
            self._last[pool.id] = reading
        for gone in [pid for pid in self._last if pid not in seen]:
            del self._last[gone]
            self._avg.pop(gone, None)

    def get(self, pool_id: int) -> dict[str, float]:
        return self._avg.get(pool_id) or dict.fromkeys(RATES + MEANS, 0.0)
