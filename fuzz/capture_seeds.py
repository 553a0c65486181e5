"""Seed corpora from real traffic. Run by hand, from the repository root, after `make setup`:

    .venv/bin/python -m fuzz.capture_seeds [--keep | --from CAPTURE]

It starts a PostgreSQL (the test harness's PgServer) and the proxy with ``capture_inputs`` on,
runs real clients through the proxy (psql with a COPY script; psycopg with simple, extended and
prepared statements, settings, errors, COPY in and out; asyncpg with prepared statements and a
binary COPY; pgbench -S and TPC-B, simple and prepared; the admin console through psql and
psycopg), stops the proxy and reads its input capture: every read of every client and server
connection, with passwords masked. From those streams it writes the wire seeds (both directions,
startup packets, logins, sessions, COPY streams), and from the statements seen the SQL, SET and
admin seeds. Config seeds are the example configurations and the files the proxy ran with;
``client_login`` also gets logins made with the sans-IO test kit, which authenticate for real
against the same kit in the target.

Every file it writes is small (streams are cut at a message boundary) and the total stays well
under a megabyte. It replaces the files it wrote before (names ``cap-*`` and ``gen-*``) and
leaves any other file in ``fuzz/corpus`` alone (hand-written seeds, crashes turned into seeds).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import psycopg

from fuzz.corpus import CORPUS_DIR
from fuzz.targets.session import AUTH_METHODS
from fuzz.targets.settings import PLAIN_NAME
from pgdog_ev.capture.format import In, decode_redacted, read_capture
from pgdog_ev.config.schema import GENERAL_KEYS
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.startup import CancelRequest, StartupMessage, parse_startup, startup_length
from state.events import Machine

WIRE_LIMIT = 12_000  # bytes of one stream seed (frontend_stream, backend_stream)
SESSION_LIMIT = 6_000  # client_session, server_session, copy_in, client_login
TEXT_LIMIT = 2_000
PER_TARGET = 60  # stream seeds per target, at most
TEXTS_PER_TARGET = 200  # statement seeds are small: more of them
PREFIXES = ("cap-", "gen-")
APP_USER, APP_PASSWORD, APP_DB, BENCH_DB = "app", "app_pw", "app", "bench"
ADMIN_PASSWORD = "admin_pw"
TEXT_TARGETS = frozenset({"sql_analyze", "sql_route", "set_parser", "admin_parser", "admin_console"})


# --- the run ------------------------------------------------------------------------------------


def _env(app: str, password: str = APP_PASSWORD) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGAPPNAME=app, PGCONNECT_TIMEOUT="10")
    return env


def _psql(proxy: object, app: str, *args: str, stdin: str | None = None, db: str = APP_DB,
          user: str = APP_USER, password: str = APP_PASSWORD) -> None:
    from tests.harness.admin import psql_path

    argv = [psql_path(), "-X", "-v", "ON_ERROR_STOP=1", "-h", proxy.host, "-p", str(proxy.port),  # type: ignore[attr-defined]
            "-U", user, "-d", db, *args]
    subprocess.run(argv, input=stdin, text=True, capture_output=True, env=_env(app, password), timeout=60,
                   check=True)


def _psycopg_workload(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, application_name="psycopg-simple", prepare_threshold=None) as c:
        c.execute("DROP TABLE IF EXISTS seeds_t")
        c.execute("CREATE TABLE seeds_t (id int PRIMARY KEY, v text, f float8, j jsonb)")
        c.execute("INSERT INTO seeds_t VALUES (1, 'one', 1.5, '{\"a\": 1}'), (2, 'two', NULL, NULL)")
        c.execute("SET application_name TO 'psycopg-simple'")
        c.execute("SET search_path TO public, \"$user\"")
        c.execute("SELECT set_config('statement_timeout', '5s', false)")
        c.execute("RESET statement_timeout")
        c.execute("SHOW search_path")
        with c.transaction():
            c.execute("SET LOCAL lock_timeout = '1s'")
            c.execute("UPDATE seeds_t SET v = 'uno' WHERE id = 1")
            c.execute("SELECT * FROM seeds_t FOR UPDATE")
        try:
            c.execute("SELECT 1/0")
        except psycopg.Error:
            pass
        c.execute("BEGIN; SELECT pg_advisory_xact_lock(42); COMMIT")
        c.execute("LISTEN seeds_channel")
        c.execute("NOTIFY seeds_channel, 'hello'")
        c.execute("UNLISTEN *")
        c.execute("DISCARD ALL")
    with psycopg.connect(dsn, autocommit=True, application_name="psycopg-extended", prepare_threshold=2) as c:
        for i in range(5):
            c.execute("SELECT v, f, j FROM seeds_t WHERE id = %s", (1 + i % 2,)).fetchall()
        c.execute("SELECT %s::int4, %s::text, %s::bytea, %s::float8, %s::bool",
                  (7, "x'y", b"\x00\x01\xff", 2.5, True)).fetchall()
        c.execute("SELECT %b::int8", (123,), binary=True).fetchall()
        c.execute("INSERT INTO seeds_t VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                  (3, "three", 3.0, psycopg.types.json.Jsonb({"b": [1, 2]})))
        cur = c.cursor()
        cur.executemany("INSERT INTO seeds_t (id, v) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        [(i, f"v{i}") for i in range(10, 20)])
        with c.transaction():
            c.execute("SAVEPOINT s1")
            c.execute("SET search_path TO pg_catalog, public")
            c.execute("ROLLBACK TO SAVEPOINT s1")
            c.execute("RELEASE s1")
        with c.cursor(name="seeds_cursor") as named, c.transaction():
            named.execute("SELECT id FROM seeds_t ORDER BY id")
            named.fetchmany(3)
    with psycopg.connect(dsn, autocommit=True, application_name="psycopg-copy", prepare_threshold=None) as c:
        cur = c.cursor()
        with cur.copy("COPY seeds_t (id, v) FROM STDIN") as copy:
            for i in range(100, 140):
                copy.write_row((i, f"row {i}\twith tab"))
        with cur.copy("COPY seeds_t (id, v, f) FROM STDIN (FORMAT csv)") as copy:
            copy.write('200,"a, b",1.5\n201,"quote ""x""",\n')
        try:
            with cur.copy("COPY seeds_t (id, v) FROM STDIN") as copy:
                copy.write_row((1, "duplicate"))
        except psycopg.Error:
            pass
        with cur.copy("COPY (SELECT id, v FROM seeds_t WHERE id < 110 ORDER BY id) TO STDOUT") as copy:
            for _row in copy.rows():
                pass


