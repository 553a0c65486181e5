"""The extended protocol through a transaction-mode pool of one server: pipelines with several
Syncs (and errors in the middle), portals fetched in chunks (PortalSuspended), Describe, empty
queries, notices and ParameterStatus reach the right client, exactly as PostgreSQL sends them.

The raw-socket tests send the same bytes to PostgreSQL directly and through the proxy and compare
the replies message by message."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import psycopg
import pytest

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.startup import build_startup
from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.clients import BackgroundClient, connect, connect_direct
from tests.harness.config import app_database, app_user

REPLY_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    # trust: the raw-socket tests log in without a password.
    return module_proxy_factory(
        general={
            "auth_type": "trust",
            "default_pool_size": 1,
            "pooler_mode": "transaction",
            "checkout_timeout": 10000,
        },
        databases=[app_database(pg)],
        users=[app_user()],
    )


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


# --------------------------------------------------------------------------- psycopg pipelines


def test_pipeline_with_several_syncs(proxy):
    a, b = connect(proxy), connect(proxy)
    try:
        pid = _pid(b)
        for rnd in range(3):
            with a.pipeline() as p:
                c1 = a.execute("SELECT %s::int + 1", (rnd,))
                c2 = a.execute("SELECT %s::text || 'x', pg_backend_pid()", (str(rnd),))
                p.sync()
                c3 = a.execute("SELECT g FROM generate_series(1, %s) g", (rnd + 3,))
                p.sync()
                c4 = a.execute("SELECT current_setting('application_name') IS NOT NULL")
                c5 = a.execute("SELECT %s::int * 2", (rnd,))
            assert c1.fetchone() == (rnd + 1,)
            assert c2.fetchone() == (f"{rnd}x", pid)
            assert [r[0] for r in c3.fetchall()] == list(range(1, rnd + 4))
            assert c4.fetchone() == (True,)
            assert c5.fetchone() == (rnd * 2,)
            # The one server is back in the pool right after the pipeline.
            assert _pid(b) == pid
        assert a.execute("SELECT 'after'").fetchone() == ("after",)
    finally:
        a.close()
        b.close()


def _pipeline_error_scenario(conn: psycopg.Connection, table: str) -> list:
    out: list = []
    with conn.pipeline() as p:
        r1 = conn.execute(f"INSERT INTO {table} VALUES (1) RETURNING id")
        bad = conn.execute("SELECT 1/0")
        try:
            bad.fetchone()
        except psycopg.errors.DivisionByZero:
            out.append("DivisionByZero")
        # Sent after the error, before the Sync: skipped by the server.
        try:
            conn.execute(f"INSERT INTO {table} VALUES (2) RETURNING id").fetchone()
        except psycopg.errors.PipelineAborted:
            out.append("PipelineAborted")
        p.sync()
        r3 = conn.execute(f"INSERT INTO {table} VALUES (3) RETURNING id")
        r4 = conn.execute("SELECT %s::int", (4,))
        p.sync()
        r5 = conn.execute("SELECT 5")
    out.append(r1.fetchone() if r1.pgresult else None)
    out += [r3.fetchone(), r4.fetchone(), r5.fetchone()]
    out.append(conn.execute(f"SELECT array_agg(id ORDER BY id) FROM {table}").fetchone())
    out.append(conn.info.transaction_status)
    return out


def test_pipeline_error_skips_rest_of_sync_block(pg, proxy):
    uid = _uid()
    with connect_direct(pg) as d:
        d.execute(f"CREATE TABLE public.pipe_direct_{uid} (id int)")
        d.execute(f"CREATE TABLE public.pipe_proxy_{uid} (id int)")
        want = _pipeline_error_scenario(d, f"public.pipe_direct_{uid}")
    # The first Sync block is one implicit transaction: the error rolls back its INSERT too.
    assert want[:2] == ["DivisionByZero", "PipelineAborted"]
    assert want[-2] == ([3],)
    with connect(proxy) as a, connect(proxy) as b:
        got = _pipeline_error_scenario(a, f"public.pipe_proxy_{uid}")
        assert got == want
        pid = _pid(a)
        assert _pid(b) == pid  # the server went back to the pool
        assert a.execute("SELECT 'ok'").fetchone() == ("ok",)
        # In an explicit transaction, an error in a pipeline leaves it failed until ROLLBACK.
        with a.pipeline() as p:
            a.execute("BEGIN")
            a.execute("SELECT 1")
            bad = a.execute("SELECT 1/0")
            with pytest.raises(psycopg.errors.DivisionByZero):
                p.sync()
        assert a.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        assert bad.pgresult is None or bad.pgresult.status != psycopg.pq.ExecStatus.TUPLES_OK
        a.execute("ROLLBACK")
        assert _pid(b) == pid
        assert a.execute("SELECT 6").fetchone() == (6,)


def test_pipelines_interleaved_with_another_client(proxy):
    """Between two Syncs of one pipeline the server may serve another client; nothing mixes."""
    with BackgroundClient(proxy) as bg, connect(proxy) as a:
        for rnd in range(15):
            with a.pipeline() as p:
                cs = []
                for block in range(3):
                    cs.append(a.execute("SELECT %s::int, %s::int", (rnd, block)))
                    cs.append(a.execute("SELECT g FROM generate_series(1, %s) g", (block + 1,)))
                    p.sync()
            for block in range(3):
                assert cs[2 * block].fetchone() == (rnd, block)
                assert [r[0] for r in cs[2 * block + 1].fetchall()] == list(range(1, block + 2))
        bg.wait_for_more()


def test_pipeline_with_prepared_statements(proxy):
    """psycopg prepares in pipeline mode (Parse of a named statement in the same batch as its
    first Bind) while another client shares the server between Syncs."""
    with BackgroundClient(proxy) as bg, connect(proxy, prepare_threshold=0) as a:
        for rnd in range(10):
            with a.pipeline() as p:
                cs = []
                for block in range(3):
                    cs.append(a.execute("SELECT %s::int + %s::int", (rnd, block), prepare=True))
                    cs.append(a.execute("SELECT %s::text || 'p'", (str(block),), prepare=True))
                    p.sync()
            for block in range(3):
                assert cs[2 * block].fetchone() == (rnd + block,)
                assert cs[2 * block + 1].fetchone() == (f"{block}p",)
        bg.wait_for_more()


def _prepared_after_error_scenario(conn: psycopg.Connection) -> list:
    out: list = []
    for rnd in range(3):
        # (psycopg raises the error wherever it reads it: at an execute or at the Sync.)
        with pytest.raises(psycopg.errors.DivisionByZero), conn.pipeline() as p:
            conn.execute("SELECT 1/0")
            # Prepared (a named Parse) after the error, before the Sync: skipped by the server.
            conn.execute("SELECT %s::int * 7", (rnd,), prepare=True)
            p.sync()
        out.append(conn.execute("SELECT %s::int * 7", (rnd,), prepare=True).fetchone())
        out.append(conn.info.transaction_status)
    return out


def test_statement_prepared_after_an_error_in_a_pipeline(pg, proxy):
    """psycopg prepares a statement in a pipeline behind an error: the server skips its Parse,
    psycopg forgets it, and preparing it again later works through the proxy as directly. (The
    raw-socket test above checks the proxy's side of it message by message.)"""
    with connect_direct(pg, prepare_threshold=0) as d:
        want = _prepared_after_error_scenario(d)
    assert want[::2] == [(0,), (7,), (14,)]
    with BackgroundClient(proxy) as bg, connect(proxy, prepare_threshold=0) as a:
        assert _prepared_after_error_scenario(a) == want
        bg.wait_for_more()


# --------------------------------------------------------------------------- portals


def test_psycopg_named_cursor_in_chunks(proxy):
    with connect(proxy, autocommit=False) as a, connect(proxy) as b:
        with a.cursor(name=f"cur_{_uid()}") as cur:
            cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
            seen = []
            while rows := cur.fetchmany(128):
                seen += [r[0] for r in rows]
                assert a.execute("SELECT %s::int", (len(seen),)).fetchone() == (len(seen),)
            assert seen == list(range(1, 1001))
            cur.scroll(0, mode="absolute")
            assert cur.fetchone()[0] == 1
        a.commit()
        assert b.execute("SELECT 'b'").fetchone() == ("b",)


def test_asyncpg_cursor_and_prefetch(proxy):
    url = proxy.url(APP_USER, APP_PASSWORD, APP_DB)

    async def main() -> None:
        a = await asyncpg.connect(url, timeout=10)
        b = await asyncpg.connect(url, timeout=10, statement_cache_size=0)
        try:
            async with a.transaction():
                cur = await a.cursor("SELECT g FROM generate_series(1, $1::int) g", 1000)
                got = []
                while chunk := await cur.fetch(97):
                    got += [r["g"] for r in chunk]
                    assert await a.fetchval("SELECT $1::int + 0", len(got)) == len(got)
                assert got == list(range(1, 1001))
                total = 0
                async for r in a.cursor("SELECT g FROM generate_series(1, 500) g", prefetch=33):
                    total += r["g"]
                assert total == 500 * 501 // 2
                cur = await a.cursor("SELECT g FROM generate_series(1, 100) g")
                await cur.forward(50)
                assert await cur.fetchrow() == (51,)
            assert await b.fetchval("SELECT 7") == 7
            assert await a.fetchval("SELECT 8") == 8
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- describe, empty, notices


def test_describe_statements_and_portals(proxy):
    url = proxy.url(APP_USER, APP_PASSWORD, APP_DB)

    async def main() -> None:
        a = await asyncpg.connect(url, timeout=10)
        try:
            stmt = await a.prepare("SELECT $1::int AS n, $2::text AS s, now() AS t, $3::numeric[] AS arr")
            assert [t.name for t in stmt.get_parameters()] == ["int4", "text", "numeric[]"]
            assert [(x.name, x.type.name) for x in stmt.get_attributes()] == [
                ("n", "int4"), ("s", "text"), ("t", "timestamptz"), ("arr", "numeric[]"),
            ]
            row = await stmt.fetchrow(1, "x", [1, 2])
            assert (row["n"], row["s"], [int(v) for v in row["arr"]]) == (1, "x", [1, 2])
            ddl = await a.prepare("SELECT")
            assert ddl.get_attributes() == ()
        finally:
            await a.close()

    asyncio.run(main())
    with connect(proxy) as c:
        cur = c.execute("SELECT %s::int AS num, 'x'::varchar(5) AS v, NULL::bytea AS b", (1,))
        assert [d.name for d in cur.description] == ["num", "v", "b"]
        assert [d.type_code for d in cur.description] == [23, 1043, 17]
        cur = c.cursor()
        cur.execute("SELECT 1 AS one WHERE false")
        assert [d.name for d in cur.description] == ["one"] and cur.fetchall() == []
        cur.execute("DO $$ BEGIN END $$")
        assert cur.description is None


def test_empty_query(proxy):
    with connect(proxy) as c:
        cur = c.execute("")
        assert cur.pgresult.status == psycopg.pq.ExecStatus.EMPTY_QUERY
        assert cur.description is None
        cur = c.execute("-- only a comment")
        assert cur.pgresult.status == psycopg.pq.ExecStatus.EMPTY_QUERY
        assert c.execute("SELECT 1").fetchone() == (1,)
        c.autocommit = False
        c.execute("")
        c.execute("SELECT 2")
        c.commit()


def test_notices_reach_only_their_client(proxy):
    uid = _uid()
    a, b = connect(proxy), connect(proxy)
    na: list[str] = []
    nb: list[str] = []
    a.add_notice_handler(lambda d: na.append(d.message_primary))
    b.add_notice_handler(lambda d: nb.append(d.message_primary))
    try:
        a.execute(f"DO $$ BEGIN RAISE NOTICE 'hi %', 'a_{uid}'; END $$")
        assert na == [f"hi a_{uid}"]
        assert b.execute("SELECT 1").fetchone() == (1,)
        assert nb == []
        b.execute(f"DO $$ BEGIN RAISE NOTICE 'hi %', 'b_{uid}'; RAISE WARNING 'w %', 'b_{uid}'; END $$")
        assert nb == [f"hi b_{uid}", f"w b_{uid}"]
        # Extended protocol (a function called with a parameter), inside a transaction.
        b.execute(
            f"CREATE FUNCTION public.notice_{uid}(text) RETURNS int LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE NOTICE 'fn %', $1; RETURN 1; END $$"
        )
        assert nb == [f"hi b_{uid}", f"w b_{uid}"]
        with a.transaction():
            assert a.execute(f"SELECT public.notice_{uid}(%s)", (f"arg_{uid}",)).fetchone() == (1,)
            a.execute(f"DROP TABLE IF EXISTS no_such_table_{uid}")
        assert na == [f"hi a_{uid}", f"fn arg_{uid}", f'table "no_such_table_{uid}" does not exist, skipping']
        assert a.execute("SELECT 2").fetchone() == (2,)
        assert nb == [f"hi b_{uid}", f"w b_{uid}"]
    finally:
        a.close()
        b.close()


def test_parameter_status_reaches_only_its_client(proxy):
    uid = _uid()
    a, b = connect(proxy), connect(proxy)
    try:
        b_app = b.info.parameter_status("application_name")
        a.execute(f"SET application_name = 'pipe_a_{uid}'")
        assert a.info.parameter_status("application_name") == f"pipe_a_{uid}"
        assert b.execute("SELECT current_setting('application_name')").fetchone() == (b_app,)
        assert b.info.parameter_status("application_name") == b_app
        b.execute(f"SET application_name = 'pipe_b_{uid}'")
        assert a.execute("SELECT current_setting('application_name')").fetchone() == (f"pipe_a_{uid}",)
        assert a.info.parameter_status("application_name") == f"pipe_a_{uid}"
        assert b.info.parameter_status("application_name") == f"pipe_b_{uid}"
        a.execute("SET DateStyle TO 'SQL, DMY'")
        assert a.info.parameter_status("DateStyle") == "SQL, DMY"
        assert b.execute("SELECT 1").fetchone() == (1,)
        assert b.info.parameter_status("DateStyle") == "ISO, MDY"
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------- raw protocol


class Raw:
    """A protocol-3 client on a raw socket; `roundtrip` returns the replies as comparable tokens."""

    def __init__(self, host: str, port: int, user: str, database: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=REPLY_TIMEOUT)
        self.sock.settimeout(REPLY_TIMEOUT)
        self.buf = b""
        self.sock.sendall(build_startup({"user": user, "database": database}))
        msgs = self._read(lambda ms: bool(ms) and ms[-1][0] == "Z")
        types = [t for t, _ in msgs]
        assert "E" not in types and "K" in types, msgs
        self.pid, self.secret = be.parse_backend_key_data(next(b for t, b in msgs if t == "K"))

    def _read(self, done: Callable[[list[tuple[str, bytes]]], bool]) -> list[tuple[str, bytes]]:
        msgs: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + REPLY_TIMEOUT
        while not done(msgs):
            while len(self.buf) >= 5:
                (n,) = struct.unpack(">I", self.buf[1:5])
                if len(self.buf) < 1 + n:
                    break
                msgs.append((chr(self.buf[0]), self.buf[5 : 1 + n]))
                self.buf = self.buf[1 + n :]
                if done(msgs):
                    return msgs
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"no complete reply within {REPLY_TIMEOUT}s; got {msgs}")
            assert chunk, f"connection closed; got {msgs}"
            self.buf += chunk
        return msgs

    def roundtrip(self, data: bytes, until: str = "Z", count: int = 1) -> list[str]:
        self.sock.sendall(data)
        msgs = self._read(lambda ms: sum(t == until for t, _ in ms) >= count)
        return [_token(t, b) for t, b in msgs]

    def close(self) -> None:
        try:
            self.sock.sendall(fe.terminate())
        finally:
            self.sock.close()


