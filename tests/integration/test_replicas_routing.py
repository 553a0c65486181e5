"""Read/write split and load balancing over a primary and two streaming replicas.

Every server has its own port, so `SELECT inet_server_port()` (or `RETURNING inet_server_port()`)
shows where the proxy sent a statement. Most write checks run with read_write_split =
"exclude_primary": there a write the proxy mistook for a read would reach a replica, and the replica
refuses it (read-only transaction), so success alone proves the routing; where a statement can
return the port, the port is checked too.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import struct
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import connect
from tests.harness.proxy import ProxyProcess
from tests.harness.rawclient import RawConn, error_fields, message, query
from tests.harness.replicas import ReplicaSet, cluster_general, cluster_users, server_port

ProxyMaker = Callable[..., ProxyProcess]
READ_ONLY_SQLSTATE = "25006"


def _make(replica_set: ReplicaSet, factory: ProxyMaker, **general: Any) -> ProxyProcess:
    return factory(general=cluster_general(**general), databases=replica_set.databases(), users=cluster_users())


@pytest.fixture(scope="module")
def rr_ex(replica_set: ReplicaSet, module_proxy_factory: ProxyMaker) -> ProxyProcess:
    """round_robin over the replicas only: a misrouted write fails on a replica."""
    return _make(replica_set, module_proxy_factory, load_balancing_strategy="round_robin",
                 read_write_split="exclude_primary")


@pytest.fixture(scope="module")
def rr_in(replica_set: ReplicaSet, module_proxy_factory: ProxyMaker) -> ProxyProcess:
    """round_robin over the replicas and the primary (the default split)."""
    return _make(replica_set, module_proxy_factory, load_balancing_strategy="round_robin",
                 read_write_split="include_primary")


@pytest.fixture(scope="module")
def table(replica_set: ReplicaSet) -> str:
    """A table with rows 0..9, on every host."""
    name = replica_set.table("rw", "id int PRIMARY KEY, v int NOT NULL DEFAULT 0")
    replica_set.sql(replica_set.primary, f"INSERT INTO {name} SELECT g, 0 FROM generate_series(0, 9) g")
    replica_set.sync()
    return name


def _ports(conn: psycopg.Connection, n: int, sql: str = "SELECT inet_server_port()") -> list[int]:
    out = []
    for _ in range(n):
        row = conn.execute(sql).fetchone()
        assert row is not None
        out.append(int(row[0]))
    return out


def _named(rs: ReplicaSet, ports: list[int]) -> dict[str, int]:
    return dict(collections.Counter(rs.name(p) for p in ports))


def _sqlstate(e: BaseException) -> str | None:
    return getattr(e, "sqlstate", None)


# --------------------------------------------------------------------------- load balancing


def test_round_robin_exactly_even_over_replicas(replica_set: ReplicaSet, rr_ex: ProxyProcess) -> None:
    """exclude_primary + round_robin: N sequential reads split N/2 - N/2, never the primary, and
    strictly alternating (a rotation, not luck)."""
    with connect(rr_ex) as conn:
        ports = _ports(conn, 40)
    assert _named(replica_set, ports) == {"r1": 20, "r2": 20}, ports
    assert all(a != b for a, b in itertools.pairwise(ports)), ports


def test_round_robin_include_primary(replica_set: ReplicaSet, rr_in: ProxyProcess) -> None:
    """include_primary: the primary is a read target like the replicas."""
    with connect(rr_in) as conn:
        ports = _ports(conn, 30)
    assert _named(replica_set, ports) == {"primary": 10, "r1": 10, "r2": 10}, ports


def test_round_robin_across_clients(replica_set: ReplicaSet, rr_ex: ProxyProcess) -> None:
    """The rotation is per cluster, not per client: two clients taking turns still alternate."""
    with connect(rr_ex) as a, connect(rr_ex) as b:
        ports = [server_port(c) for _ in range(10) for c in (a, b)]
    assert _named(replica_set, ports) == {"r1": 10, "r2": 10}, ports


@pytest.mark.parametrize("split,hosts", [("include_primary", 3), ("exclude_primary", 2)])
def test_random_roughly_even(
    replica_set: ReplicaSet, module_proxy_factory: ProxyMaker, split: str, hosts: int
) -> None:
    """random: each read target gets about its share of 600 reads (bound: 5 standard deviations),
    and the order is not a rotation."""
    proxy = _make(replica_set, module_proxy_factory, load_balancing_strategy="random", read_write_split=split)
    n = 600
    with connect(proxy) as conn:
        ports = _ports(conn, n)
    counts = _named(replica_set, ports)
    expected = {"primary", "r1", "r2"} if hosts == 3 else {"r1", "r2"}
    assert set(counts) == expected, counts
    p = 1 / hosts
    sd = (n * p * (1 - p)) ** 0.5
    for name, c in counts.items():
        assert abs(c - n * p) <= 5 * sd, f"{name}: {c} of {n} reads ({counts})"
    # A rotation never repeats a host twice in a row; 600 random picks do (all but surely).
    assert any(a == b for a, b in itertools.pairwise(ports)), "reads strictly rotate"


def test_least_active_connections_avoids_busy_replica(
    replica_set: ReplicaSet, module_proxy_factory: ProxyMaker
) -> None:
    """A replica holding an open transaction has one active connection more than the other: every
    read while it lasts goes to the other one; once it ends, reads use both again."""
    proxy = _make(replica_set, module_proxy_factory, load_balancing_strategy="least_active_connections",
                  read_write_split="exclude_primary")
    holder = psycopg.connect(
        proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), autocommit=True, prepare_threshold=None, connect_timeout=10,
        options="-c pgdog.role=replica",
    )
    try:
        with connect(proxy) as reader:
            holder.execute("BEGIN READ ONLY")
            busy = server_port(holder)
            assert busy in replica_set.replica_ports
            idle = (replica_set.replica_ports - {busy}).pop()
            during = _ports(reader, 12)
            assert set(during) == {idle}, _named(replica_set, during)
            # Still the same server inside the transaction.
            assert server_port(holder) == busy
            holder.execute("COMMIT")
            after = _ports(reader, 12)
            assert set(after) == replica_set.replica_ports, _named(replica_set, after)
    finally:
        holder.close()


def test_prefer_primary(replica_set: ReplicaSet, module_proxy_factory: ProxyMaker) -> None:
    """prefer_primary: reads go to the primary while it is usable."""
    proxy = _make(replica_set, module_proxy_factory, load_balancing_strategy="round_robin",
                  read_write_split="prefer_primary")
    with connect(proxy) as conn:
        assert set(_ports(conn, 10)) == {replica_set.primary.port}


def test_include_primary_if_replica_banned_reads_replicas(
    replica_set: ReplicaSet, module_proxy_factory: ProxyMaker
) -> None:
    """include_primary_if_replica_banned: with every replica healthy, reads stay off the primary."""
    proxy = _make(replica_set, module_proxy_factory, load_balancing_strategy="round_robin",
                  read_write_split="include_primary_if_replica_banned")
    with connect(proxy) as conn:
        assert _named(replica_set, _ports(conn, 10)) == {"r1": 5, "r2": 5}


# --------------------------------------------------------------------------- writes


def _returning_writes(t: str) -> list[tuple[str, str]]:
    """(label, statement returning the server's port)."""
    return [
        ("insert", f"INSERT INTO {t} (id) SELECT coalesce(max(id), 0) + 1000 FROM {t} RETURNING inet_server_port()"),
        ("update", f"UPDATE {t} SET v = v + 1 WHERE id = 1 RETURNING inet_server_port()"),
        ("delete", f"DELETE FROM {t} WHERE id = -1 RETURNING inet_server_port(); "
                   "SELECT inet_server_port()"),
        ("insert with cte", f"WITH x AS (INSERT INTO {t} (id) VALUES (-5) ON CONFLICT DO NOTHING RETURNING 1) "
                            "SELECT inet_server_port()"),
        ("select for update", f"SELECT inet_server_port() FROM {t} WHERE id = 2 FOR UPDATE"),
        ("select for share", f"SELECT inet_server_port() FROM {t} WHERE id = 2 FOR SHARE"),
        ("select for no key update", f"SELECT inet_server_port() FROM {t} WHERE id = 2 FOR NO KEY UPDATE"),
        ("nextval", f"SELECT nextval('{t}_seq')::int * 0 + inet_server_port()"),
        ("setval", f"SELECT setval('{t}_seq', 5)::int * 0 + inet_server_port()"),
        ("call", f"CALL {t}_proc(0)"),
        ("locking subquery", f"SELECT inet_server_port() FROM (SELECT id FROM {t} WHERE id = 2 FOR UPDATE) s"),
        ("locking cte", f"WITH x AS (SELECT id FROM {t} WHERE id = 2 FOR KEY SHARE) "
                        "SELECT inet_server_port() FROM x"),
        ("nextval in from", f"SELECT inet_server_port() FROM pg_catalog.nextval('{t}_seq')"),
        ("values nextval", f"VALUES (NEXTVAL('{t}_seq')::int * 0 + inet_server_port())"),
        ("xact lock", "SELECT inet_server_port() FROM pg_advisory_xact_lock(42)"),
        ("txid", "SELECT txid_current() * 0 + inet_server_port()"),
        ("notify", "SELECT inet_server_port() FROM pg_notify('rw_test', 'x')"),
    ]


@pytest.fixture(scope="module")
def write_table(replica_set: ReplicaSet) -> str:
    """A table, a sequence and a procedure (INOUT: the port it ran on, after inserting a row)."""
    t = replica_set.table("wr", "id int PRIMARY KEY, v int NOT NULL DEFAULT 0")
    p = replica_set.primary
    replica_set.sql(p, f"""
        INSERT INTO {t} SELECT g, 0 FROM generate_series(1, 9) g;
        CREATE SEQUENCE {t}_seq; GRANT ALL ON {t}_seq TO {APP_USER};
        CREATE PROCEDURE {t}_proc(INOUT port int) LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {t} (id) SELECT coalesce(max(id), 0) + 1 FROM {t};
            port := inet_server_port();
        END $$;
        GRANT ALL ON PROCEDURE {t}_proc(int) TO {APP_USER};
    """)
    replica_set.sync()
    return t


def test_writes_that_return_the_port_run_on_the_primary(
    replica_set: ReplicaSet, rr_ex: ProxyProcess, write_table: str
) -> None:
    """INSERT/UPDATE/DELETE, writing CTEs, locking SELECTs, nextval/setval and CALL, each a few
    times: always on the primary."""
    primary = replica_set.primary.port
    wrong: dict[str, Any] = {}
    with connect(rr_ex) as conn:
        for label, sql in _returning_writes(write_table):
            for _ in range(3):
                try:
                    cur = psycopg.ClientCursor(conn)
                    cur.execute(sql)
                    ports = []
                    while True:
                        if cur.description is not None:
                            ports += [int(r[0]) for r in cur.fetchall()]
                        if not cur.nextset():
                            break
                except psycopg.Error as e:
                    wrong[label] = f"{_sqlstate(e)}: {e}"
                    break
                if set(ports) != {primary}:
                    wrong[label] = [replica_set.name(p) for p in ports]
                    break
    assert not wrong, wrong


def test_writes_without_results_run_on_the_primary(
    replica_set: ReplicaSet, rr_ex: ProxyProcess, write_table: str
) -> None:
    """MERGE, DDL, DO blocks, COPY FROM STDIN and extended-protocol INSERTs succeed (a replica
    would refuse each) and their effects are on the primary."""
    t = write_table
    statements = [
        f"MERGE INTO {t} d USING (SELECT 3 AS id) s ON d.id = s.id WHEN MATCHED THEN UPDATE SET v = d.v + 10",
        f"CREATE TABLE {t}_ddl (a int)",
        f"ALTER TABLE {t}_ddl ADD COLUMN b text",
        f"CREATE INDEX ON {t}_ddl (a)",
        f"DO $$ BEGIN INSERT INTO {t} (id, v) VALUES (-100, 7); END $$",
        f"TRUNCATE {t}_ddl",
        f"DROP TABLE {t}_ddl",
        f"EXPLAIN ANALYZE UPDATE {t} SET v = v WHERE id = 4",
        f"SELECT * INTO {t}_into FROM {t}",
        f"CREATE TABLE {t}_ctas AS SELECT 1 AS a",
        f"ANALYZE {t}",
        "NOTIFY rw_test",
    ]
    with connect(rr_ex) as conn:
        for sql in statements:
            try:
                conn.execute(sql)
            except psycopg.Error as e:
                pytest.fail(f"{sql!r} failed (routed to a replica?): {_sqlstate(e)} {e}")
        with conn.cursor() as cur, cur.copy(f"COPY {t} (id, v) FROM STDIN") as copy:
            for i in range(5):
                copy.write_row((2000 + i, 1))
        for i in range(4):  # extended protocol, unnamed statement
            conn.execute(f"INSERT INTO {t} (id, v) VALUES (%s, %s)", (3000 + i, 2))
    p = replica_set.primary
    assert replica_set.sql(p, f"SELECT v FROM {t} WHERE id = 3") == "10"
    assert replica_set.sql(p, f"SELECT v FROM {t} WHERE id = -100") == "7"
    assert replica_set.sql(p, f"SELECT count(*) FROM {t} WHERE id BETWEEN 2000 AND 2004") == "5"
    assert replica_set.sql(p, f"SELECT count(*) FROM {t} WHERE id BETWEEN 3000 AND 3003") == "4"
    assert replica_set.sql(p, f"SELECT to_regclass('{t}_ddl') IS NULL") == "t"
    assert replica_set.sql(p, f"SELECT count(*) FROM {t}_into") != "0"


def test_copy_to_stdout_is_a_read(replica_set: ReplicaSet, rr_ex: ProxyProcess, table: str) -> None:
    """COPY (query) TO STDOUT runs on a replica (it only reads)."""
    with connect(rr_ex) as conn:
        seen = set()
        for _ in range(4):
            with conn.cursor() as cur, cur.copy("COPY (SELECT inet_server_port()) TO STDOUT") as copy:
                seen |= {int(bytes(row).strip()) for row in copy}
    assert seen == replica_set.replica_ports


def test_psycopg_prepared_statements_routed_by_text(
    replica_set: ReplicaSet, rr_ex: ProxyProcess, write_table: str
) -> None:
    """Named prepared statements: each Bind/Execute of a prepared INSERT goes to the primary, each
    of a prepared SELECT to a replica, whichever host prepared it first."""
    t = write_table
    with connect(rr_ex, prepare_threshold=0) as conn:
        ins = [conn.execute(f"INSERT INTO {t} (id) VALUES (%s) RETURNING inet_server_port()", (4000 + i,),
                            prepare=True).fetchone() for i in range(6)]
        sel = [conn.execute("SELECT inet_server_port() + %s", (0,), prepare=True).fetchone() for _ in range(6)]
        ins2 = [conn.execute(f"INSERT INTO {t} (id) VALUES (%s) RETURNING inet_server_port()", (4100 + i,),
                             prepare=True).fetchone() for i in range(4)]
    primary = replica_set.primary.port
    assert {r[0] for r in ins + ins2 if r} == {primary}, (ins, ins2)
    assert _named(replica_set, [r[0] for r in sel if r]) == {"r1": 3, "r2": 3}, sel


def test_asyncpg_prepared_statements_routed_by_text(
    replica_set: ReplicaSet, rr_ex: ProxyProcess, write_table: str
) -> None:
    """asyncpg prepares everything (named statements, statement cache): prepared INSERTs and
    UPDATEs run on the primary, prepared SELECTs on the replicas."""
    t = write_table

    async def run() -> tuple[list[int], list[int]]:
        conn = await asyncpg.connect(rr_ex.url(APP_USER, APP_PASSWORD, APP_DB), timeout=10)
        try:
            ins = await conn.prepare(f"INSERT INTO {t} (id) VALUES ($1) RETURNING inet_server_port()")
            upd = await conn.prepare(f"UPDATE {t} SET v = v + 1 WHERE id = $1 RETURNING inet_server_port()")
            sel = await conn.prepare("SELECT inet_server_port() + $1::int")
            writes = [await ins.fetchval(5000 + i) for i in range(4)] + [await upd.fetchval(5) for _ in range(4)]
            writes += [await conn.fetchval(f"INSERT INTO {t} (id) VALUES ($1) RETURNING inet_server_port()",
                                           5100 + i) for i in range(4)]
            reads = [await sel.fetchval(0) for _ in range(6)]
            reads += [await conn.fetchval("SELECT inet_server_port() + $1::int", 0) for _ in range(4)]
            return writes, reads
        finally:
            await conn.close()

    writes, reads = asyncio.run(run())
    assert set(writes) == {replica_set.primary.port}, writes
    assert _named(replica_set, reads) == {"r1": 5, "r2": 5}, reads


# --------------------------------------------------------------------------- transactions


def test_read_only_transactions_run_on_a_replica(replica_set: ReplicaSet, rr_in: ProxyProcess) -> None:
    """BEGIN READ ONLY (psycopg read_only), BEGIN + SET TRANSACTION READ ONLY and
    default_transaction_read_only = on put the whole transaction on one replica, even though the
    primary is a read target (include_primary)."""
    with connect(rr_in, autocommit=False) as conn:
        conn.read_only = True
        for _ in range(4):
            ports = _ports(conn, 3)
            conn.commit()
            assert len(set(ports)) == 1 and ports[0] in replica_set.replica_ports, _named(replica_set, ports)
    with connect(rr_in) as conn:
        for _ in range(4):
            conn.execute("BEGIN")
            conn.execute("SET TRANSACTION READ ONLY")
            ports = _ports(conn, 3)
            conn.execute("COMMIT")
            assert len(set(ports)) == 1 and ports[0] in replica_set.replica_ports, _named(replica_set, ports)
    with psycopg.connect(rr_in.dsn(APP_USER, APP_PASSWORD, APP_DB), connect_timeout=10, prepare_threshold=None,
                         options="-c default_transaction_read_only=on") as conn:
        for _ in range(4):
            ports = _ports(conn, 2)  # psycopg opens a transaction: BEGIN, then the SELECTs
            conn.commit()
            assert len(set(ports)) == 1 and ports[0] in replica_set.replica_ports, _named(replica_set, ports)
    with connect(rr_in) as conn:
        conn.execute("SET default_transaction_read_only = on")
        for _ in range(4):
            conn.execute("BEGIN")
            ports = _ports(conn, 2)
            conn.execute("COMMIT")
            assert len(set(ports)) == 1 and ports[0] in replica_set.replica_ports, _named(replica_set, ports)
        # One Query holding the whole read-only transaction.
        cur = psycopg.ClientCursor(conn)
        conn.execute("SET default_transaction_read_only = off")
        for _ in range(2):
            cur.execute("BEGIN; SET TRANSACTION READ ONLY; SELECT inet_server_port(); COMMIT")
            while cur.description is None and cur.nextset():
                pass
            row = cur.fetchone()
            assert row is not None and row[0] in replica_set.replica_ports, row


def test_conservative_transactions_run_on_the_primary(replica_set: ReplicaSet, rr_ex: ProxyProcess) -> None:
    """read_write_strategy = conservative (default): a transaction that starts with a read still
    runs on the primary (a write may follow), even with exclude_primary."""
    with connect(rr_ex, autocommit=False) as conn:
        for _ in range(4):
            ports = _ports(conn, 2)
            conn.commit()
            assert set(ports) == {replica_set.primary.port}, _named(replica_set, ports)


def test_aggressive_first_statement_decides(
    replica_set: ReplicaSet, module_proxy_factory: ProxyMaker, table: str
) -> None:
    """read_write_strategy = aggressive: a transaction opened by a read runs on a replica, one
    opened by a write on the primary."""
    proxy = _make(replica_set, module_proxy_factory, load_balancing_strategy="round_robin",
                  read_write_split="exclude_primary", read_write_strategy="aggressive")
    with connect(proxy, autocommit=False) as conn:
        reads = []
        for _ in range(4):
            ports = _ports(conn, 2)
            conn.commit()
            assert len(set(ports)) == 1, ports
            reads.append(ports[0])
        assert set(reads) == replica_set.replica_ports, _named(replica_set, reads)
        for i in range(4):
            row = conn.execute(f"INSERT INTO {table} (id) VALUES (%s) RETURNING inet_server_port()",
                               (100 + i,)).fetchone()
            assert row is not None
            after = server_port(conn)  # same transaction: same server
            conn.commit()
            assert (row[0], after) == (replica_set.primary.port,) * 2


# --------------------------------------------------------------------------- overrides


def _role_conn(proxy: ProxyProcess, role: str) -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, APP_DB), autocommit=True, prepare_threshold=None,
                           connect_timeout=10, options=f"-c pgdog.role={role}")


