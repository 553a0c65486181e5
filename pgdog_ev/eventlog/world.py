"""What the event log says about every machine, rebuilt record by record.

Both the timeline and the ``--at`` snapshot need more than one record at a time: a CHECKIN names
the server but not the client that gave it back (``a`` is 0), a server's records never name its
pool, and a ROLE record says how one pool's role changed, not who the cluster's primary was
before.  :class:`World` is the one place that folds records into that knowledge, in stream order,
so the two renderings cannot disagree.

What the log tells, and from which records:

* client state: its TRANSITIONs (before the first one a client that was ACCEPTed is in STARTUP);
  the server it holds: CHECKOUT (``id`` pool, ``a`` client, ``b`` server) until that server's
  CHECKIN or CLOSED; where it queues: ENQUEUE at a pool or at a cluster (LB, waiting for a
  primary) until DEQUEUE/TIMEOUT/CHECKOUT or it leaves WAITING.
* server state: its TRANSITIONs; its pool: the pool of any CHECKOUT/CHECKIN naming it.  Servers
  are only ever named by their pool once they have logged in, so :class:`Memberships` (learned
  in a first pass over the whole run) also places the records a server wrote before.
* pool state: its TRANSITIONs (a pool starts OPEN); bans: BAN until UNBAN (``b`` = cluster); role
  and the cluster's primary: ROLE (``frm``/``to`` role codes, ``b`` = cluster); health: NOTE
  HEALTHCHECK_OK/FAILED (``b`` = why).  A pool's cluster is only named by those records, which may
  come late (with fixed roles, at the first BAN), so :class:`Memberships` places a pool in its
  cluster from the start.
* monitor: NOTE LSN_CHECK (``b`` = 1 in recovery) / LSN_CHECK_FAILED, ``id`` = pool.

Everything is per run: a restarted daemon numbers its machines from 1 again, so each run gets a
World of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from state.client import ClientState
from state.cluster import RoleCode
from state.events import Kind, Machine, Record
from state.pool import PoolState
from state.reasons import Reason
from state.server import ServerState

__all__ = [
    "ClientView",
    "ClusterView",
    "Memberships",
    "Mentions",
    "MonitorView",
    "PoolView",
    "ServerView",
    "World",
]

_CLIENT, _SERVER, _POOL, _LB, _MONITOR, _DAEMON = (
    int(Machine.CLIENT), int(Machine.SERVER), int(Machine.POOL), int(Machine.LB), int(Machine.MONITOR),
    int(Machine.DAEMON),
)
_TRANSITION, _CHECKOUT, _CHECKIN = int(Kind.TRANSITION), int(Kind.CHECKOUT), int(Kind.CHECKIN)
_WAIT_KINDS = frozenset({int(Kind.ENQUEUE), int(Kind.DEQUEUE), int(Kind.TIMEOUT)})
_PRIMARY = int(RoleCode.PRIMARY)
# Pool records whose ``b`` names a server of the pool / the pool's cluster.
_SERVER_NAMING = frozenset({_CHECKIN, _CHECKOUT})
_CLUSTER_NAMING = frozenset({int(Kind.BAN), int(Kind.UNBAN), int(Kind.ROLE)})


def _ids(values: list[int]) -> tuple[int, ...]:
    """Distinct non-zero ids, in order (0 means "none" in every id field)."""
    return tuple(dict.fromkeys(v for v in values if v))


class Memberships:
    """Which pool each server belongs to and which cluster each pool, from a whole run.

    Both are fixed for a machine's life, but a record names them only from some point on (a
    server's first CHECKIN, a pool's first BAN or ROLE), so they are learned in a pass of their
    own and used from a machine's first record."""

    def __init__(self) -> None:
        self.server_pools: dict[int, int] = {}
        self.pool_clusters: dict[int, int] = {}

    def learn(self, rec: Record) -> None:
        if rec.machine == _POOL and rec.b:
            kind = rec.kind
            if kind in _SERVER_NAMING:
                self.server_pools[rec.b] = rec.id
            elif kind in _CLUSTER_NAMING:
                self.pool_clusters[rec.id] = rec.b


