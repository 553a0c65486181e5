"""Human (text) and JSON renderings of event records.

Text form::

    2026-11-21T19:46:17.123456Z +12.345678s #1234 client:17 TRANSITION IDLE -> WAITING reason=CHECKOUT b=3

The wall time is ``header.clock_epoch_ns + now_ns`` (omitted without a header); the relative time
is ``now_ns - header.monotonic_start_ns`` (seconds since the log started; without a header it is
``now_ns`` itself).  Unknown machines print as their number, unknown kinds as ``KIND_<n>``, and
unregistered states/reasons/timers as numbers.
"""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta

from state import registry
from state.events import Kind, LogHeader, Machine, Record

__all__ = [
    "details",
    "format_record",
    "kind_name",
    "machine_name",
    "record_to_json",
    "relative_seconds",
    "wall_time",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_NAMES = {int(k): k.name for k in Kind}
_MACHINE_NAMES = {int(m): m.name.lower() for m in Machine}
_loaded = False


def _ensure_registry() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        registry.load_all()


def kind_name(kind: int) -> str:
    return _KIND_NAMES.get(kind) or f"KIND_{kind}"


def machine_name(machine: int) -> str:
    return _MACHINE_NAMES.get(machine) or str(machine)


def wall_time(rec: Record, header: LogHeader | None) -> str | None:
    if header is None:
        return None
    secs, ns = divmod(header.clock_epoch_ns + rec.now_ns, 1_000_000_000)
    try:
        dt = _EPOCH + timedelta(seconds=secs)
    except OverflowError:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000:06d}Z"


def relative_seconds(rec: Record, header: LogHeader | None) -> float:
    start = header.monotonic_start_ns if header is not None else 0
    return (rec.now_ns - start) / 1e9


def _errno_text(code: int) -> str:
    if code == 0:
        return "ok"
    name = errno.errorcode.get(code)
    return f"{name}({code})" if name else str(code)


# Role codes of ROLE records (state.cluster.RoleCode).
_ROLES = {0: "unknown", 1: "primary", 2: "replica"}


def _details(rec: Record) -> list[str]:
    kind, m, a, b = rec.kind, rec.machine, rec.a, rec.b
    parts: list[str] = []
    extra_ab = True
    if kind == Kind.TRANSITION:
        parts.append(f"{registry.state_name(m, rec.frm)} -> {registry.state_name(m, rec.to)}")
        reason = registry.reason_name(m, a)
        if a != 0:
            parts.append(f"reason={reason}")
        if b:
            parts.append(f"b={b}")
        return parts
    if kind == Kind.ACCEPT:
        parts.append(f"port={a}")
        a = 0
    elif kind == Kind.CONNECT:
        parts.append(f"result={_errno_text(a)}")
        a = 0
    elif kind == Kind.READ:
        parts += [f"bytes={a}", f"chunk={b}"]
        extra_ab = False
    elif kind == Kind.TIMER:
        parts.append(f"timer={registry.timer_name(a)}")
        a = 0
    elif kind == Kind.ENTROPY:
        parts.append(f"bytes={a}")
        a = 0
    elif kind in (Kind.NOTE, Kind.SIGNAL, Kind.RELOAD, Kind.ERROR) and a:
        parts.append(f"reason={registry.reason_name(m, a)}")
        a = 0
    elif kind in (Kind.BAN, Kind.UNBAN):
        return [f"reason={registry.reason_name(m, a)}", f"cluster={b}"]
    elif kind == Kind.ROLE:
        return [f"{_ROLES.get(rec.frm, rec.frm)} -> {_ROLES.get(rec.to, rec.to)}",
                f"reason={registry.reason_name(m, a)}", f"cluster={b}"]
    elif kind == Kind.ROUTE:
        return [f"reason={registry.reason_name(m, a)}", "write" if b else "read"]
    elif kind in (Kind.ENQUEUE, Kind.DEQUEUE, Kind.TIMEOUT):
        parts.append(f"client={a}")
        if b:
            parts.append(f"waiting={b}")
        extra_ab = False
    elif kind in (Kind.CHECKOUT, Kind.CHECKIN):
        parts += [f"client={a}", f"server={b}"]
        extra_ab = False
    if rec.frm or rec.to:
        parts += [f"frm={rec.frm}", f"to={rec.to}"]
    if extra_ab:
        if a:
            parts.append(f"a={a}")
        if b:
            parts.append(f"b={b}")
    return parts


def details(rec: Record) -> list[str]:
    """The ``key=value`` words ``format_record`` prints after the kind (other renderings reuse them)."""
    _ensure_registry()
    return _details(rec)


def format_record(rec: Record, header: LogHeader | None = None) -> str:
    _ensure_registry()
    out = []
    wall = wall_time(rec, header)
    if wall is not None:
        out.append(wall)
    out.append(f"{relative_seconds(rec, header):+.6f}s")
    out.append(f"#{rec.seq}")
    out.append(f"{machine_name(rec.machine)}:{rec.id}")
    out.append(kind_name(rec.kind))
    out += _details(rec)
    return " ".join(out)


def record_to_json(rec: Record, header: LogHeader | None = None) -> dict:
    _ensure_registry()
    d: dict = {"seq": rec.seq, "now_ns": rec.now_ns, "t": relative_seconds(rec, header)}
    wall = wall_time(rec, header)
    if wall is not None:
        d["wall"] = wall
    d.update(
        machine=machine_name(rec.machine),
        machine_num=rec.machine,
        id=rec.id,
        kind=kind_name(rec.kind),
        kind_num=rec.kind,
        frm=rec.frm,
        to=rec.to,
        a=rec.a,
        b=rec.b,
    )
    if rec.kind == Kind.TRANSITION:
        d["frm_name"] = registry.state_name(rec.machine, rec.frm)
        d["to_name"] = registry.state_name(rec.machine, rec.to)
        d["reason"] = registry.reason_name(rec.machine, rec.a)
    elif rec.kind in (Kind.NOTE, Kind.BAN, Kind.UNBAN, Kind.ROLE, Kind.ROUTE) and rec.a:
        d["reason"] = registry.reason_name(rec.machine, rec.a)
        if rec.kind == Kind.ROLE:
            d["frm_name"] = _ROLES.get(rec.frm, str(rec.frm))
            d["to_name"] = _ROLES.get(rec.to, str(rec.to))
    elif rec.kind == Kind.TIMER:
        d["timer"] = registry.timer_name(rec.a)
    elif rec.kind == Kind.CONNECT:
        d["result"] = _errno_text(rec.a)
    return d