async def _asyncpg_workload(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10, statement_cache_size=0,
                                 server_settings={"application_name": "asyncpg"})
    try:
        await conn.fetchval("SELECT 41 + 1")
        stmt = await conn.prepare("SELECT v FROM seeds_t WHERE id = $1")
        for i in (1, 2, 3):
            await stmt.fetchval(i)
        async with conn.transaction():
            await conn.execute("INSERT INTO seeds_t (id, v) VALUES ($1, $2) ON CONFLICT DO NOTHING", 50, "fifty")
            await conn.fetch("SELECT * FROM seeds_t WHERE id = ANY($1::int[])", [1, 2, 50])
        await conn.copy_records_to_table("seeds_t", records=[(300 + i, f"bin {i}") for i in range(20)],
                                         columns=["id", "v"])
        try:
            await conn.execute("INSERT INTO seeds_t (id) VALUES (1)")
        except asyncpg.PostgresError:
            pass
        await conn.execute("SET TIME ZONE 'UTC'")
    finally:
        await conn.close()


def _pgbench(proxy: object, *args: str) -> None:
    from tests.harness.pgbench import pgbench_path

    argv = [pgbench_path(), "-h", proxy.host, "-p", str(proxy.port), "-U", APP_USER, *args, BENCH_DB]  # type: ignore[attr-defined]
    subprocess.run(argv, capture_output=True, text=True, env=_env(f"pgbench{args[0]}"), timeout=120, check=True)