@dataclass(slots=True)
class ClientView:
    id: int
    state: int
    since: float
    first_seen: float
    reason: int = 0
    changed: bool = False  # a TRANSITION was seen (else ``state`` is the machine's initial one)
    server: int = 0  # held now (0: none)
    server_since: float = 0.0
    wait_machine: int = 0  # Machine.POOL or Machine.LB while queued, else 0
    wait_id: int = 0
    wait_since: float = 0.0
    port: int = 0  # listener it came in through (ACCEPT)

    @property
    def closed(self) -> bool:
        return self.state == ClientState.CLOSED


@dataclass(slots=True)
class ServerView:
    id: int
    state: int
    since: float
    first_seen: float
    reason: int = 0
    changed: bool = False  # a TRANSITION was seen (else ``state`` is the machine's initial one)
    pool: int = 0
    client: int = 0  # the client holding it now (0: none)

    @property
    def closed(self) -> bool:
        return self.state == ServerState.CLOSED


@dataclass(slots=True)
class PoolView:
    id: int
    state: int
    since: float
    first_seen: float
    reason: int = 0
    changed: bool = False  # a TRANSITION was seen (else ``state`` is the machine's initial one)
    cluster: int = 0
    role: int | None = None  # RoleCode once a ROLE record said
    role_since: float = 0.0
    banned: bool = False
    ban_reason: int = 0
    ban_since: float = 0.0
    healthy: bool | None = None  # None: no verdict recorded
    health_reason: int = 0
    health_since: float = 0.0
    waiting: set[int] = field(default_factory=set)

    @property
    def closed(self) -> bool:
        return self.state == PoolState.CLOSED


@dataclass(slots=True)
class ClusterView:
    id: int
    first_seen: float
    primary: int = 0  # pool id, 0 while none is known
    primary_since: float = 0.0
    waiting: set[int] = field(default_factory=set)  # writes queued for a primary


@dataclass(slots=True)
class MonitorView:
    id: int  # the pool it polls
    at: float
    ok: bool
    in_recovery: bool | None


@dataclass(frozen=True, slots=True)
class Mentions:
    """The machines one record is about (its own and the ones it names or implies)."""

    clients: tuple[int, ...] = ()
    servers: tuple[int, ...] = ()
    pools: tuple[int, ...] = ()
    clusters: tuple[int, ...] = ()
    daemon: bool = False  # a daemon-wide record (start, reload, shutdown)


@dataclass(frozen=True, slots=True)
class RoleChange:
    """The cluster's primary before and after a ROLE record (equal when it did not change)."""

    cluster: int
    before: int
    after: int