def _token(t: str, body: bytes) -> str:
    if t in "EN":
        f = be.parse_error_fields(body)
        return f"{t}:{f.get('C')}:{f.get('M')}"
    if t == "D":
        return "D:" + ",".join("NULL" if v is None else bytes(v).decode() for v in be.parse_data_row(body))
    if t == "C":
        return "C:" + be.parse_command_complete(body)
    if t == "Z":
        return "Z:" + be.parse_ready_for_query(body).decode()
    if t == "T":
        return "T:" + ",".join(f"{f.name}/{f.type_oid}" for f in be.parse_row_description(body))
    if t == "t":
        return "t:" + ",".join(map(str, be.parse_parameter_description(body)))
    if t == "S":
        name, value = be.parse_parameter_status(body)
        return f"S:{name}={value}"
    return t


def _bind(portal: str, stmt: str, params: list[bytes | None]) -> bytes:
    return fe.bind(portal, stmt, [], params, [])


def _raw_scenario(r: Raw, uid: str) -> list[list[str]]:
    """Replies to a fixed sequence of extended-protocol requests (all independent of the server
    pid and of the connection's user)."""
    out = []
    q = "SELECT g, g * $1::int FROM generate_series(1, 10) g"
    # Three Sync blocks sent at once; an error in the second skips the rest of that block.
    out.append(
        r.roundtrip(
            fe.parse("", "SELECT $1::int + 1") + _bind("", "", [b"1"]) + fe.execute("") + fe.sync()
            + fe.parse("", "SELECT 1/0") + _bind("", "", []) + fe.execute("")
            + fe.parse("", "SELECT 3") + _bind("", "", []) + fe.execute("") + fe.sync()
            + fe.parse("", "SELECT 4") + _bind("", "", []) + fe.execute("") + fe.sync(),
            count=3,
        )
    )
    # Describe of a statement and of a portal; a named statement and portal.
    out.append(
        r.roundtrip(
            fe.parse(f"st_{uid}", q) + fe.describe("S", f"st_{uid}") + _bind("p1", f"st_{uid}", [b"2"])
            + fe.describe("P", "p1") + fe.execute("p1") + fe.close("P", "p1") + fe.close("S", f"st_{uid}")
            + fe.sync()
        )
    )
    # Row limits inside a transaction: PortalSuspended, then the rest, across Syncs.
    out.append(r.roundtrip(fe.query("BEGIN")))
    out.append(r.roundtrip(fe.parse("", q) + _bind("cur", "", [b"3"]) + fe.execute("cur", 4) + fe.sync()))
    out.append(r.roundtrip(fe.execute("cur", 4) + fe.sync()))
    out.append(r.roundtrip(fe.query("SELECT 'in between'")))
    out.append(r.roundtrip(fe.execute("cur", 4) + fe.execute("cur", 4) + fe.sync()))
    out.append(r.roundtrip(fe.query("COMMIT")))
    # Row limits outside a transaction, with Flush instead of Sync (the server stays with us).
    out.append(r.roundtrip(fe.parse("", q) + _bind("", "", [b"1"]) + fe.execute("", 3) + fe.flush(), until="s"))
    out.append(r.roundtrip(fe.execute("", 3) + fe.flush(), until="s"))
    out.append(r.roundtrip(fe.execute("", 0) + fe.sync()))
    # Empty queries, simple and extended.
    out.append(r.roundtrip(fe.query("")))
    out.append(r.roundtrip(fe.parse("", "") + _bind("", "", []) + fe.describe("P", "") + fe.execute("") + fe.sync()))
    # Statement without result columns; notice; ParameterStatus.
    out.append(
        r.roundtrip(
            fe.parse("", f"DROP TABLE IF EXISTS no_such_{uid}") + fe.describe("S", "") + _bind("", "", [])
            + fe.execute("") + fe.sync()
        )
    )
    out.append(r.roundtrip(fe.query(f"SET application_name = 'raw_{uid}'")))
    out.append(r.roundtrip(fe.query("SELECT current_setting('application_name')")))
    # Errors in Parse and in Bind, then recovery.
    out.append(r.roundtrip(fe.parse("", "SELEC 1") + _bind("", "", []) + fe.execute("") + fe.sync()))
    out.append(r.roundtrip(fe.parse("", "SELECT $1::int") + _bind("", "", [b"x"]) + fe.execute("") + fe.sync()))
    out.append(r.roundtrip(_bind("", "nonexistent_stmt", []) + fe.execute("") + fe.sync()))
    # A named statement used across Sync blocks: Parse, then Describe, then Bind/Execute.
    out.append(r.roundtrip(fe.parse(f"later_{uid}", "SELECT $1::int * 3 AS x") + fe.sync()))
    out.append(r.roundtrip(fe.query("SELECT 'between'")))
    out.append(r.roundtrip(fe.describe("S", f"later_{uid}") + fe.sync()))
    out.append(r.roundtrip(_bind("", f"later_{uid}", [b"5"]) + fe.execute("") + fe.sync()))
    out.append(r.roundtrip(fe.close("S", f"later_{uid}") + fe.sync()))
    out.append(r.roundtrip(fe.describe("S", f"later_{uid}") + fe.sync()))
    # A named Parse that fails creates nothing; Close of unknown names is not an error.
    out.append(r.roundtrip(fe.parse(f"bad_{uid}", "SELEC 1") + fe.sync()))
    out.append(r.roundtrip(_bind("", f"bad_{uid}", []) + fe.execute("") + fe.sync()))
    out.append(r.roundtrip(fe.close("S", "never_prepared") + fe.close("P", "never_bound") + fe.sync()))
    # Describe of an unknown portal; Execute of an unknown portal.
    out.append(r.roundtrip(fe.describe("P", "no_portal") + fe.sync()))
    out.append(r.roundtrip(fe.execute("no_portal") + fe.sync()))
    out.append(r.roundtrip(fe.query("SELECT 'done'")))
    return out