ADMIN_COMMANDS = (
    "SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS id, state", "SHOW STATS", "SHOW STATS_TOTALS",
    "SHOW STATS_AVERAGES", "SHOW DATABASES", "SHOW USERS", "SHOW LISTS", "SHOW CONFIG", "SHOW PREPARED",
    "SHOW QUERY_CACHE", "SHOW EVENTS", "SHOW VERSION", "SHOW BANS", "SHOW REPLICATION", "SHOW WORKERS",
    "SHOW HELP", "SET default_pool_size TO 4", "SET checkout_timeout = '5000'", "PAUSE app; RESUME app",
    "RECONNECT app", "MAINTENANCE off", "HEALTHCHECK", "RELOAD", "show pools;", "SELECT 1",
)


def run_workloads() -> tuple[str, list[str]]:
    """Drive a proxy with capture on; returns the capture path and the admin texts sent."""
    from tests.harness.config import app_database, app_user
    from tests.harness.pgserver import PgServer
    from tests.harness.proxy import ProxyProcess

    pg = PgServer(name="fuzz-seeds", auth="scram-sha-256")
    pg.start()
    try:
        pg.create_user(APP_USER, APP_PASSWORD)
        pg.create_database(APP_DB, owner=APP_USER)
        pg.create_database(BENCH_DB, owner=APP_USER)
        subprocess.run([*_pgbench_init(pg)], capture_output=True, env=_env("pgbench-init"), timeout=120, check=True)
        proxy = ProxyProcess(
            general={"capture_inputs": True, "default_pool_size": 4, "pooler_mode": "transaction",
                     "checkout_timeout": 20000, "prepared_statements": "extended"},
            databases=[app_database(pg), app_database(pg, BENCH_DB, BENCH_DB)],
            users=[app_user(), app_user(BENCH_DB)],
            admin={"password": ADMIN_PASSWORD},
        )
        proxy.start()
        try:
            dsn = proxy.dsn(APP_USER, APP_PASSWORD, APP_DB)
            _psycopg_workload(dsn)
            asyncio.run(_asyncpg_workload(proxy.url(APP_USER, APP_PASSWORD, APP_DB)))
            script = textwrap.dedent("""\
                CREATE TEMP TABLE psql_t (a int, b text);
                COPY psql_t (a, b) FROM STDIN;
                1\tone
                2\t\\N
                \\.
                SELECT count(*) FROM psql_t;
                BEGIN;
                SET LOCAL work_mem = '8MB';
                SELECT * FROM seeds_t ORDER BY id LIMIT 5;
                COMMIT;
                \\copy (SELECT id, v FROM seeds_t ORDER BY id LIMIT 3) TO STDOUT
                """)
            _psql(proxy, "psql", "-f", "-", stdin=script)
            _psql(proxy, "psql", "-c", "SELECT version()", "-c", "SELECT now(), current_user")
            _pgbench(proxy, "-S", "-c", "2", "-t", "30", "-n")
            _pgbench(proxy, "-M", "prepared", "-c", "2", "-t", "15", "-n")
            _pgbench(proxy, "-M", "extended", "-c", "1", "-t", "10", "-n")
            for command in ADMIN_COMMANDS[:8]:
                try:
                    _psql(proxy, "psql-admin", "-c", command, db="admin", user="admin", password=ADMIN_PASSWORD)
                except subprocess.CalledProcessError:
                    pass
            admin_dsn = proxy.dsn("admin", ADMIN_PASSWORD, "admin")
            with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None,
                                 cursor_factory=psycopg.ClientCursor, application_name="psycopg-admin") as c:
                for command in ADMIN_COMMANDS[8:]:
                    try:
                        c.execute(command)
                    except psycopg.Error:
                        pass
        finally:
            proxy.stop()
        capture = proxy.event_log_path + ".inputs"
        keep = tempfile.mkdtemp(prefix="pgdog-ev-seeds-")
        kept = os.path.join(keep, "capture.inputs")
        os.replace(capture, kept)
        proxy.cleanup()
        return kept, list(ADMIN_COMMANDS)
    finally:
        pg.cleanup()