class World:
    """Machines as the log describes them up to the last record applied."""

    def __init__(self, memberships: Memberships | None = None) -> None:
        known = memberships or Memberships()
        self.server_pools: dict[int, int] = dict(known.server_pools)
        self.pool_clusters: dict[int, int] = dict(known.pool_clusters)
        self.clients: dict[int, ClientView] = {}
        self.servers: dict[int, ServerView] = {}
        self.pools: dict[int, PoolView] = {}
        self.clusters: dict[int, ClusterView] = {}
        self.monitors: dict[int, MonitorView] = {}
        self.last_t: float | None = None
        self.last_seq: int | None = None
        self.records = 0

    # -- lookups ---------------------------------------------------------------------------------

    def holder(self, server: int) -> int:
        view = self.servers.get(server)
        return view.client if view is not None else 0

    def held_server(self, client: ClientView) -> int:
        """The open server ``client`` holds (a closed one it has not reacted to yet is not)."""
        server = self.servers.get(client.server) if client.server else None
        return server.id if server is not None and not server.closed else 0

    def pool_of(self, server: int) -> int:
        view = self.servers.get(server)
        if view is not None and view.pool:
            return view.pool
        return self.server_pools.get(server, 0)

    def primary_of(self, cluster: int) -> int:
        view = self.clusters.get(cluster)
        return view.primary if view is not None else 0

    def role_change(self, rec: Record) -> RoleChange:
        """What a ROLE record (not yet applied) does to its cluster's primary."""
        before = self.primary_of(rec.b)
        after = before
        if rec.to == _PRIMARY:
            after = rec.id
        elif rec.frm == _PRIMARY and before == rec.id:
            after = 0
        return RoleChange(rec.b, before, after)

    def mentions(self, rec: Record) -> Mentions:
        """The machines ``rec`` concerns, judged before it is applied (a CHECKIN still knows who
        held the server)."""
        m, ident, kind = rec.machine, rec.id, rec.kind
        clients: list[int] = []
        servers: list[int] = []
        pools: list[int] = []
        clusters: list[int] = []
        daemon = False
        if m == _CLIENT:
            clients.append(ident)
            client = self.clients.get(ident)
            if client is not None and client.server:
                servers.append(client.server)
            if kind == _TRANSITION and rec.b:
                servers.append(rec.b)
        elif m == _SERVER:
            servers.append(ident)
            holder = self.holder(ident)
            if holder:
                clients.append(holder)
            if kind == _TRANSITION and rec.b:
                clients.append(rec.b)
        elif m == _POOL:
            pools.append(ident)
            if kind == _CHECKOUT:
                clients.append(rec.a)
                servers.append(rec.b)
            elif kind == _CHECKIN:
                servers.append(rec.b)
                clients.append(rec.a or self.holder(rec.b))
            elif kind in _WAIT_KINDS:
                clients.append(rec.a)
            elif kind in (Kind.BAN, Kind.UNBAN, Kind.ROLE):
                clusters.append(rec.b)
        elif m == _MONITOR:
            pools.append(ident)
        elif m == _LB:
            clusters.append(ident)
            if kind in _WAIT_KINDS:
                clients.append(rec.a)
        elif m == _DAEMON:
            if ident:
                clients.append(ident)  # an admin command, by that client
            else:
                daemon = True
        for sid in servers:
            pool = self.pool_of(sid)
            if pool:
                pools.append(pool)
        return Mentions(_ids(clients), _ids(servers), _ids(pools), _ids(clusters), daemon)

    # -- folding records in ------------------------------------------------------------------------

    def _client(self, cid: int, t: float) -> ClientView:
        view = self.clients.get(cid)
        if view is None:
            view = self.clients[cid] = ClientView(cid, int(ClientState.STARTUP), t, t)
        return view

    def _server(self, sid: int, t: float) -> ServerView:
        view = self.servers.get(sid)
        if view is None:
            view = self.servers[sid] = ServerView(sid, int(ServerState.CONNECTING), t, t,
                                                  pool=self.server_pools.get(sid, 0))
        return view

    def _pool(self, pid: int, t: float) -> PoolView:
        view = self.pools.get(pid)
        if view is None:
            view = self.pools[pid] = PoolView(pid, int(PoolState.OPEN), t, t)
            self._join(view, self.pool_clusters.get(pid, 0), t)
        return view

    def _cluster(self, cid: int, t: float) -> ClusterView:
        view = self.clusters.get(cid)
        if view is None:
            view = self.clusters[cid] = ClusterView(cid, t)
        return view

    def _release(self, server: ServerView) -> None:
        client = self.clients.get(server.client)
        if client is not None and client.server == server.id:
            client.server = 0
        server.client = 0

    def _stop_waiting(self, client: ClientView) -> None:
        if client.wait_machine == _POOL:
            pool = self.pools.get(client.wait_id)
            if pool is not None:
                pool.waiting.discard(client.id)
        elif client.wait_machine == _LB:
            cluster = self.clusters.get(client.wait_id)
            if cluster is not None:
                cluster.waiting.discard(client.id)
        client.wait_machine = client.wait_id = 0

    def apply(self, rec: Record, t: float) -> None:
        self.records += 1
        self.last_t = t
        self.last_seq = rec.seq
        m, kind = rec.machine, rec.kind
        if m == _CLIENT:
            self._apply_client(rec, t)
        elif m == _SERVER:
            self._apply_server(rec, t)
        elif m == _POOL:
            self._apply_pool(rec, t)
        elif m == _LB:
            cluster = self._cluster(rec.id, t)
            if kind in _WAIT_KINDS and rec.a:
                client = self._client(rec.a, t)
                if kind == Kind.ENQUEUE:
                    self._stop_waiting(client)
                    cluster.waiting.add(client.id)
                    client.wait_machine, client.wait_id, client.wait_since = _LB, rec.id, t
                elif client.wait_machine == _LB and client.wait_id == rec.id:
                    self._stop_waiting(client)
        elif m == _MONITOR:
            self._pool(rec.id, t)
            if kind == Kind.NOTE and rec.a == Reason.LSN_CHECK:
                self.monitors[rec.id] = MonitorView(rec.id, t, True, bool(rec.b))
            elif kind == Kind.NOTE and rec.a == Reason.LSN_CHECK_FAILED:
                self.monitors[rec.id] = MonitorView(rec.id, t, False, None)

    def _apply_client(self, rec: Record, t: float) -> None:
        client = self._client(rec.id, t)
        held = self.servers.get(client.server) if client.server else None
        if held is not None and held.closed:
            self._release(held)
        if rec.kind == Kind.ACCEPT:
            client.port = rec.a
        elif rec.kind == _TRANSITION:
            client.state, client.since, client.reason, client.changed = rec.to, t, rec.a, True
            if rec.to != ClientState.WAITING:
                self._stop_waiting(client)
            if rec.to == ClientState.ACTIVE and rec.b and client.server != rec.b:
                self._hold(client, self._server(rec.b, t), t)

    def _hold(self, client: ClientView, server: ServerView, t: float) -> None:
        if client.server and client.server != server.id:
            old = self.servers.get(client.server)
            if old is not None and old.client == client.id:
                old.client = 0
        if server.client and server.client != client.id:
            other = self.clients.get(server.client)
            if other is not None and other.server == server.id:
                other.server = 0
        client.server, client.server_since = server.id, t
        server.client = client.id

    def _apply_server(self, rec: Record, t: float) -> None:
        server = self._server(rec.id, t)
        if rec.kind == _TRANSITION:
            server.state, server.since, server.reason, server.changed = rec.to, t, rec.a, True
            # A closed server stays linked to its client until that client's next record (its
            # reaction, e.g. ACTIVE -> CLOSED server_lost), so filters keep the two together.

    def _apply_pool(self, rec: Record, t: float) -> None:
        pool = self._pool(rec.id, t)
        kind = rec.kind
        if kind == _TRANSITION:
            pool.state, pool.since, pool.reason, pool.changed = rec.to, t, rec.a, True
        elif kind == _CHECKOUT:
            server = self._server(rec.b, t)
            server.pool = rec.id
            if rec.a:
                client = self._client(rec.a, t)
                self._stop_waiting(client)
                self._hold(client, server, t)
        elif kind == _CHECKIN:
            server = self._server(rec.b, t)
            server.pool = rec.id
            self._release(server)
        elif kind in _WAIT_KINDS and rec.a:
            client = self._client(rec.a, t)
            if kind == Kind.ENQUEUE:
                self._stop_waiting(client)
                pool.waiting.add(client.id)
                client.wait_machine, client.wait_id, client.wait_since = _POOL, rec.id, t
            elif client.wait_machine == _POOL and client.wait_id == rec.id:
                self._stop_waiting(client)
        elif kind == Kind.BAN:
            pool.banned, pool.ban_reason, pool.ban_since = True, rec.a, t
            self._join(pool, rec.b, t)
        elif kind == Kind.UNBAN:
            pool.banned, pool.ban_reason, pool.ban_since = False, rec.a, t
            self._join(pool, rec.b, t)
        elif kind == Kind.ROLE:
            change = self.role_change(rec)
            pool.role, pool.role_since = rec.to, t
            cluster = self._join(pool, rec.b, t)
            if cluster is not None and change.after != change.before:
                cluster.primary, cluster.primary_since = change.after, t
        elif kind == Kind.NOTE and rec.a in (Reason.HEALTHCHECK_OK, Reason.HEALTHCHECK_FAILED):
            pool.healthy = rec.a == Reason.HEALTHCHECK_OK
            pool.health_reason, pool.health_since = rec.b, t

    def _join(self, pool: PoolView, cluster_id: int, t: float) -> ClusterView | None:
        if not cluster_id:
            return None
        pool.cluster = cluster_id
        return self._cluster(cluster_id, t)