def test_startup_parameter_role(replica_set: ReplicaSet, rr_in: ProxyProcess, table: str) -> None:
    """pgdog.role in the startup packet: primary keeps every read on the primary; replica keeps
    them off it, and sends even a write to a replica (the explicit role wins), which refuses it."""
    with _role_conn(rr_in, "primary") as conn:
        assert set(_ports(conn, 9)) == {replica_set.primary.port}
    with _role_conn(rr_in, "replica") as conn:
        ports = _ports(conn, 10)
        assert _named(replica_set, ports) == {"r1": 5, "r2": 5}
        with pytest.raises(psycopg.Error) as info:
            conn.execute(f"INSERT INTO {table} (id) VALUES (-7)")
        assert _sqlstate(info.value) == READ_ONLY_SQLSTATE, info.value
        assert server_port(conn) in replica_set.replica_ports  # still usable


def test_set_and_reset_role(replica_set: ReplicaSet, rr_in: ProxyProcess) -> None:
    """SET pgdog.role TO primary / replica steers the session's reads until RESET; a bad value is
    an error and changes nothing."""
    primary = replica_set.primary.port
    with connect(rr_in) as conn:
        conn.execute("SET pgdog.role TO primary")
        assert set(_ports(conn, 6)) == {primary}
        conn.execute("SET pgdog.role TO replica")
        assert set(_ports(conn, 6)) == replica_set.replica_ports
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SET pgdog.role TO nowhere")
        assert _sqlstate(info.value) == "22023", info.value
        assert set(_ports(conn, 4)) == replica_set.replica_ports
        conn.execute("RESET pgdog.role")
        assert _named(replica_set, _ports(conn, 9)) == {"primary": 3, "r1": 3, "r2": 3}


