"""A well-behaved client that keeps querying while a test attacks the proxy, and measures itself.

Hostile-client tests must show more than "the proxy survived": the clients that did nothing wrong
must not notice. A `Bystander` runs checked queries in a thread, paced a little so it does not load
the proxy itself, and files each query's latency under the phase that was current when the query
*started*. A query that the attack stalls is therefore counted against the attack, however late it
returns, and a proxy blocked for the whole attack shows up as one huge sample, not as no sample.

    with Bystander(proxy) as by:
        by.baseline()                 # quiet period first
        with by.phase("flood"):
            ...attack...
        by.check("flood")             # every query succeeded, p95 within the bound

The bound (see `check`) is deliberately loose: p95 below max(20 x baseline p95, 250 ms) and no
query over 5 s. A loaded two-core box stretches latencies by a few times, never by seconds; a proxy
whose loop is blocked by one bad client stalls everyone for as long as it is blocked.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.admin import admin_connect, pool_row, show
from tests.harness.proxy import ProxyProcess

#: p95 during an attack may be this many times the baseline p95 ...
FACTOR = 20.0
#: ... or this many seconds, whichever is larger.
FLOOR = 0.25
#: No single query may take longer than this.
MAX_ONE = 5.0


@dataclass
class PhaseStats:
    """Latencies (seconds) of the queries started during one phase, and what went wrong."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float | None = None

    @property
    def n(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def p95(self) -> float:
        return self.percentile(0.95)

    @property
    def max(self) -> float:
        return max(self.latencies, default=float("nan"))

    def summary(self) -> str:
        return (f"{self.name}: n={self.n} p50={self.p50 * 1000:.1f}ms p95={self.p95 * 1000:.1f}ms "
                f"max={self.max * 1000:.1f}ms errors={len(self.errors)}")


class Bystander:
    """A psycopg client of `proxy` running `SELECT n + 1` every `pause` seconds in a thread."""

    def __init__(
        self, proxy: ProxyProcess, user: str = APP_USER, password: str = APP_PASSWORD, dbname: str = APP_DB,
        pause: float = 0.005, application_name: str = "bystander",
    ) -> None:
        self.conn = psycopg.connect(
            proxy.dsn(user, password, dbname), autocommit=True, prepare_threshold=None, connect_timeout=10,
            application_name=application_name,
        )
        self.pause = pause
        self.phases: dict[str, PhaseStats] = {}
        self._current = self._new_phase("setup")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def _new_phase(self, name: str) -> PhaseStats:
        assert name not in self.phases, f"phase {name!r} used twice"
        stats = PhaseStats(name, started=time.monotonic())
        self.phases[name] = stats
        return stats

    # -- the client thread -----------------------------------------------------

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            with self._lock:
                phase = self._current
            t0 = time.perf_counter()
            try:
                row = self.conn.execute("SELECT %s::int + 1", (i,)).fetchone()
                if row != (i + 1,):
                    raise AssertionError(f"query {i} returned {row!r}")
            except Exception as e:  # reported by check(); the connection may be unusable now
                phase.errors.append(f"{type(e).__name__}: {e}")
                if self.conn.closed or self.conn.broken:
                    return
            else:
                phase.latencies.append(time.perf_counter() - t0)
            self._stop.wait(self.pause)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """End the thread, letting a query in flight finish (it is counted in its phase)."""
        self._stop.set()
        self._thread.join(MAX_ONE * 4)
        with contextlib.suppress(Exception):
            self.conn.close()

    # -- phases ----------------------------------------------------------------

    def _switch(self, name: str) -> PhaseStats:
        with self._lock:
            now = time.monotonic()
            self._current.ended = now
            self._current = self._new_phase(name)
            return self._current

    def _wait_samples(self, stats: PhaseStats, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while stats.n < n:
            assert not stats.errors, stats.summary() + f" {stats.errors[:3]}"
            assert self._thread.is_alive(), "the bystander thread ended"
            assert time.monotonic() < deadline, f"bystander: only {stats.n} queries in {timeout}s ({stats.summary()})"
            time.sleep(0.01)

    def baseline(self, samples: int = 60, timeout: float = 20.0) -> PhaseStats:
        """Measure the quiet latency: `samples` queries with nothing else going on."""
        stats = self._switch("baseline")
        self._wait_samples(stats, samples, timeout)
        self._switch("between")
        return stats

    @contextlib.contextmanager
    def phase(self, name: str, min_samples: int = 10, timeout: float = 20.0) -> Iterator[PhaseStats]:
        """Queries started inside the block count for `name`. On leaving, waits (bounded) until at
        least `min_samples` of them completed, so a short attack still has a sample to judge; the
        wait ends early on a query error, which `check` then reports."""
        stats = self._switch(name)
        try:
            yield stats
            deadline = time.monotonic() + timeout
            while stats.n < min_samples and not stats.errors and self._thread.is_alive():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        finally:
            self._switch(f"after {name}")

    # -- verdicts --------------------------------------------------------------

    def bound(self) -> float:
        """The p95 an attack phase must stay under: max(FACTOR x baseline p95, FLOOR)."""
        base = self.phases.get("baseline")
        assert base is not None and base.n, "no baseline measured"
        return max(FACTOR * base.p95, FLOOR)

    def check(self, name: str, min_samples: int = 10) -> PhaseStats:
        """Every query of phase `name` succeeded, there were at least `min_samples`, p95 is under
        `bound()` and none took more than MAX_ONE seconds."""
        stats = self.phases[name]
        base = self.phases["baseline"]
        where = f"{stats.summary()} (baseline {base.summary()}, bound p95 < {self.bound() * 1000:.0f}ms)"
        assert not stats.errors, f"bystander queries failed during {where}: {stats.errors[:5]}"
        assert stats.n >= min_samples, f"too few bystander queries during {where}"
        assert stats.p95 < self.bound(), f"bystander slowed down during {where}"
        assert stats.max < MAX_ONE, f"a bystander query stalled during {where}"
        return stats

    def report(self) -> str:
        """One line per phase, for the test's output (`pytest -s`) or a failure message."""
        return "\n".join(s.summary() for s in self.phases.values() if s.n or s.errors)


def attack_rounds(min_rounds: int = 3, min_seconds: float = 1.0) -> Iterator[int]:
    """Round numbers for an attack loop: at least `min_rounds`, and more until the attack has lasted
    `min_seconds`, so that the bystander's latency during it is measured over a real stretch of time
    (most single bad packets take the proxy well under a millisecond)."""
    start = time.monotonic()
    i = 0
    while i < min_rounds or time.monotonic() - start < min_seconds:
        yield i
        i += 1


# --------------------------------------------------------------------------- the daemon after an attack


def open_fds(pid: int) -> int:
    """How many file descriptors process `pid` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def assert_daemon_clean(proxy: ProxyProcess) -> None:
    """The daemon still runs, and nothing it logged is a traceback or an internal error: bad input
    must end in the client's error, never in the proxy's own failure."""
    assert proxy.returncode is None, f"the proxy exited ({proxy.returncode}):\n{proxy.log_tail()}"
    log = proxy.log_text()
    for bad in ("Traceback", "internal error"):
        assert bad not in log, f"{bad!r} in the proxy log:\n{proxy.log_tail(60)}"


def settled_pool(proxy: ProxyProcess, poll: Callable[..., Any], timeout: float = 10.0) -> dict[str, Any]:
    """SHOW POOLS' row for app/app once no server is lent, logging in, being cleaned or held in a
    transaction and no client waits: nothing an attacker started is still holding a server. (The
    proxy needs the admin console, `admin=ADMIN`.)"""
    busy = ("sv_active", "sv_idle_xact", "sv_used", "sv_login", "cl_waiting")
    with admin_connect(proxy) as adm:

        def settled() -> dict[str, Any] | None:
            row = pool_row(adm)
            return row if all(row[k] == 0 for k in busy) else None

        return poll(settled, timeout=timeout, what="the pool to settle (no server lent, cleaned or logging in)")


def attackers_hold_no_server(proxy: ProxyProcess) -> list[dict[str, Any]]:
    """SHOW CLIENTS of the app database, the bystander and admin clients left out: every one is
    logged in, and none has a server or waits for one (a half-sent request must not cost a server).
    The bystander may hold one at that instant, which is why SHOW POOLS cannot tell this alone."""
    with admin_connect(proxy) as adm:
        rows = [r for r in show(adm, "SHOW CLIENTS")
                if r["database"] == APP_DB and not r["admin"] and r["application_name"] != "bystander"]
    holding = [r for r in rows if r["server_id"] is not None or r["state"] not in ("idle", "login")]
    assert not holding, f"attacking clients hold or wait for servers: {holding}"
    return rows
