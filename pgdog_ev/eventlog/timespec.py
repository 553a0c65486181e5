"""Times given on the ``replay`` command line: seconds from the log start, or wall-clock ISO times.

An operator holds two kinds of time during an incident: the ``+12.345678s`` column of a timeline
they already printed, and a wall-clock time from somewhere else (an alert, an application log,
``journalctl``).  Both are accepted, so nobody has to do the subtraction by hand.  Relative
seconds need nothing else; an ISO time is turned into relative seconds with the log's own clock
mapping (header ``clock_epoch_ns``), once the files have been opened.

An ISO time without a zone is taken as UTC, because that is how timelines print wall times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["TimeSpec", "parse_time", "wall_text"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RELATIVE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?s?")


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """One point in time: ``seconds`` from the log start, or ``wall_ns`` since the Unix epoch."""

    text: str
    seconds: float | None = None
    wall_ns: int | None = None

    def relative(self, base_wall_ns: int) -> float:
        """Seconds from the log start, whose wall-clock time is ``base_wall_ns``."""
        if self.seconds is not None:
            return self.seconds
        assert self.wall_ns is not None
        return (self.wall_ns - base_wall_ns) / 1e9


def parse_time(text: str) -> TimeSpec:
    """``12.5``, ``+12.5s``, ``-0.5`` (seconds from the log start) or an ISO 8601 time such as
    ``2026-11-21T10:00:03Z`` / ``2026-11-21 10:00:03.25+01:00``.  ValueError says what is wrong."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty time")
    if _RELATIVE.fullmatch(raw):
        value = float(raw.rstrip("s"))
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a usable time: {text!r}")
        return TimeSpec(text, seconds=value)
    iso = raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (give seconds from the log start, e.g. 12.5, "
            "or an ISO time, e.g. 2026-11-21T10:00:03Z)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return TimeSpec(text, wall_ns=(dt - _EPOCH) // timedelta(microseconds=1) * 1000)


def wall_text(wall_ns: int) -> str:
    """``2026-11-21T10:00:03.500000Z`` for a wall-clock time in ns since the Unix epoch."""
    secs, ns = divmod(wall_ns, 1_000_000_000)
    try:
        dt = _EPOCH + timedelta(seconds=secs)
    except OverflowError:
        return f"{wall_ns}ns"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000:06d}Z"