def test_set_role_inside_a_longer_text_and_by_the_extended_protocol(
    replica_set: ReplicaSet, rr_in: ProxyProcess
) -> None:
    """A SET pgdog.role the proxy cannot answer alone reaches the server, which keeps it as a
    placeholder setting; the proxy then takes the session's role from it: inside a
    multi-statement query, and prepared (the extended protocol, as JDBC sends everything)."""
    primary = replica_set.primary.port
    with connect(rr_in) as conn:
        conn.execute("SELECT 1; SET pgdog.role TO replica")
        assert set(_ports(conn, 6)) == replica_set.replica_ports
        conn.execute("SET pgdog.role TO 'primary'", prepare=True)
        assert set(_ports(conn, 6)) == {primary}
        conn.execute("RESET pgdog.role", prepare=True)
        assert _named(replica_set, _ports(conn, 9)) == {"primary": 3, "r1": 3, "r2": 3}


def test_set_role_follows_its_transaction_and_leaves_no_placeholder(
    replica_set: ReplicaSet, rr_in: ProxyProcess
) -> None:
    """A SET pgdog.role inside a transaction block counts if it commits, as any SET does; and the
    placeholder setting the server keeps is reset before another client gets that server."""
    with connect(rr_in) as conn, connect(rr_in) as other:
        conn.execute("BEGIN; SET pgdog.role TO replica; ROLLBACK")
        assert _named(replica_set, _ports(conn, 9)) == {"primary": 3, "r1": 3, "r2": 3}
        conn.execute("BEGIN; SET pgdog.role TO replica; COMMIT")
        assert set(_ports(conn, 6)) == replica_set.replica_ports
        seen = _ports(other, 9, "SELECT coalesce(current_setting('pgdog.role', true), '') = ''")
        assert all(seen), seen
        conn.execute("BEGIN")
        conn.execute("SET pgdog.role TO primary")
        conn.execute("ROLLBACK")
        assert set(_ports(conn, 6)) == replica_set.replica_ports


