"""Monotonic session times as wall-clock text for the admin console.

Sessions record times on the reactor's monotonic clock; operators read wall
clock. The event-log header pairs the two once, at start, which is all the
conversion needs (and keeps the console from reading the clock itself).
"""

from __future__ import annotations

from datetime import UTC, datetime

from state.events import LogHeader


def wall(header: LogHeader, mono: float) -> str:
    """``mono`` (seconds on the reactor clock) as ISO-8601 UTC with milliseconds."""
    ns = header.clock_epoch_ns + int(mono * 1e9)
    stamp = datetime.fromtimestamp(ns / 1e9, UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}" + " UTC"


def micros(seconds: float) -> int:
    return round(seconds * 1e6)