def _pgbench_init(pg: object) -> list[str]:
    from tests.harness.pgbench import pgbench_path

    return [pgbench_path(), "-i", "-s", "1", "-q", "-h", pg.host, "-p", str(pg.port), "-U", APP_USER, BENCH_DB]  # type: ignore[attr-defined]


# --- streams out of the capture ---------------------------------------------------------------


def connection_streams(path: str) -> tuple[dict[int, bytes], dict[int, bytes], dict[str, str | None]]:
    """Client streams and server streams by connection id, and the files the proxy ran with."""
    capture = read_capture(path)
    reads: dict[tuple[int, int], bytearray] = defaultdict(bytearray)
    for record in capture.records:
        if record.kind == In.READ:
            reads[(record.machine, record.id)] += record.payload
        elif record.kind == In.READ_REDACTED:
            reads[(record.machine, record.id)] += decode_redacted(record.payload)[1]
    clients = {ident: bytes(data) for (machine, ident), data in reads.items() if machine == Machine.CLIENT}
    servers = {ident: bytes(data) for (machine, ident), data in reads.items() if machine == Machine.SERVER}
    files = {"pgdog.toml": capture.header.pgdog_toml, "users.toml": capture.header.users_toml}
    return clients, servers, files


def messages(stream: bytes) -> list[tuple[int, int, int]]:
    """(type, start, end) of each whole typed message."""
    out, pos = [], 0
    while pos + 5 <= len(stream):
        end = pos + 1 + int.from_bytes(stream[pos + 1 : pos + 5], "big")
        if end > len(stream) or end < pos + 5:
            break
        out.append((stream[pos], pos, end))
        pos = end
    return out


def cut(stream: bytes, limit: int) -> bytes:
    """The longest prefix of whole messages within ``limit`` bytes."""
    end = 0
    for _mtype, _start, stop in messages(stream):
        if stop > limit:
            break
        end = stop
    return stream[:end]


def segments(stream: bytes, size: int, most: int = 6) -> list[bytes]:
    """Up to ``most`` consecutive pieces of about ``size`` bytes, cut at message boundaries."""
    out: list[bytes] = []
    while stream and len(out) < most:
        piece = cut(stream, size) or cut(stream, len(stream))
        if not piece:
            break
        out.append(piece)
        stream = stream[len(piece) :]
    return out


class ClientStream:
    """One client connection split into its phases."""

    def __init__(self, data: bytes) -> None:
        self.startup = b""
        self.packet: StartupMessage | CancelRequest | None = None
        pos = 0
        while True:
            length = startup_length(data[pos:])
            if length is None or len(data) - pos < length:
                break
            packet = parse_startup(data[pos : pos + length])
            pos += length
            if isinstance(packet, StartupMessage | CancelRequest):
                self.packet = packet
                break
        self.startup = data[:pos]
        self.typed = data[pos:]
        auth_end = 0
        for mtype, _start, stop in messages(self.typed):
            if mtype != fe.PASSWORD:
                break
            auth_end = stop
        self.session = self.typed[auth_end:]

    @property
    def app(self) -> str:
        if isinstance(self.packet, StartupMessage):
            return self.packet.params.get("application_name", "client").replace(" ", "-") or "client"
        return "cancel"

    @property
    def database(self) -> str:
        return self.packet.database if isinstance(self.packet, StartupMessage) else ""

    def texts(self) -> list[str]:
        """The SQL of every Query and Parse."""
        out = []
        for mtype, start, stop in messages(self.session):
            body = self.session[start + 5 : stop]
            try:
                if mtype == fe.QUERY:
                    out.append(fe.parse_query(body))
                elif mtype == fe.PARSE:
                    out.append(fe.parse_parse(body).sql)
            except Exception:  # masked or cut input: not a text seed
                continue
        return out

    def copy_streams(self) -> list[bytes]:
        """What follows each COPY ... FROM STDIN, up to and including its CopyDone or CopyFail."""
        found: list[bytes] = []
        start_at: int | None = None
        for mtype, start, stop in messages(self.session):
            body = self.session[start + 5 : stop]
            if mtype == fe.QUERY and b"from stdin" in body.lower():
                start_at = stop
            elif start_at is not None and mtype in (fe.COPY_DONE, fe.COPY_FAIL):
                found.append(self.session[start_at:stop])
                start_at = None
        return found


