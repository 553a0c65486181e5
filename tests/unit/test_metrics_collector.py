"""What the metrics and health endpoints report, read from a Daemon built in-process (not started).

The pools' counters and server lists are set by hand, so each exported value can be checked
against what it must mirror (PoolStats, SHOW POOLS' counts), in both exposition formats.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from loop.clock import ManualClock
from loop.reactor import Reactor
from pgdog_ev import __version__
from pgdog_ev.config import load_config_text
from pgdog_ev.daemon import Daemon
from pgdog_ev.metrics.collector import POOL_VALUES
from pgdog_ev.metrics.exposition import MetricsEndpoint, wants_openmetrics
from pgdog_ev.metrics.health import HealthEndpoint, down_databases, is_up
from pgdog_ev.metrics.http import Request
from pgdog_ev.metrics.names import ALL_METRICS, POOL_METRICS, Kind, exported_samples
from state.pool import WAIT_BUCKETS, Pool
from state.server import ServerState

PGDOG = """
[general]
openmetrics_port = 9930
[[databases]]
name = "app"
host = "127.0.0.1"
[[databases]]
name = "other"
host = "127.0.0.1"
port = 5433
"""
USERS = """
[[users]]
name = "alice"
database = "app"
password = "pw"
[[users]]
name = "bob"
database = "app"
password = "pw"
[[users]]
name = "alice"
database = "other"
password = "pw"
"""
NS = "pgdog_"


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    # The default event_log is relative to the working directory: keep it out of the checkout.
    monkeypatch.chdir(tmp_path)
    config = load_config_text(PGDOG, USERS, entropy=lambda n: bytes(n))
    d = Daemon(config, reactor=Reactor(clock=ManualClock(100.0)))
    yield d
    d.reactor.close()


def pool(daemon: Daemon, user: str, database: str) -> Pool:
    (found,) = [p for p in daemon.directory.pools.values() if (p.key.user, p.key.database) == (user, database)]
    return found


def server(state: ServerState, txn: bytes = b"I", owed: int = 0) -> SimpleNamespace:
    return SimpleNamespace(state=state, txn_status=txn, owed=deque(range(owed)))


def scrape(daemon: Daemon, accept: str = "") -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels -> value}, from the text format (or OpenMetrics)."""
    endpoint = MetricsEndpoint(daemon, NS)
    response = endpoint(Request("GET", "/metrics", {"accept": accept} if accept else {}))
    assert response.status == 200
    text = response.body.decode()
    parse = parse_openmetrics if "openmetrics" in response.content_type else parse_text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in parse(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def labels(p: Pool, **extra: str) -> tuple[tuple[str, str], ...]:
    k = p.key
    base = {"user": k.user, "database": k.database, "host": k.host, "port": str(k.port),
            "shard": str(k.shard), "role": k.role, **extra}
    return tuple(sorted(base.items()))


def test_every_listed_name_is_exported_and_nothing_else(daemon: Daemon) -> None:
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        samples = scrape(daemon, accept)
        assert set(samples) == set(exported_samples(NS))


def test_value_table_matches_the_name_list() -> None:
    listed = {spec.name for spec in POOL_METRICS if spec.kind is not Kind.HISTOGRAM}
    assert set(POOL_VALUES) == listed
    names = [spec.name for spec in ALL_METRICS]
    assert len(names) == len(set(names))


def test_pool_gauges_mirror_show_pools(daemon: Daemon) -> None:
    p = pool(daemon, "alice", "app")
    idle = server(ServerState.IDLE)
    p.servers = {
        1: server(ServerState.ACTIVE, b"T", owed=1),  # busy inside a transaction: active
        2: server(ServerState.ACTIVE, b"T"),  # client idle in transaction
        3: server(ServerState.ACTIVE, b"I", owed=1),
        4: server(ServerState.CLEANING),
        5: server(ServerState.CONNECTING),
        6: server(ServerState.STARTUP),
        7: idle,
    }  # type: ignore[assignment]
    p.idle = [idle]  # type: ignore[list-item]
    p.waiters.extend([SimpleNamespace(wait_started=97.5), SimpleNamespace(wait_started=99.0)])  # type: ignore[arg-type]
    p.last_error = "connection refused"
    p.holds = 3  # paused and in maintenance
    s = scrape(daemon)
    key = labels(p)
    expected = {
        "clients_waiting": 2, "servers_active": 2, "servers_idle_xact": 1, "servers_used": 1,
        "servers_login": 2, "servers_idle": 1, "servers_total": 7, "pool_size": 10, "pool_paused": 1,
        "pool_maintenance": 1, "pool_healthy": 0, "maxwait_seconds": 2.5,
    }
    for name, value in expected.items():
        assert s[NS + name][key] == value, name
    other = labels(pool(daemon, "bob", "app"))
    assert s[NS + "servers_total"][other] == 0
    assert s[NS + "pool_healthy"][other] == 1
    assert s[NS + "pools"][()] == 3


def test_counters_mirror_pool_stats(daemon: Daemon) -> None:
    p = pool(daemon, "bob", "app")
    st = p.stats
    st.xact_count, st.query_count, st.received, st.sent = 7, 21, 1000, 5000
    st.xact_time, st.query_time, st.errors, st.logins = 1.5, 0.75, 2, 3
    s = scrape(daemon, "application/openmetrics-text")
    key = labels(p)
    assert s[NS + "transactions_total"][key] == 7
    assert s[NS + "queries_total"][key] == 21
    assert s[NS + "received_bytes_total"][key] == 1000
    assert s[NS + "sent_bytes_total"][key] == 5000
    assert s[NS + "xact_time_seconds_total"][key] == 1.5
    assert s[NS + "query_time_seconds_total"][key] == 0.75
    assert s[NS + "query_errors_total"][key] == 2
    assert s[NS + "client_logins_total"][key] == 3


def test_wait_histogram_is_cumulative_with_sum_and_count(daemon: Daemon) -> None:
    p = pool(daemon, "alice", "other")
    waits = [0.0, 0.0002, 0.003, 0.003, 0.2, 0.7, 7.0, 12.0]
    for w in waits:
        p.stats.observe_wait(w)
    for accept in ("", "application/openmetrics-text"):
        s = scrape(daemon, accept)
        key = labels(p)
        buckets = {dict(k)["le"]: v for k, v in s[NS + "checkout_wait_seconds_bucket"].items()
                   if tuple(x for x in k if x[0] != "le") == key}
        bounds = sorted(buckets, key=float)
        assert [float(b) for b in bounds] == [*WAIT_BUCKETS, math.inf]
        for bound in bounds:
            assert buckets[bound] == sum(1 for w in waits if w <= float(bound)), bound
        assert s[NS + "checkout_wait_seconds_count"][key] == p.stats.checkouts == len(waits)
        assert s[NS + "checkout_wait_seconds_sum"][key] == pytest.approx(sum(waits))


def test_global_metrics(daemon: Daemon) -> None:
    daemon.directory.auth_failures = 4
    daemon.events.emit(1.0, 1, 1, 1)
    s = scrape(daemon)
    assert s[NS + "auth_failures_total"][()] == 4
    assert s[NS + "event_log_records_total"][()] == daemon.events.seq >= 1
    assert s[NS + "event_log_pending"][()] == daemon.events.pending
    assert s[NS + "clients"][()] == 0
    assert s[NS + "build_info"] == {(("version", __version__),): 1}
    assert {dict(k)["state"] for k in s[NS + "clients_by_state"]} == {"login", "idle", "waiting", "active"}
    assert s[NS + "process_resident_memory_bytes"][()] > 0
    assert s[NS + "query_cache_limit"][()] == daemon.config.general.query_cache_limit


def test_no_namespace(daemon: Daemon) -> None:
    text = MetricsEndpoint(daemon)(Request("GET", "/", {})).body.decode()
    names = {s.name for f in parse_text(text) for s in f.samples}
    assert names == set(exported_samples(""))


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", False),
        ("text/plain", False),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
        ("text/plain;q=1, Application/OpenMetrics-Text; q=0.5", True),
        ("application/openmetrics-text;q=0, text/plain", False),
        ("application/openmetrics-text;q=bogus", False),
    ],
)
def test_content_negotiation(accept: str, expected: bool) -> None:
    assert wants_openmetrics(accept) is expected


def test_health(daemon: Daemon) -> None:
    handler = HealthEndpoint(daemon)
    get = Request("GET", "/", {})
    assert is_up(daemon)
    assert handler(get).status == 200 and handler(get).body == b"up"

    # One of app's two pools failing: the other can still serve app.
    alice_app = pool(daemon, "alice", "app")
    alice_app.last_error = "connection refused"
    assert is_up(daemon)

    # other's only pool failing, with a retry still connecting: down.
    alice_other = pool(daemon, "alice", "other")
    alice_other.last_error = "connection refused"
    alice_other.servers = {9: server(ServerState.CONNECTING)}  # type: ignore[dict-item]
    assert down_databases(daemon.directory) == ["other"]
    assert handler(get).status == 502 and handler(get).body == b"down"

    # A server that logged in before the failure still serves.
    alice_other.servers[10] = server(ServerState.IDLE)  # type: ignore[assignment]
    assert is_up(daemon)

    daemon.stopping = True
    assert handler(get).status == 502