def test_raw_extended_protocol_matches_postgres(pg, proxy):
    uid = _uid()
    direct = Raw(pg.host, pg.port, "postgres", APP_DB)  # pg_hba: postgres is trusted over TCP
    try:
        want = _raw_scenario(direct, uid)
    finally:
        direct.close()
    assert want[0] == [
        "1", "2", "D:2", "C:SELECT 1", "Z:I",
        "1", "E:22012:division by zero", "Z:I",  # 1/0 is folded when planning, at Bind
        "1", "2", "D:4", "C:SELECT 1", "Z:I",
    ]
    assert want[8][-1] == "s" and want[13][-3].startswith("N:00000:")
    with BackgroundClient(proxy) as bg:
        r = Raw(proxy.host, proxy.port, APP_USER, APP_DB)
        try:
            got = _raw_scenario(r, uid)
        finally:
            r.close()
        bg.wait_for_more()
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {i}: proxy {g} != PostgreSQL {w}"


def _skipped_in_batch_scenario(r: Raw, uid: str) -> Iterator[list[str]]:
    """What an error in an extended-protocol batch makes PostgreSQL skip up to the Sync: named
    Parses (the statements do not exist afterwards) and simple Queries sent before the Sync,
    which otherwise run in their turn. No ReadyForQuery comes for a skipped Query."""
    ok = fe.parse("", "SELECT 1") + _bind("", "", []) + fe.execute("")
    bad = fe.execute(f"no_portal_{uid}")
    yield r.roundtrip(bad + fe.parse(f"p_{uid}", "SELECT 4") + fe.sync())
    yield r.roundtrip(_bind("", f"p_{uid}", []) + fe.execute("") + fe.sync())
    # The batch fails before the Query: one error, one ReadyForQuery (the Sync's).
    yield r.roundtrip(bad + fe.query("SELECT 'skipped'") + fe.sync())
    # ... with two Queries, and a Parse of a named statement, skipped alike.
    yield r.roundtrip(
        bad + fe.query("SELECT 'a'") + fe.query("SELECT 'b'") + fe.parse(f"n_{uid}", "SELECT 2") + fe.sync()
    )
    yield r.roundtrip(_bind("", f"n_{uid}", []) + fe.execute("") + fe.sync())
    # The batch succeeds: the Query runs in turn, then the Sync's ReadyForQuery.
    yield r.roundtrip(ok + fe.query("SELECT 'ran'") + fe.sync(), count=2)
    # The Query itself fails: it has its ReadyForQuery, and what follows it runs.
    yield r.roundtrip(ok + fe.query("SELECT 1/0") + ok + fe.sync(), count=2)
    # Success, a Query, then a failure later in the batch: the second Query is skipped.
    yield r.roundtrip(ok + fe.query("SELECT 'first'") + bad + fe.query("SELECT 'second'") + fe.sync(), count=2)
    # A named statement prepared in the failed part is not there afterwards.
    yield r.roundtrip(
        fe.parse(f"m_{uid}", "SELECT 3") + bad + fe.query("SELECT 'c'") + fe.sync()
    )
    yield r.roundtrip(_bind("", f"m_{uid}", []) + fe.execute("") + fe.sync())
    # A Query the proxy answers itself (DEALLOCATE ALL) comes in its turn, or not at all.
    yield r.roundtrip(ok + fe.query("DEALLOCATE ALL") + fe.sync(), count=2)
    yield r.roundtrip(bad + fe.query("DEALLOCATE ALL") + fe.sync())
    # The same inside an explicit transaction: the failure fails the transaction.
    yield r.roundtrip(fe.query("BEGIN"))
    yield r.roundtrip(bad + fe.query("SELECT 'in txn'") + fe.sync())
    yield r.roundtrip(fe.query("SELECT 'after'"))
    yield r.roundtrip(fe.query("ROLLBACK"))
    yield r.roundtrip(fe.query("SELECT 'done'"))