def test_set_local_role_in_transaction(replica_set: ReplicaSet, rr_ex: ProxyProcess) -> None:
    """SET LOCAL pgdog.role inside BEGIN decides that transaction only."""
    primary = replica_set.primary.port
    with connect(rr_ex) as conn:
        for _ in range(2):
            conn.execute("BEGIN")
            conn.execute("SET LOCAL pgdog.role TO replica")
            ports = _ports(conn, 2)
            conn.execute("COMMIT")
            assert len(set(ports)) == 1 and ports[0] in replica_set.replica_ports, ports
            # The next transaction is conservative again: the primary.
            conn.execute("BEGIN")
            assert set(_ports(conn, 2)) == {primary}
            conn.execute("COMMIT")
        conn.execute("BEGIN READ ONLY")
        conn.execute("SET LOCAL pgdog.role TO primary")
        assert set(_ports(conn, 2)) == {primary}
        conn.execute("COMMIT")
        # No transaction: SET LOCAL warns and does nothing; reads still rotate over the replicas.
        conn.execute("SET LOCAL pgdog.role TO primary")
        assert set(_ports(conn, 4)) == replica_set.replica_ports


def test_set_local_role_with_the_extended_protocol(replica_set: ReplicaSet, rr_ex: ProxyProcess) -> None:
    """SET LOCAL pgdog.role sent with the extended protocol, as JDBC sends everything (here
    psycopg's prepare=True: a named statement, then Binds of it) decides the transaction too.
    In a pipeline with BEGIN, as JDBC sends them, the same."""
    primary = replica_set.primary.port
    with connect(rr_ex) as conn:
        with conn.pipeline():
            conn.execute("BEGIN", prepare=False)
            conn.execute("SET LOCAL pgdog.role TO 'replica'", prepare=False)
            cur = conn.execute("SELECT inet_server_port() + %s", (0,))
        assert cur.fetchone()[0] in replica_set.replica_ports
        conn.execute("COMMIT")
        for _ in range(3):
            with conn.transaction():
                conn.execute("SET LOCAL pgdog.role TO 'replica'", prepare=True)
                ports = _ports(conn, 2)
            assert len(set(ports)) == 1 and ports[0] in replica_set.replica_ports, ports
            with conn.transaction():
                assert set(_ports(conn, 2)) == {primary}


