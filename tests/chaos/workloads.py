"""The client workloads that run through pgdog-ev while a chaos case injects its fault.

Every request a workload makes is an `Op`: when it started and ended, whether it succeeded, and
the error (class, SQLSTATE, message) if not. Writers insert rows with ids they choose and record an
id as acknowledged only once its COMMIT returned; readers check every result they get against the
known contents of the read table, so a corrupted or mixed-up result is caught, not just an error.

A client blocked beyond `deadline` seconds is cut off from the client side (its socket shut down,
its asyncpg task cancelled, pgbench terminated) and the op is marked `killed`: that is how a test
tells "the proxy ended the request with an error" from "the request would have hung".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psycopg

from tests.harness.pgbench import pgbench_env, pgbench_path

READ_ROWS = 300


def read_payload(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()


EXPECTED_READ = [(i, read_payload(i)) for i in range(1, READ_ROWS + 1)]
READ_SQL = "SELECT id, payload FROM chaos_reads ORDER BY id"


@dataclass
class Op:
    who: str
    what: str
    start: float
    end: float
    ok: bool
    error: str = ""
    sqlstate: str | None = None
    killed: bool = False
    corrupt: bool = False

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Tally:
    """Ops and acknowledged ids of all workloads of one case (appends from many threads)."""

    ops: list[Op] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def ack(self, ident: int) -> None:
        with self.lock:
            self.acked.append(ident)

    def ok_since(self, who: str, since: float) -> int:
        with self.lock:
            return sum(1 for o in self.ops if o.who == who and o.ok and o.start >= since)


_ids = itertools.count(int(time.time() * 1000) % 10**9 * 1000)
_ids_lock = threading.Lock()


def next_id() -> int:
    with _ids_lock:
        return next(_ids)


def _classify(e: BaseException) -> tuple[str, str | None]:
    sqlstate = getattr(e, "sqlstate", None)
    text = " ".join(str(e).split())[:160]
    return f"{type(e).__name__}: {text}", sqlstate


class Watchdog:
    """Cuts off ops that run past their deadline. Each thread registers what to call to abort its
    current op; the watchdog calls it once the deadline passes."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._armed: dict[int, tuple[float, Callable[[], None], list[bool]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="watchdog")

    @contextlib.contextmanager
    def arm(self, abort: Callable[[], None]) -> Iterator[list[bool]]:
        """Within the block, `abort` runs if the block lasts longer than the deadline; the yielded
        one-item list becomes [True] if it did."""
        fired = [False]
        key = threading.get_ident()
        with self._lock:
            self._armed[key] = (time.monotonic() + self.deadline, abort, fired)
        try:
            yield fired
        finally:
            with self._lock:
                self._armed.pop(key, None)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            now = time.monotonic()
            with self._lock:
                due = [(k, v) for k, v in self._armed.items() if v[0] <= now]
                for k, _ in due:
                    del self._armed[k]
            for _, (_, abort, fired) in due:
                fired[0] = True
                with contextlib.suppress(Exception):
                    abort()

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _shutdown_fd(fd: int) -> None:
    """Shut a libpq socket down under its feet: libpq sees EOF and the blocked call returns."""
    s = socket.socket(fileno=os.dup(fd))
    try:
        s.shutdown(socket.SHUT_RDWR)
    finally:
        s.close()


class Workload:
    """A client thread that repeats one kind of request until stopped."""

    def __init__(self, name: str, tally: Tally, watchdog: Watchdog) -> None:
        self.name = name
        self.tally = tally
        self.watchdog = watchdog
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True, name=name)
        self.crash: BaseException | None = None

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as e:  # reported by the test: a workload must never die of its own bug
            self.crash = e

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


class PsycopgClient(Workload):
    """psycopg 3 through the proxy: `writer` runs BEGIN; INSERT id; SELECT it back; COMMIT, and
    `reader` reads the whole read table. `prepared` makes psycopg prepare every statement (named
    server-side statements, which the proxy must keep working across pooled servers)."""

    def __init__(self, name: str, tally: Tally, watchdog: Watchdog, dsn: str, role: str,
                 prepared: bool) -> None:
        super().__init__(name, tally, watchdog)
        self.dsn, self.role, self.prepared = dsn, role, prepared

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(self.watchdog.deadline),
                               prepare_threshold=0 if self.prepared else None)

    def _request(self, conn: psycopg.Connection) -> bool:
        if self.role == "writer":
            ident = next_id()
            with conn.transaction():
                conn.execute("INSERT INTO chaos_acks (id, who) VALUES (%s, %s)", (ident, self.name))
                row = conn.execute("SELECT count(*) FROM chaos_acks WHERE id = %s", (ident,)).fetchone()
            self.tally.ack(ident)
            return row is not None and row[0] == 1
        rows = conn.execute(READ_SQL).fetchall()
        return [tuple(r) for r in rows] == EXPECTED_READ

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self.stopping.is_set():
            start = time.monotonic()
            what = "connect" if conn is None else self.role
            fired = [False]
            try:
                if conn is None:
                    conn = self._connect()
                    good = True
                else:
                    fd = conn.pgconn.socket
                    with self.watchdog.arm(lambda fd=fd: _shutdown_fd(fd)) as fired:
                        good = self._request(conn)
                self.tally.add(Op(self.name, what, start, time.monotonic(), ok=good, corrupt=not good,
                                  error="" if good else "wrong result"))
                if fired[0] and conn is not None:
                    conn.close()
                    conn = None
            except Exception as e:  # psycopg.Error, and anything else a dying link makes libpq raise
                error, sqlstate = _classify(e)
                killed = what == "connect" and "timeout expired" in str(e)
                self.tally.add(Op(self.name, what, start, time.monotonic(), ok=False, error=error,
                                  sqlstate=sqlstate, killed=killed or fired[0]))
                if conn is not None:
                    conn.close()
                conn = None
                self.stopping.wait(0.05)
        if conn is not None:
            conn.close()