def test_what_a_failed_batch_skips_matches_postgres(pg, proxy):
    """A Query skipped by the server with the rest of a failed batch owes no ReadyForQuery: the
    proxy counts none for it, so the client gets PostgreSQL's replies and the server goes back to
    the pool (of one: the other client runs) after each batch's Sync. A skipped named Parse
    leaves no statement behind in the proxy either."""
    uid = _uid()
    direct = Raw(pg.host, pg.port, "postgres", APP_DB)
    try:
        want = list(_skipped_in_batch_scenario(direct, uid))
    finally:
        direct.close()
    assert want[0] == [f"E:34000:portal \"no_portal_{uid}\" does not exist", "Z:I"], want[0]
    assert want[1] == [f"E:26000:prepared statement \"p_{uid}\" does not exist", "Z:I"], want[1]
    assert want[5] == ["1", "2", "D:1", "C:SELECT 1", "T:?column?/25", "D:ran", "C:SELECT 1", "Z:I", "Z:I"], want[3]
    with BackgroundClient(proxy) as bg:
        r = Raw(proxy.host, proxy.port, APP_USER, APP_DB)
        try:
            got = []
            for step in _skipped_in_batch_scenario(r, uid):
                got.append(step)
                if step[-1] == "Z:I":
                    bg.wait_for_more()  # the one server is back in the pool
        finally:
            r.close()
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {i}: proxy {g} != PostgreSQL {w}"