def test_comment_hints(replica_set: ReplicaSet, rr_in: ProxyProcess) -> None:
    """/* pgdog_role: primary */ and /* pgdog_role: replica */ route one statement, and beat the
    session's pgdog.role."""
    primary = replica_set.primary.port
    with connect(rr_in) as conn:
        assert set(_ports(conn, 6, "/* pgdog_role: primary */ SELECT inet_server_port()")) == {primary}
        ports = _ports(conn, 6, "/* pgdog_role: replica */ SELECT inet_server_port()")
        assert set(ports) == replica_set.replica_ports, ports
        # Extended protocol too.
        for _ in range(3):
            row = conn.execute("/* pgdog_role: primary */ SELECT inet_server_port() + %s", (0,)).fetchone()
            assert row == (primary,)
        conn.execute("SET pgdog.role TO replica")
        assert set(_ports(conn, 3, "/* pgdog_role: primary */ SELECT inet_server_port()")) == {primary}


# --------------------------------------------------------------------------- pipelines, several statements


def test_pipeline_read_then_insert(replica_set: ReplicaSet, rr_ex: ProxyProcess, table: str) -> None:
    """psycopg pipeline mode: a SELECT then an INSERT sent together. The SELECT may run on a
    replica; the INSERT must run on the primary and succeed."""
    primary = replica_set.primary.port
    with connect(rr_ex) as conn:
        for i in range(6):
            with conn.pipeline():
                c1 = conn.execute("SELECT inet_server_port()")
                c2 = conn.execute(f"INSERT INTO {table} (id) VALUES (%s) RETURNING inet_server_port()", (200 + i,))
                c3 = conn.execute("SELECT inet_server_port()")
            r1, r2, r3 = c1.fetchone(), c2.fetchone(), c3.fetchone()
            assert r1 is not None and r1[0] in replica_set.replica_ports | {primary}
            assert r2 == (primary,), (i, r2)
            assert r3 is not None
    got = replica_set.sql(replica_set.primary, f"SELECT count(*) FROM {table} WHERE id BETWEEN 200 AND 205")
    assert got == "6"


