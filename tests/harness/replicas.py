"""A primary with streaming replicas, for tests of multi-host clusters (read/write split, load
balancing, bans, failover).

Every server listens on its own port, so `SELECT inet_server_port()` through the proxy tells where
a query ran. `ReplicaSet.databases(roles)` writes the `[[databases]]` entries for the proxy.

Fixtures (registered for the integration tests by tests/integration/conftest.py):

- `replica_set`: module-scoped, for tests that leave the servers as they found them. Under
  pytest-xdist each worker builds its own (fresh temp dirs and ports), like the `pg` fixture.
- `fresh_replica_set`: function-scoped, for tests that stop, pause or promote servers.

Building one takes a second or two: the primary starts from a copy of a data directory made once
per test process (initdb, the app user and database), then both replicas are made at the same
time with `pg_basebackup`, so they have the app user and database too.

The event log helpers (`events`, `wait_event`) read BAN/UNBAN/ROLE/... records through
`pgdog-ev events --format json`; record timestamps are CLOCK_MONOTONIC, comparable with
time.monotonic() here, so tests measure how long the proxy took from its own records.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.events import run_events
from tests.harness.pgserver import PgServer, PgServerError
from tests.harness.proxy import ProxyProcess

PRIMARY, REPLICA, AUTO = "primary", "replica", "auto"
# Where each server of a ReplicaSet is, by index: primary first.
DEFAULT_ROLES = (PRIMARY, REPLICA, REPLICA)


@dataclass
class ReplicaSet:
    """A running primary and its streaming replicas (hot standbys)."""

    primary: PgServer
    replicas: list[PgServer]
    # Names for messages, by port ("primary", "r1", "r2").
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = {self.primary.port: "primary"}
        for i, r in enumerate(self.replicas, 1):
            self.names[r.port] = f"r{i}"

    @property
    def servers(self) -> list[PgServer]:
        """All servers, in the order `databases()` lists them: the original primary first."""
        return [self.primary, *self.replicas]

    @property
    def replica_ports(self) -> set[int]:
        return {r.port for r in self.replicas}

    def name(self, port: int | None) -> str:
        return self.names.get(port, str(port)) if port is not None else "?"

    def databases(self, roles: Sequence[str] | str = DEFAULT_ROLES, name: str = APP_DB) -> list[dict[str, Any]]:
        """[[databases]] entries for every server, one `role` each (a string: the same for all)."""
        servers = self.servers
        if isinstance(roles, str):
            roles = [roles] * len(servers)
        if len(roles) != len(servers):
            raise ValueError(f"{len(roles)} roles for {len(servers)} servers")
        return [
            {"name": name, "host": s.host, "port": s.port, "database_name": APP_DB, "role": role}
            for s, role in zip(servers, roles, strict=True)
        ]

    def sync(self, timeout: float = 30) -> None:
        """Wait until every running replica still following the primary has replayed all the WAL
        the primary has inserted so far."""
        following = [r for r in self.replicas if r.running and r.primary is not None and r.primary.running]
        if not following:
            return
        target = _replay_target(self.primary.psql("SELECT pg_current_wal_insert_lsn()"))
        deadline = time.monotonic() + timeout
        for r in following:
            while True:
                replayed = parse_lsn(r.psql("SELECT pg_last_wal_replay_lsn()"))
                if replayed is not None and replayed >= target:
                    break
                if time.monotonic() > deadline:
                    raise PgServerError(f"{r.name}: replay at {replayed} has not reached {target} after {timeout}s")
                time.sleep(0.02)

    def sql(self, server: PgServer, sql: str) -> str:
        """psql as the superuser in the app database on one server."""
        return server.psql(sql, db=APP_DB)

    def table(self, prefix: str, columns: str = "id int") -> str:
        """Create a table on the primary (granted to the app user) and wait until the replicas
        have it, so a read routed to any host finds it."""
        tname = f"{prefix}_{os.urandom(4).hex()}"
        self.sql(self.primary, f"CREATE TABLE {tname} ({columns}); GRANT ALL ON {tname} TO {APP_USER}")
        self.sync()
        return tname

    def connect(self, server: PgServer, **kw: Any) -> psycopg.Connection:
        """A direct psycopg client of one server (bypassing the proxy), as the app user."""
        kw.setdefault("autocommit", True)
        kw.setdefault("connect_timeout", 10)
        return psycopg.connect(server.dsn(APP_USER, APP_DB, APP_PASSWORD), **kw)

    def cleanup(self) -> None:
        for s in reversed(self.servers):
            s.cleanup()


_template: PgServer | None = None
_template_lock = threading.Lock()


def _primary_template() -> PgServer:
    """A stopped server with the app user and database, whose data directory each ReplicaSet's
    primary starts from: initdb runs once per test process instead of once per set."""
    global _template
    with _template_lock:
        if _template is None:
            t = PgServer(name="template", auth="scram-sha-256")
            t.start()
            t.create_user(APP_USER, APP_PASSWORD)
            t.create_database(APP_DB, owner=APP_USER)
            t.stop()
            _template = t
        return _template


def _primary_from_template(name: str, settings: dict[str, str]) -> PgServer:
    template = _primary_template()
    primary = PgServer(name=name, auth="scram-sha-256", settings=settings)
    primary._make_server_dir()
    # cp -a keeps the server user's ownership and the 0700 data directory.
    res = subprocess.run(["cp", "-a", template.datadir, primary.datadir], capture_output=True, text=True,
                         timeout=60)
    if res.returncode != 0:
        raise PgServerError(f"copying the template data directory failed: {res.stderr.strip()}")
    return primary.start()


WAL_PAGE = 8192
# Page headers: short, and long (the first page of a segment).
WAL_PAGE_HEADERS = (24, 40)


def parse_lsn(text: str) -> int | None:
    """'16/B374D848' -> a number; None for an empty answer (NULL)."""
    if "/" not in text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _replay_target(insert_lsn: str) -> int:
    """What a replica has replayed once it has everything inserted before `insert_lsn`. Right
    after a page fills up, the insert position already counts the next page's header, which no
    record ends at (so a replica would seem behind until the primary writes again, for up to the
    15 s of its next background snapshot): the page boundary is the target then."""
    lsn = parse_lsn(insert_lsn)
    assert lsn is not None, insert_lsn
    if lsn % WAL_PAGE in WAL_PAGE_HEADERS:
        return lsn - lsn % WAL_PAGE
    return lsn


def build_replica_set(label: str, replicas: int = 2, settings: dict[str, str] | None = None) -> ReplicaSet:
    """Start a primary (scram auth, app user and database) and `replicas` streaming replicas
    (base backups taken in parallel)."""
    base = dict(settings or {})
    # A replica that cannot reach its primary retries every wal_retrieve_retry_interval (5 s by
    # default); after a promotion the others should notice sooner.
    base.setdefault("wal_retrieve_retry_interval", "500ms")
    # Base backups run side by side: neither checkpoint may recycle WAL the other still needs.
    base.setdefault("wal_keep_size", "256MB")
    primary = _primary_from_template(f"{label}-p", base)
    try:
        with concurrent.futures.ThreadPoolExecutor(replicas) as pool:
            futures = [pool.submit(primary.make_replica, f"{label}-r{i}") for i in range(1, replicas + 1)]
            made = [f.result() for f in futures]
    except BaseException:
        primary.cleanup()  # and the replicas made so far
        raise
    return ReplicaSet(primary, made)


def _build() -> ReplicaSet:
    # Every server has its own temp dir and port; the name only labels logs (per xdist worker).
    label = f"rs-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    try:
        return build_replica_set(label)
    except PgServerError as e:
        pytest.fail(f"could not build a primary with replicas:\n{e}", pytrace=False)


@pytest.fixture(scope="module")
def replica_set() -> Iterator[ReplicaSet]:
    """A primary and two replicas shared by the tests of one module (per xdist worker)."""
    rs = _build()
    yield rs
    rs.cleanup()


@pytest.fixture
def fresh_replica_set() -> Iterator[ReplicaSet]:
    """A primary and two replicas of one test's own, for tests that stop or promote servers."""
    rs = _build()
    yield rs
    rs.cleanup()