def _ended_by_a_query_scenario(r: Raw, disturb: Callable[[], None], int4div: int) -> Iterator[list[str]]:
    """A Query or FunctionCall after unsynced messages ends their implicit transaction: a SET
    among them stands if it succeeds and is rolled back with it if it fails."""

    def set_(value: str) -> bytes:
        return fe.parse("", f"SET work_mem = '{value}'") + _bind("", "", []) + fe.execute("")

    def div(a: bytes, b: bytes) -> bytes:
        return fe.function_call(int4div, [0], [a, b], 0)

    def show() -> list[str]:
        disturb()  # (another client had the server and set its own work_mem there)
        return r.roundtrip(fe.query("SHOW work_mem"))

    yield r.roundtrip(set_("7MB") + fe.query("SELECT 1/0") + fe.sync(), count=2)
    yield show()
    yield r.roundtrip(set_("7MB") + fe.query("SELECT 1") + fe.sync(), count=2)
    yield show()
    yield r.roundtrip(set_("13MB") + div(b"1", b"0") + fe.sync(), count=2)
    yield show()
    yield r.roundtrip(set_("13MB") + div(b"6", b"2") + fe.sync(), count=2)
    yield show()
    # A failure before the Query: the server skips it, the Sync answers.
    yield r.roundtrip(set_("15MB") + fe.execute("no_such_portal") + fe.query("SELECT 2") + fe.sync())
    yield show()
    # In a transaction the failed Query fails the transaction; the SET goes with its ROLLBACK.
    yield r.roundtrip(fe.query("BEGIN"))
    yield r.roundtrip(set_("17MB") + fe.query("SELECT 1/0") + fe.sync(), count=2)
    yield r.roundtrip(fe.query("ROLLBACK"))
    yield show()
    # ... but not with a ROLLBACK TO a savepoint taken after it: the SET ran before the Query.
    yield r.roundtrip(fe.query("BEGIN"))
    savepoint = fe.parse("", "SAVEPOINT sp") + _bind("", "", []) + fe.execute("")
    yield r.roundtrip(set_("19MB") + savepoint + fe.query("SELECT 1/0") + fe.sync(), count=2)
    yield r.roundtrip(fe.query("ROLLBACK TO SAVEPOINT sp"))
    yield r.roundtrip(fe.query("COMMIT"))
    yield show()
    # A BEGIN Query makes the implicit transaction the block's: ROLLBACK undoes the SET.
    yield r.roundtrip(set_("21MB") + fe.query("BEGIN") + fe.sync(), count=2)
    yield r.roundtrip(fe.query("ROLLBACK"))
    yield show()
    # A ROLLBACK Query ends the implicit transaction (with a warning), the SET with it.
    yield r.roundtrip(set_("23MB") + fe.query("ROLLBACK") + fe.sync(), count=2)
    yield show()
    # Several statements in one Query share its implicit transaction the same way.
    yield r.roundtrip(fe.query("SET work_mem = '25MB'; BEGIN"))
    yield r.roundtrip(fe.query("ROLLBACK"))
    yield show()
    # A COMMIT among the messages ends the block; the SET after it is in the implicit
    # transaction the failing Query rolls back.
    yield r.roundtrip(fe.query("BEGIN"))
    commit = fe.parse("", "COMMIT") + _bind("", "", []) + fe.execute("")
    yield r.roundtrip(commit + set_("27MB") + fe.query("SELECT 1/0") + fe.sync(), count=2)
    yield show()
    # A BEGIN among them opens a block the failing Query only aborts: the SET before the
    # savepoint outlives ROLLBACK TO it, and COMMIT keeps it.
    begin = fe.parse("", "BEGIN") + _bind("", "", []) + fe.execute("")
    yield r.roundtrip(begin + set_("29MB") + savepoint + fe.query("SELECT 1/0") + fe.sync(), count=2)
    yield r.roundtrip(fe.query("ROLLBACK TO SAVEPOINT sp"))
    yield r.roundtrip(fe.query("COMMIT"))
    yield show()


