"""``replay --at T``: every machine's state at one moment, from a :class:`World` fed up to T.

During an incident the question is often not "what happened" but "how did things stand at
10:00:03": who was waiting, which server each client had, which hosts were banned, who was
primary.  The world already holds the answer; this module picks what existed at T and says it.

Machines that closed before T are not listed, only counted (a busy proxy has closed thousands of
clients).  A machine's ``since`` is the time of its last state change, or when the log first
mentions it if it never changed; machines are only known from the moment a record names them,
so a pool that nothing touched before T is not listed either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from pgdog_ev.eventlog.timeline import reason_word, role_name
from pgdog_ev.eventlog.world import ClientView, PoolView, ServerView, World
from state import registry
from state.events import Kind, Machine

__all__ = ["Focus", "snapshot_json", "snapshot_text"]


@dataclass(frozen=True)
class Focus:
    """The ``--client/--server/--pool`` filters; empty sets mean everything."""

    clients: frozenset[int] = frozenset()
    servers: frozenset[int] = frozenset()
    pools: frozenset[int] = frozenset()

    @property
    def all(self) -> bool:
        return not (self.clients or self.servers or self.pools)


def _t(t: float) -> str:
    return f"{t:+.6f}s"


def _state(machine: Machine, value: int) -> str:
    return registry.state_name(machine, value)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _since(machine: Machine, view: ClientView | ServerView | PoolView) -> str:
    """``ACTIVE since +1.5s (checkout)``, or, without any transition recorded, the state the
    machine starts in and when the log first names it."""
    name = _state(machine, view.state)
    if not view.changed:
        return f"{name} (no change recorded; first seen {_t(view.first_seen)})"
    text = f"{name} since {_t(view.since)}"
    if view.reason:
        text += f" ({reason_word(machine, view.reason)})"
    return text


class _Selection:
    """Which open machines the snapshot lists: all of them, or those related to the focus."""

    def __init__(self, world: World, focus: Focus) -> None:
        self.clients = [c for c in sorted(world.clients.values(), key=lambda v: v.id) if not c.closed]
        self.servers = [s for s in sorted(world.servers.values(), key=lambda v: v.id) if not s.closed]
        self.pools = [p for p in sorted(world.pools.values(), key=lambda v: v.id) if not p.closed]
        self.clusters = sorted(world.clusters.values(), key=lambda v: v.id)
        self.monitors = sorted(world.monitors.values(), key=lambda v: v.id)
        if focus.all:
            return
        servers = set(focus.servers)
        servers |= {world.held_server(c) for c in self.clients if c.id in focus.clients} - {0}
        servers |= {s.id for s in self.servers if s.pool in focus.pools}
        pools = set(focus.pools)
        pools |= {s.pool for s in self.servers if s.id in servers and s.pool}
        pools |= {c.wait_id for c in self.clients
                  if c.id in focus.clients and c.wait_machine == Machine.POOL}
        clients = set(focus.clients)
        clients |= {s.client for s in self.servers if s.id in servers and s.client}
        clients |= {c.id for c in self.clients if c.wait_machine == Machine.POOL and c.wait_id in focus.pools}
        clusters = {p.cluster for p in self.pools if p.id in pools and p.cluster}
        clusters |= {c.wait_id for c in self.clients if c.id in clients and c.wait_machine == Machine.LB}
        self.clients = [c for c in self.clients if c.id in clients]
        self.servers = [s for s in self.servers if s.id in servers]
        self.pools = [p for p in self.pools if p.id in pools]
        self.clusters = [k for k in self.clusters if k.id in clusters]
        self.monitors = [m for m in self.monitors if m.id in pools]


def _closed_counts(world: World) -> dict[str, int]:
    return {
        "clients": sum(1 for c in world.clients.values() if c.closed),
        "servers": sum(1 for s in world.servers.values() if s.closed),
        "pools": sum(1 for p in world.pools.values() if p.closed),
    }


def _client_words(c: ClientView, held: int) -> str:
    text = f"client:{c.id}  {_since(Machine.CLIENT, c)}"
    if held:
        text += f", holds server:{held} since {_t(c.server_since)}"
    if c.wait_machine == Machine.POOL:
        text += f", queued at pool:{c.wait_id} since {_t(c.wait_since)}"
    elif c.wait_machine == Machine.LB:
        text += f", waiting for a primary of cluster:{c.wait_id} since {_t(c.wait_since)}"
    return text


def _server_words(s: ServerView) -> str:
    text = f"server:{s.id}  {_since(Machine.SERVER, s)}"
    text += f", pool:{s.pool}" if s.pool else ", pool unknown"
    if s.client:
        text += f", held by client:{s.client}"
    return text


def _pool_words(p: PoolView, servers: Counter[tuple[int, int]]) -> str:
    text = f"pool:{p.id}  {_since(Machine.POOL, p)}"
    if p.banned:
        text += f", BANNED since {_t(p.ban_since)} (reason={reason_word(Machine.POOL, p.ban_reason, Kind.BAN)})"
    else:
        text += ", not banned"
    if p.role is not None:
        text += f", role {role_name(p.role)} since {_t(p.role_since)}"
    if p.healthy is not None:
        verdict = "healthy" if p.healthy else "unhealthy"
        why = f" ({reason_word(Machine.POOL, p.health_reason)})" if p.health_reason else ""
        text += f", {verdict} since {_t(p.health_since)}{why}"
    by_state = [f"{n} {_state(Machine.SERVER, st).lower()}" for (pid, st), n in sorted(servers.items()) if pid == p.id]
    text += f", servers: {', '.join(by_state) if by_state else 'none'}"
    text += f", {len(p.waiting)} waiting"
    if p.cluster:
        text += f", cluster:{p.cluster}"
    return text


def _server_counts(servers: list[ServerView]) -> Counter[tuple[int, int]]:
    return Counter((s.pool, s.state) for s in servers)


def snapshot_text(world: World, at: float, heading: str, focus: Focus) -> Iterator[str]:
    """Lines of the text snapshot; ``heading`` says when and which run."""
    sel = _Selection(world, focus)
    yield heading
    if world.records == 0:
        yield "  nothing recorded yet"
    if sel.clusters:
        yield "clusters"
        for k in sel.clusters:
            primary = f"pool:{k.primary} since {_t(k.primary_since)}" if k.primary else "none known"
            banned = [p.id for p in world.pools.values() if p.cluster == k.id and p.banned and not p.closed]
            text = f"  cluster:{k.id}  primary {primary}"
            text += f", banned: {', '.join(f'pool:{b}' for b in sorted(banned))}" if banned else ", no bans"
            text += f", {_n(len(k.waiting), 'write')} waiting for a primary"
            yield text
    if sel.pools:
        yield "pools"
        counts = _server_counts([s for s in world.servers.values() if not s.closed])
        for p in sel.pools:
            yield "  " + _pool_words(p, counts)
    if sel.monitors:
        yield "monitors"
        for mon in sel.monitors:
            result = ("in recovery" if mon.in_recovery else "not in recovery") if mon.ok else "failed"
            yield f"  monitor:{mon.id}  last LSN check {_t(mon.at)}: {result}"
    if sel.servers:
        yield "servers"
        for s in sel.servers:
            yield "  " + _server_words(s)
    if sel.clients:
        yield "clients"
        for c in sel.clients:
            yield "  " + _client_words(c, world.held_server(c))
    yield "summary: " + _summary(world, sel)


def _summary(world: World, sel: _Selection) -> str:
    states = Counter(_state(Machine.CLIENT, c.state).lower() for c in sel.clients)
    parts = [_n(len(sel.clients), "client") + (f" ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))})"
                                              if states else "")]
    sstates = Counter(_state(Machine.SERVER, s.state).lower() for s in sel.servers)
    parts.append(_n(len(sel.servers), "server") + (f" ({', '.join(f'{n} {s}' for s, n in sorted(sstates.items()))})"
                                                  if sstates else ""))
    banned = sum(1 for p in sel.pools if p.banned)
    parts.append(f"{_n(len(sel.pools), 'pool')} ({banned} banned)")
    parts.append(_n(len(sel.clusters), "cluster"))
    closed = _closed_counts(world)
    parts.append(
        f"closed before then: {_n(closed['clients'], 'client')}, {_n(closed['servers'], 'server')}, "
        f"{_n(closed['pools'], 'pool')}"
    )
    return "; ".join(parts)


def snapshot_json(world: World, at: float, head: dict, focus: Focus) -> Iterator[dict]:
    """Objects of the JSON snapshot, one per machine, between a ``snapshot`` and a ``summary``."""
    sel = _Selection(world, focus)
    yield {"type": "snapshot", **head}
    for k in sel.clusters:
        banned = sorted(p.id for p in world.pools.values() if p.cluster == k.id and p.banned and not p.closed)
        yield {"type": "cluster", "machine": "cluster", "id": k.id, "primary": k.primary or None,
               "primary_since": k.primary_since if k.primary else None, "banned_pools": banned,
               "waiting": sorted(k.waiting)}
    for p in sel.pools:
        yield {"type": "pool", "machine": "pool", "id": p.id, "state": _state(Machine.POOL, p.state),
               "since": p.since, "changed": p.changed, "first_seen": p.first_seen, "banned": p.banned,
               "ban_reason": registry.reason_name(Machine.POOL, p.ban_reason) if p.banned else None,
               "ban_since": p.ban_since if p.banned else None,
               "role": role_name(p.role) if p.role is not None else None,
               "healthy": p.healthy, "cluster": p.cluster or None, "waiting": sorted(p.waiting),
               "servers": sorted(s.id for s in sel.servers if s.pool == p.id)}
    for mon in sel.monitors:
        yield {"type": "monitor", "machine": "monitor", "id": mon.id, "at": mon.at, "ok": mon.ok,
               "in_recovery": mon.in_recovery}
    for s in sel.servers:
        yield {"type": "server", "machine": "server", "id": s.id, "state": _state(Machine.SERVER, s.state),
               "since": s.since, "changed": s.changed, "first_seen": s.first_seen, "reason": registry.reason_name(Machine.SERVER, s.reason) if s.reason else None,
               "pool": s.pool or None, "client": s.client or None}
    for c in sel.clients:
        waiting_at = None
        if c.wait_machine == Machine.POOL:
            waiting_at = f"pool:{c.wait_id}"
        elif c.wait_machine == Machine.LB:
            waiting_at = f"cluster:{c.wait_id}"
        yield {"type": "client", "machine": "client", "id": c.id, "state": _state(Machine.CLIENT, c.state),
               "since": c.since, "changed": c.changed, "first_seen": c.first_seen, "reason": registry.reason_name(Machine.CLIENT, c.reason) if c.reason else None,
               "server": world.held_server(c) or None, "waiting_at": waiting_at}
    yield {"type": "summary", "clients": len(sel.clients), "servers": len(sel.servers), "pools": len(sel.pools),
           "banned_pools": sum(1 for p in sel.pools if p.banned), "clusters": len(sel.clusters),
           "closed": _closed_counts(world)}