class AsyncpgClients(Workload):
    """asyncpg through the proxy: a writer task (a transaction inserting a known id, statements
    prepared as asyncpg always does) and a reader task, on one event loop in this thread."""

    def __init__(self, name: str, tally: Tally, watchdog: Watchdog, dsn: str) -> None:
        super().__init__(name, tally, watchdog)
        self.dsn = dsn

    def run(self) -> None:
        asyncio.run(self._main_async())

    async def _main_async(self) -> None:
        await asyncio.gather(self._loop(f"{self.name}-writer", "writer"), self._loop(f"{self.name}-reader", "reader"))

    async def _request(self, conn: asyncpg.Connection, who: str, role: str) -> bool:
        if role == "writer":
            ident = next_id()
            async with conn.transaction():
                await conn.execute("INSERT INTO chaos_acks (id, who) VALUES ($1, $2)", ident, who)
                n = await conn.fetchval("SELECT count(*) FROM chaos_acks WHERE id = $1", ident)
            self.tally.ack(ident)
            return n == 1
        rows = await conn.fetch(READ_SQL)
        return [tuple(r) for r in rows] == EXPECTED_READ

    async def _loop(self, who: str, role: str) -> None:
        conn: asyncpg.Connection | None = None
        deadline = self.watchdog.deadline
        while not self.stopping.is_set():
            start = time.monotonic()
            what = "connect" if conn is None else role
            try:
                if conn is None:
                    conn = await asyncpg.connect(self.dsn, timeout=deadline)
                    good = True
                else:
                    good = await asyncio.wait_for(self._request(conn, who, role), deadline)
                self.tally.add(Op(who, what, start, time.monotonic(), ok=good, corrupt=not good,
                                  error="" if good else "wrong result"))
            except TimeoutError as e:
                self.tally.add(Op(who, what, start, time.monotonic(), ok=False, error=_classify(e)[0], killed=True))
                conn = await self._drop(conn)
            except Exception as e:  # asyncpg raises more than its own classes when a link dies
                error, sqlstate = _classify(e)
                self.tally.add(Op(who, what, start, time.monotonic(), ok=False, error=error, sqlstate=sqlstate))
                conn = await self._drop(conn)
                await asyncio.sleep(0.05)
        await self._drop(conn)

    @staticmethod
    async def _drop(conn: asyncpg.Connection | None) -> None:
        if conn is not None:
            conn.terminate()
        return None


PGBENCH_SCRIPT = """\
BEGIN;
INSERT INTO chaos_bench (case_no, client) VALUES (:case_no, :client_id);
SELECT count(*) FROM chaos_reads WHERE id <= 10;
END;
"""


PGBENCH_CLIENTS = 2


class Pgbench:
    """pgbench -M extended for a fixed time through the proxy, inserting one row per transaction
    tagged with the case number: afterwards at least `processed` rows of the case must exist."""

    def __init__(self, host: str, port: int, user: str, password: str, db: str, case_no: int,
                 seconds: int, workdir: str) -> None:
        self.case_no, self.seconds = case_no, seconds
        script = os.path.join(workdir, "chaos_pgbench.sql")
        with open(script, "w") as f:
            f.write(PGBENCH_SCRIPT)
        self.argv = [pgbench_path(), "-n", "-c", str(PGBENCH_CLIENTS), "-j", "1", "-T", str(seconds), "-M", "extended",
                     "-D", f"case_no={case_no}", "-f", script, "-h", host, "-p", str(port), "-U", user, db]
        self.env = pgbench_env(password)
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.output = ""
        self.killed = False
        self.elapsed = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, start_new_session=True)

    def wait(self, grace: float) -> None:
        """Wait until `seconds + grace` after the start; past that, terminate it (killed)."""
        assert self.proc is not None
        left = self.started + self.seconds + grace - time.monotonic()
        try:
            self.output, _ = self.proc.communicate(timeout=max(0.1, left))
        except subprocess.TimeoutExpired:
            self.killed = True
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.output, _ = self.proc.communicate(timeout=10)
        self.elapsed = time.monotonic() - self.started

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    @property
    def processed(self) -> int:
        m = re.search(r"number of transactions actually processed: (\d+)", self.output)
        return int(m.group(1)) if m else 0

    @property
    def aborted_clients(self) -> int:
        return len(re.findall(r"client \d+ aborted", self.output))

    def summary(self) -> dict[str, Any]:
        return {"exit": self.returncode, "processed": self.processed, "aborted_clients": self.aborted_clients,
                "elapsed": round(self.elapsed, 1), "killed": self.killed}
