"""One event record told in words, for the ``replay`` timeline.

``pgdog-ev events`` prints fields (``CHECKOUT client=2 server=1``); an incident timeline should
read as a story, with every machine named the same way (``client:17``, ``server:3``,
``pool:2``, ``cluster:1``) so that the eye, and grep, can follow one of them down the page::

    +1.499948s  client:2    WAITING -> ACTIVE (checkout) server:1
    +1.499948s  pool:1      CHECKOUT server:1 to client:2
    +1.501104s  pool:1      CHECKIN server:1 from client:2
    +8.679797s  pool:3      BAN reason=connect_error cluster:1
    +9.014811s  cluster:1   ROLE primary: pool 1 -> pool 2 (pool:2 replica -> primary)

Some words need what came before (who held a server that is checked in, which pool a server
belongs to, who the cluster's primary was): they come from :class:`~pgdog_ev.eventlog.world.World`,
asked *before* the record is applied to it.  Kinds without a story of their own fall back to the
``key=value`` words of :mod:`pgdog_ev.eventlog.format`.
"""

from __future__ import annotations

import errno

from pgdog_ev.eventlog.format import details, kind_name, machine_name
from pgdog_ev.eventlog.world import World
from state import registry
from state.cluster import RoleCode
from state.events import Kind, Machine, Record
from state.reasons import Reason

__all__ = ["ROLE_NAMES", "describe", "reason_word", "role_name", "subject"]

ROLE_NAMES = {int(r): r.name.lower() for r in RoleCode}

# Prefixes dropped from reason names where the kind already says them (BAN reason=connect_error).
_REASON_PREFIX = {
    int(Kind.BAN): "BAN_",
    int(Kind.UNBAN): "UNBAN_",
    int(Kind.ROLE): "ROLE_",
    int(Kind.ROUTE): "ROUTE_",
}


def role_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    return ROLE_NAMES.get(code, str(code))


def reason_word(machine: int, code: int, kind: int = 0) -> str:
    """A reason code as a lower-case word: ``CHECKOUT`` -> ``checkout``."""
    name = registry.reason_name(machine, code)
    prefix = _REASON_PREFIX.get(kind)
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    return name.lower()


def subject(rec: Record) -> str:
    """The machine a line is about, as ``name:id`` (ROLE lines are about the cluster)."""
    m = rec.machine
    if m == Machine.DAEMON:
        return "daemon"
    if m == Machine.LB:
        return f"cluster:{rec.id}"
    if rec.kind == Kind.ROLE and rec.b:
        return f"cluster:{rec.b}"
    return f"{machine_name(m)}:{rec.id}"


def _errno_word(code: int) -> str:
    name = errno.errorcode.get(code)
    return f"{name}({code})" if name else f"error {code}"


def _pool_note(world: World, server: int) -> str:
    pool = world.pool_of(server)
    return f" [pool:{pool}]" if pool else ""


def _transition(rec: Record, world: World) -> str:
    m = rec.machine
    text = f"{registry.state_name(m, rec.frm)} -> {registry.state_name(m, rec.to)}"
    if rec.a:
        text += f" ({reason_word(m, rec.a)})"
    if rec.b:
        if m == Machine.CLIENT:
            text += f" server:{rec.b}"
        elif m == Machine.SERVER:
            text += f" client:{rec.b}"
        else:
            text += f" b={rec.b}"
    if m == Machine.SERVER:
        text += _pool_note(world, rec.id)
    return text


def _note(rec: Record, world: World) -> str:
    m, a, b = rec.machine, rec.a, rec.b
    text = f"NOTE {reason_word(m, a)}"
    if m == Machine.POOL and a in (Reason.HEALTHCHECK_OK, Reason.HEALTHCHECK_FAILED):
        return text + (f" ({reason_word(m, b)})" if b and b != a else "")
    if m == Machine.MONITOR and a == Reason.LSN_CHECK:
        return text + (": in recovery" if b else ": not in recovery (a primary)")
    if m == Machine.DAEMON and a == Reason.STARTUP and b:
        return text + f" (port {b})"
    if m == Machine.DAEMON and rec.id:
        text += f" by client:{rec.id}"
    if m == Machine.SERVER:
        text += _pool_note(world, rec.id)
    return text + (f" b={b}" if b else "")


def _role(rec: Record, world: World) -> str:
    change = world.role_change(rec)
    moved = f"pool:{rec.id} {role_name(rec.frm)} -> {role_name(rec.to)}"
    why = reason_word(rec.machine, rec.a, rec.kind) if rec.a else ""
    if why == role_name(rec.to):  # ROLE_PRIMARY for a move to primary says nothing more
        why = ""
    if change.after != change.before:
        before = f"pool {change.before}" if change.before else "none"
        after = f"pool {change.after}" if change.after else "none"
        return f"ROLE primary: {before} -> {after} ({moved}{', ' + why if why else ''})"
    return f"ROLE {moved}" + (f" ({why})" if why else "")


def describe(rec: Record, world: World) -> str:
    """The words after the subject; ``world`` must not have seen ``rec`` yet."""
    kind, m, a, b = rec.kind, rec.machine, rec.a, rec.b
    if kind == Kind.TRANSITION:
        return _transition(rec, world)
    if kind == Kind.CHECKOUT:
        return f"CHECKOUT server:{b} to client:{a}"
    if kind == Kind.CHECKIN:
        holder = a or world.holder(b)
        return f"CHECKIN server:{b}" + (f" from client:{holder}" if holder else "")
    if kind == Kind.ENQUEUE:
        what = " waits for a primary" if m == Machine.LB else ""
        return f"ENQUEUE client:{a}{what} ({b} waiting)"
    if kind == Kind.DEQUEUE:
        return f"DEQUEUE client:{a}"
    if kind == Kind.TIMEOUT:
        return f"TIMEOUT client:{a} (checkout timeout)"
    if kind in (Kind.BAN, Kind.UNBAN):
        return f"{kind_name(kind)} reason={reason_word(m, a, kind)}" + (f" cluster:{b}" if b else "")
    if kind == Kind.ROLE:
        return _role(rec, world)
    if kind == Kind.ROUTE:
        return f"ROUTE {'write' if b else 'read'} ({reason_word(m, a, kind)})"
    if kind == Kind.ACCEPT:
        return f"ACCEPT connection on port {a}"
    if kind == Kind.CONNECT:
        result = "ok" if a == 0 else f"failed: {_errno_word(a)}"
        return f"CONNECT {result}" + (_pool_note(world, rec.id) if m == Machine.SERVER else "")
    if kind == Kind.NOTE:
        return _note(rec, world)
    if kind in (Kind.RELOAD, Kind.SIGNAL, Kind.ERROR) and a:
        return f"{kind_name(kind)} ({reason_word(m, a)})"
    if kind == Kind.TIMER:
        return f"TIMER {registry.timer_name(a)} fired"
    return " ".join([kind_name(kind), *details(rec)])