def test_pipeline_insert_then_read(replica_set: ReplicaSet, rr_ex: ProxyProcess, table: str) -> None:
    """A pipeline that starts with an INSERT: the INSERT (and whatever rides along) succeeds."""
    with connect(rr_ex) as conn:
        for i in range(4):
            with conn.pipeline():
                c1 = conn.execute(f"INSERT INTO {table} (id) VALUES (%s) RETURNING inet_server_port()", (300 + i,))
                c2 = conn.execute("SELECT 1")
            assert c1.fetchone() == (replica_set.primary.port,)
            assert c2.fetchone() == (1,)


def test_multi_statement_query_with_a_write(replica_set: ReplicaSet, rr_ex: ProxyProcess, table: str) -> None:
    """One simple Query holding a SELECT and an INSERT runs entirely on the primary; one holding
    only SELECTs runs entirely on one replica."""
    primary = replica_set.primary.port
    with connect(rr_ex) as conn:
        cur = psycopg.ClientCursor(conn)
        for i in range(4):
            cur.execute(f"SELECT inet_server_port(); INSERT INTO {table} (id) VALUES ({400 + i}) "
                        "RETURNING inet_server_port()")
            first = cur.fetchall()
            assert cur.nextset()
            second = cur.fetchall()
            assert first == second == [(primary,)]
        for _ in range(4):
            cur.execute("SELECT inet_server_port(); SELECT inet_server_port()")
            first = cur.fetchall()
            assert cur.nextset()
            second = cur.fetchall()
            assert first == second and first[0][0] in replica_set.replica_ports