# --- seeds ----------------------------------------------------------------------------------------


class Corpus:
    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = defaultdict(dict)

    def add(self, target: str, name: str, data: bytes) -> None:
        seeds = self.files[target]
        if data in seeds.values() or len(seeds) >= (TEXTS_PER_TARGET if target in TEXT_TARGETS else PER_TARGET):
            return
        digest = hashlib.sha1(data).hexdigest()[:8]
        seeds[f"{name}-{digest}"] = data

    def add_texts(self, target: str, name: str, texts: Iterable[str]) -> None:
        for text in texts:
            raw = text.encode()
            if raw and len(raw) <= TEXT_LIMIT:
                self.add(target, name, raw)

    def write(self) -> None:
        for target, seeds in sorted(self.files.items()):
            directory = CORPUS_DIR / target
            directory.mkdir(parents=True, exist_ok=True)
            for old in directory.iterdir():
                if old.name.startswith(PREFIXES):
                    old.unlink()
            for name, data in sorted(seeds.items()):
                (directory / name).write_bytes(data)
            size = sum(len(d) for d in seeds.values())
            print(f"{target:<16} {len(seeds):>4} seeds {size:>8} bytes")


def captured_seeds(corpus: Corpus, path: str) -> None:
    clients, servers, files = connection_streams(path)
    for ident, data in sorted(clients.items()):
        stream = ClientStream(data)
        tag = f"cap-{stream.app}-{ident}"
        if stream.startup:
            corpus.add("startup_packet", tag, stream.startup)
        if stream.database == "admin":
            corpus.add_texts("admin_parser", tag, stream.texts())
            corpus.add_texts("admin_console", tag, stream.texts())
            continue
        if not isinstance(stream.packet, StartupMessage):
            continue
        if stream.typed:
            corpus.add("frontend_stream", tag, bytes(5) + cut(stream.typed, WIRE_LIMIT))
        session = cut(stream.session, SESSION_LIMIT)
        if session:
            corpus.add("client_session", tag, b"\x00\x00" + session)
            corpus.add("client_session", f"{tag}-session-mode", b"\x00\x01" + cut(session, 2000))
            scram = AUTH_METHODS.index("scram")
            corpus.add("client_login", tag, bytes((0, scram, 0)) + cut_login(data))
        for n, copy in enumerate(stream.copy_streams()):
            corpus.add("copy_in", f"{tag}-{n}", b"\x00\x00" + cut(copy, SESSION_LIMIT))
        texts = stream.texts()
        corpus.add_texts("sql_analyze", tag, texts)
        corpus.add_texts("sql_route", tag, texts)
        corpus.add_texts("set_parser", tag, [t for t in texts if _settings_text(t)])
    for ident, data in sorted(servers.items()):
        if data[:1] == b"N":
            data = data[1:]  # PostgreSQL's one-byte answer to the proxy's SSLRequest
        tag = f"cap-server-{ident}"
        for n, segment in enumerate(segments(data, WIRE_LIMIT // 3)):
            corpus.add("backend_stream", f"{tag}-{n}", bytes(5) + segment)
        first_ready = next((stop for mtype, _s, stop in messages(data) if mtype == ord("Z")), None)
        if first_ready is not None:
            for n, answers in enumerate(segments(data[first_ready:], SESSION_LIMIT // 3)):
                corpus.add("server_session", f"{tag}-{n}", bytes((0, 0, n % 3)) + answers)
    pgdog, users = files["pgdog.toml"], files["users.toml"]
    if pgdog is not None:
        corpus.add("config_files", "cap-proxy-run", pgdog.encode() + b"\0" + (users or "").encode())


def cut_login(data: bytes) -> bytes:
    """A client's first bytes: the startup packets, its authentication and a little of its session."""
    stream = ClientStream(data)
    return stream.startup + cut(stream.typed, 1500)


def _settings_text(text: str) -> bool:
    lowered = text.lower()
    return lowered.lstrip().startswith(("set", "reset", "begin", "start", "savepoint", "release", "rollback",
                                        "commit", "discard")) or "set_config" in lowered


def statekit_logins(corpus: Corpus, sessions: list[bytes]) -> None:
    """Logins that authenticate against the client_login target's own rig (same entropy), each
    followed by some captured session bytes."""
    from tests.unit import statekit

    for index, method in enumerate(AUTH_METHODS):
        sent: list[bytes] = []
        real_feed = statekit.feed

        def recording(machine: object, now: float, *chunks: bytes, _real: object = real_feed,
                      _sent: list[bytes] = sent) -> None:
            _sent.extend(bytes(c) for c in chunks)
            _real(machine, now, *chunks)  # type: ignore[operator]

        statekit.feed = recording  # type: ignore[assignment]
        try:
            r = statekit.rig("transaction", method)
            client = r.world.new_client(login_timeout_ms=5000)
            driver = statekit.FrontendDriver(r.world, client)
            driver.startup("app", "app")
            driver.authenticate(method, "app_pw")
        finally:
            statekit.feed = real_feed  # type: ignore[assignment]
        login = b"".join(c for c in sent)
        for n, session in enumerate([b"", *sessions[:4]]):
            corpus.add("client_login", f"gen-{method}-{n}", bytes((0, index, 0)) + login + cut(session, 1500))


def text_seeds(corpus: Corpus, admin_texts: list[str]) -> None:
    from tests.unit.test_sql_statements import CASES

    statements = [case[0] for case in CASES]
    corpus.add_texts("set_parser", "gen-statements", [s for s in statements if _settings_text(s)])
    corpus.add_texts("set_parser", "gen-values", [
        "SET search_path TO a, \"B c\", 'd e'", f"SET {PLAIN_NAME} TO 'x''y'", "SET LOCAL statement_timeout = 0",
        "SET TIME ZONE 'Europe/Paris'", "SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE", "SET a.b FROM CURRENT",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", "RESET ALL",
        "SELECT set_config('search_path', 'x, y', true)", "SET search_path = DEFAULT", "SET work_mem TO 0x10",
        "BEGIN; SET a.b = 1; SAVEPOINT s; SET a.b = 2; ROLLBACK TO s; RELEASE s; COMMIT",
        "SET datestyle TO postgres, dmy", "SET client_min_messages TO warning; RESET client_min_messages",
    ])
    corpus.add_texts("sql_analyze", "gen-statements", statements)
    corpus.add_texts("sql_route", "gen-statements", statements)
    corpus.add_texts("admin_parser", "gen-commands", admin_texts)
    corpus.add_texts("admin_console", "gen-commands", admin_texts)
    sets = [f"SET {spec.name} TO '{spec.render(spec.default)}'" for spec in GENERAL_KEYS if spec.changeable]
    corpus.add_texts("admin_parser", "gen-set", sets)
    corpus.add_texts("admin_console", "gen-set", sets[:20])


def startup_seeds(corpus: Corpus) -> None:
    """The packets no driver sent in the run: cancels, GSSENC, protocol 3.2 options."""
    from pgdog_ev.wire import startup as su

    packets = {
        "cancel": su.build_cancel_request(4242, b"\x01\x02\x03\x04"),
        "cancel-long-key": su.build_cancel_request(7, bytes(range(32))),
        "gssenc-then-startup": su.build_gssenc_request() + su.build_startup({"user": "app", "database": "app"}),
        "ssl-then-startup": su.build_ssl_request() + su.build_startup({"user": "app"}),
        "protocol-3.2": su.build_startup({"user": "app", "_pq_.test": "1"}, su.PROTOCOL_3_2),
        "options": su.build_startup({"user": "app", "options": "-c search_path=a,b --work-mem=8MB -cx=y\\ z"}),
        "replication": su.build_startup({"user": "app", "database": "app", "replication": "database"}),
    }
    for name, packet in packets.items():
        corpus.add("startup_packet", f"gen-{name}", packet)
        corpus.add("client_login", f"gen-{name}", b"\x00\x00\x00" + packet)


def channel_seeds(corpus: Corpus) -> None:
    """The workers' channel: the messages supervisor and workers exchange, and one bad frame."""
    from pgdog_ev.workers.channel import encode

    streams: dict[str, list[dict[str, object]]] = {
        "cancel": [{"op": "cancel", "pid": 1073741825, "secret": "a1b2c3d4"}],
        "gather-answer": [{"op": "gather", "req": 3, "request": {"show": "pools", "args": []}},
                          {"op": "answer", "id": 3, "result": {"columns": [["database", "text"]],
                                                               "rows": [["app"]]}}],
        "metrics-nan": [{"op": "answer", "id": 9, "result": {"families": [
            {"name": "pgdog_pool_banned", "samples": [[{"database": "app"}, float("nan")]]}]}}],
        "ready-stop": [{"op": "ready", "pid": 4242, "port": 6432}, {"op": "stop"}, {"op": "stop_now"}],
    }
    for name, messages in streams.items():
        corpus.add("worker_channel", f"gen-{name}", bytes([7]) + b"".join(encode(m) for m in messages))
    bad = (5).to_bytes(4, "big") + b"[1,2]"
    corpus.add("worker_channel", "gen-bad-after-good", bytes([3]) + encode({"op": "stop"}) + bad)


def tls_seeds(corpus: Corpus) -> None:
    """A real client's first flight, a Query sent over TLS, and one corrupted record."""
    from fuzz.targets.tls import _contexts
    from pgdog_ev.tls.stream import TlsStream

    _, client_ctx = _contexts()
    hello = TlsStream(client_ctx, server_side=False, server_hostname="127.0.0.1")
    hello.start()
    corpus.add("tls_stream", "gen-client-hello", bytes([0, 7]) + hello.take_outgoing())
    corpus.add("tls_stream", "gen-query", bytes([1, 7]) + b"Q\x00\x00\x00\x0dSELECT 1;\x00")
    corpus.add("tls_stream", "gen-bad-record", bytes([2, 7]) + bytes(40) + b"\x01")


def config_seeds(corpus: Corpus) -> None:
    examples = Path(__file__).resolve().parent.parent / "ops" / "examples"
    for directory in (examples, examples / "replicas", examples / "sharded"):
        pair = (directory / "pgdog.toml").read_bytes() + b"\0" + (directory / "users.toml").read_bytes()
        corpus.add("config_files", f"gen-example-{directory.name}", pair)
    for doc in range(3):
        for op in range(8):
            corpus.add("config_mutate", f"gen-edit-{doc}-{op}", bytes((doc, op, 1, 2, 3, op, 5, 7)))


def main() -> int:
    """``--from CAPTURE`` reuses a capture kept by ``--keep`` instead of running the workloads."""
    args = sys.argv[1:]
    if "--from" in args:
        capture, admin_texts = args[args.index("--from") + 1], list(ADMIN_COMMANDS)
    else:
        capture, admin_texts = run_workloads()
    corpus = Corpus()
    captured_seeds(corpus, capture)
    sessions = [data[2:] for data in corpus.files["client_session"].values()]
    statekit_logins(corpus, sessions)
    text_seeds(corpus, admin_texts)
    startup_seeds(corpus)
    config_seeds(corpus)
    channel_seeds(corpus)
    tls_seeds(corpus)
    corpus.write()
    if "--keep" in args or "--from" in args:
        print(f"capture kept: {capture}")
    else:
        os.unlink(capture)
    total = sum(p.stat().st_size for p in CORPUS_DIR.rglob("*") if p.is_file())
    print(f"corpus: {total} bytes in {sum(1 for p in CORPUS_DIR.rglob('*') if p.is_file())} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