# --------------------------------------------------------------------------- proxy side


def cluster_users() -> list[dict[str, Any]]:
    return [{"name": APP_USER, "database": APP_DB, "password": APP_PASSWORD}]


def cluster_general(**extra: Any) -> dict[str, Any]:
    """[general] for a proxy in front of a ReplicaSet: transaction mode, a few servers per host,
    background health checks far apart unless a test asks otherwise (a check holds a connection
    for a moment, which least_active_connections would count)."""
    return {
        "pooler_mode": "transaction",
        "default_pool_size": 4,
        "min_pool_size": 0,
        "checkout_timeout": 10000,
        "idle_healthcheck_interval": 600000,
        "idle_healthcheck_delay": 600000,
        **extra,
    }


def server_port(conn: psycopg.Connection) -> int:
    """Where the next read of `conn` runs."""
    row = conn.execute("SELECT inet_server_port()").fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Event:
    """One record of a proxy's event log (`pgdog-ev events --format json`)."""

    kind: str
    machine: str
    id: int
    a: int
    b: int
    # CLOCK_MONOTONIC seconds, the clock of time.monotonic() in the tests.
    at: float
    raw: dict[str, Any]


def events(proxy: ProxyProcess, *kinds: str) -> list[Event]:
    """The proxy's recorded events of the given kinds (e.g. "ban", "unban", "role"), oldest first;
    [] while the log cannot be decoded yet."""
    args = ["--format", "json"]
    if kinds:
        args += ["--kind", ",".join(kinds)]
    res = run_events(proxy.event_log_path, *args)
    if res.returncode != 0:
        return []
    out = []
    for line in res.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        out.append(Event(str(r["kind"]).upper(), str(r["machine"]), int(r["id"]), int(r["a"]), int(r["b"]),
                         int(r["now_ns"]) / 1e9, r))
    return out


def wait_event(
    poll: Callable[..., Any], proxy: ProxyProcess, kind: str, match: Callable[[Event], bool] = lambda e: True,
    timeout: float = 10.0, what: str = "",
) -> Event:
    """Poll the event log until an event of `kind` satisfying `match` is recorded; the first one."""

    def find() -> Event | None:
        return next((e for e in events(proxy, kind) if match(e)), None)

    return poll(find, timeout=timeout, interval=0.1, what=what or f"{kind} event")