# --------------------------------------------------------------------------- raw pipelines


@pytest.fixture(scope="module")
def rr_ex_trust(replica_set: ReplicaSet, module_proxy_factory: ProxyMaker) -> ProxyProcess:
    """rr_ex for raw-socket clients (no password exchange)."""
    return _make(replica_set, module_proxy_factory, load_balancing_strategy="round_robin",
                 read_write_split="exclude_primary", auth_type="trust")


def _extended(sql: str) -> bytes:
    """Parse/Bind/Describe/Execute/Sync of an unnamed statement without parameters."""
    return (message(b"P", b"\0" + sql.encode() + b"\0" + struct.pack(">h", 0))
            + message(b"B", b"\0\0" + struct.pack(">hhh", 0, 0, 0))
            + message(b"D", b"P\0")
            + message(b"E", b"\0" + struct.pack(">i", 0))
            + message(b"S", b""))


def _answers(conn: RawConn, n: int) -> list[list[int] | str]:
    """For each of `n` requests (up to its ReadyForQuery): the ints of its DataRows, or its error."""
    out: list[list[int] | str] = []
    for _ in range(n):
        rows: list[int] = []
        error = None
        for t, body in conn.until(b"Z"):
            if t == b"D":
                (length,) = struct.unpack(">i", body[2:6])
                rows.append(int(body[6 : 6 + length]))
            elif t == b"E":
                error = error_fields(body).get("M", "?")
        out.append(error if error is not None else rows)
    return out


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_pipelined_requests_sent_at_once(
    replica_set: ReplicaSet, rr_ex_trust: ProxyProcess, table: str, protocol: str
) -> None:
    """SELECT, INSERT, SELECT sent in one write, each its own request (Query, or a batch ending
    in Sync): the SELECT may take a replica, the INSERT behind it must still reach the primary."""
    primary = replica_set.primary.port
    wrap = query if protocol == "simple" else _extended
    base = 600 if protocol == "simple" else 700
    conn = RawConn.trust_login(rr_ex_trust.host, rr_ex_trust.port, APP_USER, APP_DB)
    try:
        for i in range(4):
            conn.sock.sendall(wrap("SELECT inet_server_port()")
                              + wrap(f"INSERT INTO {table} (id) VALUES ({base + i}) RETURNING inet_server_port()")
                              + wrap("SELECT inet_server_port()"))
            first, insert, last = _answers(conn, 3)
            assert insert == [primary], (i, insert)
            assert isinstance(first, list) and first[0] in replica_set.replica_ports, first
            assert isinstance(last, list) and len(last) == 1, last
    finally:
        conn.close()
    got = replica_set.sql(replica_set.primary, f"SELECT count(*) FROM {table} WHERE id BETWEEN {base} AND {base + 3}")
    assert got == "4"