def test_a_failing_query_rolls_back_the_unsynced_messages_before_it(pg, proxy):
    """PostgreSQL runs a Query sent before the Sync of an extended-protocol batch in the batch's
    implicit transaction. The proxy used to record the batch's SET even when the Query then
    failed and PostgreSQL rolled it back, and put it on the next server it gave the client."""
    with connect_direct(pg) as c:
        (int4div,) = c.execute("SELECT 'int4div'::regproc::oid").fetchone()
    direct = Raw(pg.host, pg.port, "postgres", APP_DB)
    try:
        want = list(_ended_by_a_query_scenario(direct, lambda: None, int4div))
    finally:
        direct.close()
    assert [w[1] for w in want if w[0].startswith("T:work_mem")] == [
        "D:4MB", "D:7MB", "D:7MB", "D:13MB", "D:13MB", "D:13MB", "D:19MB", "D:19MB", "D:19MB", "D:19MB",
        "D:19MB", "D:29MB",
    ]
    other = connect(proxy)
    other.execute("SET work_mem = '9MB'")

    def disturb() -> None:
        assert other.execute("SHOW work_mem").fetchone() == ("9MB",)

    r = Raw(proxy.host, proxy.port, APP_USER, APP_DB)
    try:
        got = list(_ended_by_a_query_scenario(r, disturb, int4div))
    finally:
        r.close()
        other.close()
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {i}: proxy {g} != PostgreSQL {w}"


@pytest.mark.parametrize("failing", ["query", "execute"])
def test_an_advisory_lock_before_an_error_still_pins(pg, proxy, failing):
    """A session advisory lock taken by an Execute outlives the rollback of the failing Query
    behind it, or of a failing Execute (whose error makes the server skip the Query after it):
    session locks are not transactional, so its client keeps the server. The other client of
    this pool of one waits for it and then finds no lock on its session."""
    probe = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
             " AND pid = pg_backend_pid()")
    fail = (fe.query("SELECT 1/0") if failing == "query"
            else fe.parse("", "SELECT 1/0") + _bind("", "", []) + fe.execute("") + fe.query("SELECT 1"))
    batch = fe.parse("", "SELECT pg_advisory_lock(4242)") + _bind("", "", []) + fe.execute("") + fail + fe.sync()
    count = 2 if failing == "query" else 1
    direct = Raw(pg.host, pg.port, "postgres", APP_DB)
    try:
        want = [direct.roundtrip(batch, count=count), direct.roundtrip(fe.query(probe))]
    finally:
        direct.close()
    assert want[1][1] == "D:1"
    r = Raw(proxy.host, proxy.port, APP_USER, APP_DB)
    with ThreadPoolExecutor(1) as pool:
        try:
            got = [r.roundtrip(batch, count=count), r.roundtrip(fe.query(probe))]
            other = pool.submit(_probe_through, proxy, probe)
        finally:
            r.close()  # (its server is cleaned, the lock released, then lent to the other client)
        assert other.result(timeout=REPLY_TIMEOUT) == 0
    assert got == want