# --------------------------------------------------------------------------- more clients and modes


def test_asyncpg_transactions(replica_set: ReplicaSet, rr_in: ProxyProcess, table: str) -> None:
    """asyncpg's transaction(): read-only ones run on one replica, others on the primary."""

    async def run() -> tuple[list[list[int]], list[list[int]]]:
        conn = await asyncpg.connect(rr_in.url(APP_USER, APP_PASSWORD, APP_DB), timeout=10)
        try:
            ro, rw = [], []
            for _ in range(4):
                async with conn.transaction(readonly=True):
                    ro.append([await conn.fetchval("SELECT inet_server_port()") for _ in range(2)])
            for i in range(2):
                async with conn.transaction():
                    rw.append([await conn.fetchval("SELECT inet_server_port()"),
                               await conn.fetchval(f"INSERT INTO {table} (id) VALUES ($1) RETURNING inet_server_port()",
                                                   800 + i)])
            return ro, rw
        finally:
            await conn.close()

    ro, rw = asyncio.run(run())
    for ports in ro:
        assert len(set(ports)) == 1 and ports[0] in replica_set.replica_ports, ro
    assert {p for ports in ro for p in ports} == replica_set.replica_ports, ro
    assert {p for ports in rw for p in ports} == {replica_set.primary.port}, rw


def test_sql_prepare_execute_of_a_write(replica_set: ReplicaSet, rr_ex: ProxyProcess, table: str) -> None:
    """SQL PREPARE of an INSERT runs on the primary, and so does each EXECUTE of it."""
    with connect(rr_ex) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute(f"PREPARE ins_rw(int) AS INSERT INTO {table} (id) VALUES ($1) RETURNING inet_server_port()")
        for i in range(4):
            cur.execute(f"EXECUTE ins_rw({900 + i})")
            assert cur.fetchall() == [(replica_set.primary.port,)]


def test_session_mode_uses_the_primary(replica_set: ReplicaSet, module_proxy_factory: ProxyMaker) -> None:
    """Session mode keeps one server for the whole session: the primary, unless the client asks
    for a replica with pgdog.role."""
    proxy = module_proxy_factory(
        general=cluster_general(pooler_mode="session", load_balancing_strategy="round_robin",
                                read_write_split="exclude_primary"),
        databases=replica_set.databases(), users=cluster_users(),
    )
    for _ in range(3):
        with connect(proxy) as conn:
            assert set(_ports(conn, 4)) == {replica_set.primary.port}
    with _role_conn(proxy, "replica") as conn:
        ports = _ports(conn, 4)
        assert len(set(ports)) == 1 and ports[0] in replica_set.replica_ports, ports


@pytest.mark.parametrize("pin,then", [
    ("DECLARE pin_cur CURSOR WITH HOLD FOR SELECT inet_server_port()", "FETCH ALL pin_cur"),
    ("PREPARE pin_sel AS SELECT inet_server_port()", "INSERT INTO {table} (id) VALUES (-42) ON CONFLICT DO NOTHING"),
])
def test_request_after_pinning_to_a_replica_is_answered(
    replica_set: ReplicaSet, rr_ex_trust: ProxyProcess, table: str, pin: str, then: str
) -> None:
    """State that cannot move (a prepared statement, a WITH HOLD cursor) made on a replica pins
    the session there. What follows must be answered (within 1.5 s; it takes milliseconds), not left
    waiting: FETCH finds its cursor on that replica; an INSERT reaches some server (and fails
    there or succeeds), but does not hang."""
    conn = RawConn.trust_login(rr_ex_trust.host, rr_ex_trust.port, APP_USER, APP_DB)
    try:
        conn.sock.settimeout(1.5)
        conn.sock.sendall(query(pin))
        assert _answers(conn, 1) == [[]]
        conn.sock.sendall(query(then.format(table=table)))
        try:
            answer = _answers(conn, 1)[0]
        except TimeoutError:
            pytest.fail(f"no answer to {then!r} within 1.5 s after {pin!r}: the client hangs")
        if then.startswith("FETCH"):
            assert isinstance(answer, list) and answer[0] in replica_set.replica_ports, answer
    finally:
        conn.close()