def _probe_through(proxy, probe: str) -> int:
    with connect(proxy) as conn:
        return conn.execute(probe).fetchone()[0]


def test_query_refused_inside_an_extended_batch(pg, proxy_factory):
    """session_state = "refuse": a Query refused behind unsynced extended-protocol messages is
    answered in its turn, after theirs, and fails their implicit transaction as an error in that
    Query would in PostgreSQL; behind a batch that failed, it is skipped as PostgreSQL would
    skip it."""
    proxy = proxy_factory(
        general={"auth_type": "trust", "default_pool_size": 1, "pooler_mode": "transaction",
                 "checkout_timeout": 10000, "session_state": "refuse"},
        databases=[app_database(pg)],
        users=[app_user()],
    )
    uid = _uid()
    table = f"public.refused_batch_{uid}"
    with connect_direct(pg) as d:
        d.execute(f"CREATE TABLE {table} (v int)")
    insert = fe.parse("", f"INSERT INTO {table} VALUES (1)") + _bind("", "", []) + fe.execute("")
    refused = "E:0A000:LISTEN is not supported in transaction mode"
    with BackgroundClient(proxy) as bg:
        r = Raw(proxy.host, proxy.port, APP_USER, APP_DB)
        try:
            got = r.roundtrip(insert + fe.query("LISTEN refused_batch") + fe.sync(), count=2)
            assert got == ["1", "2", "C:INSERT 0 1", refused, "Z:I", "Z:I"]
            bg.wait_for_more()
            got = r.roundtrip(fe.execute(f"no_portal_{uid}") + fe.query("LISTEN refused_batch") + fe.sync())
            assert got == [f"E:34000:portal \"no_portal_{uid}\" does not exist", "Z:I"]
            bg.wait_for_more()
            assert r.roundtrip(fe.query(f"SELECT count(*) FROM {table}")) == ["T:count/20", "D:0", "C:SELECT 1", "Z:I"]
        finally:
            r.close()
    # The same batch with a Query that fails in PostgreSQL: the INSERT is rolled back alike.
    direct = Raw(pg.host, pg.port, "postgres", APP_DB)
    try:
        got = direct.roundtrip(insert + fe.query("SELECT 1/0") + fe.sync(), count=2)
        assert got == ["1", "2", "C:INSERT 0 1", "E:22012:division by zero", "Z:I", "Z:I"]
        assert direct.roundtrip(fe.query(f"SELECT count(*) FROM {table}"))[1] == "D:0"
    finally:
        direct.close()
