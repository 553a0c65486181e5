"""The prometheus_client Collector that reads the running proxy at scrape time.

Nothing is copied or counted twice: the state machines already keep their counters (PoolStats,
the directory, the event log, the query cache) and this reads them when a scrape arrives, on the
reactor thread, the way the admin console's SHOW POOLS and SHOW STATS do, so both always agree.
Families are built from the list in names.py, which is what dashboards are checked against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from pgdog_ev import __version__
from pgdog_ev.admin.snapshot import client_state, server_state
from pgdog_ev.metrics.names import GLOBAL_METRICS, POOL_METRICS, Kind, MetricSpec
from pgdog_ev.sql import default_cache
from state.client import ClientState
from state.pool import WAIT_BUCKETS, Pool

if TYPE_CHECKING:
    from pgdog_ev.eventlog.filesink import RotatingFileSink
    from pgdog_ev.proxy.directory import Directory
    from state.events import EventLog
    from state.pool import Pool


class Clock(Protocol):
    def now(self) -> float: ...


class MetricsHost(Protocol):
    """What the collector reads: the daemon's parts (a Protocol so tests can hand in their own)."""

    reactor: Clock
    directory: Directory
    events: EventLog
    sink: RotatingFileSink | None


@dataclass(slots=True)
class PoolReading:
    """One pool as seen at this scrape: the counts SHOW POOLS derives, taken once."""

    pool: Pool
    now: float
    servers: dict[str, int] = field(default_factory=dict)
    clients_active: int = 0

    @property
    def maxwait(self) -> float:
        waiters = self.pool.waiters
        return max(self.now - waiters[0].wait_started, 0.0) if waiters else 0.0


def _server_count(state: str) -> Callable[[PoolReading], float]:
    return lambda r: r.servers.get(state, 0)


def _stat(name: str) -> Callable[[PoolReading], float]:
    return lambda r: getattr(r.pool.stats, name)


def _lag(pool: Pool) -> tuple[float, float]:
    """(bytes, seconds) behind the primary; NaN while the replication monitor has no answer."""
    cluster = pool.owner
    monitor = cluster.monitor if cluster is not None else None  # type: ignore[attr-defined]
    if monitor is None:
        return math.nan, math.nan
    if pool is cluster.primary:  # type: ignore[attr-defined]
        return 0.0, 0.0
    lag = monitor.lag(pool, cluster.primary)  # type: ignore[attr-defined]
    if lag is None:
        return math.nan, math.nan
    return float(lag[0]), math.nan if lag[1] is None else lag[1]


POOL_VALUES: dict[str, Callable[[PoolReading], float]] = {
    "clients_waiting": lambda r: len(r.pool.waiters),
    "clients_active": lambda r: r.clients_active,
    "servers_active": _server_count("active"),
    # The idle stack, as SHOW POOLS' sv_idle: an idle server not on it is on its way out.
    "servers_idle": lambda r: len(r.pool.idle),
    "servers_idle_xact": _server_count("idle_xact"),
    "servers_login": _server_count("login"),
    "servers_used": _server_count("used"),
    "servers_total": lambda r: len(r.pool.servers),
    "pool_size": lambda r: r.pool.settings.pool_size,
    "pool_paused": lambda r: int(r.pool.paused),
    "pool_maintenance": lambda r: int(r.pool.maintenance),
    "pool_healthy": lambda r: int(r.pool.healthy and r.pool.last_error is None),
    "maxwait_seconds": lambda r: r.maxwait,
    "transactions": _stat("xact_count"),
    "queries": _stat("query_count"),
    "received_bytes": _stat("received"),
    "sent_bytes": _stat("sent"),
    "xact_time_seconds": _stat("xact_time"),
    "query_time_seconds": _stat("query_time"),
    "connect_time_seconds": _stat("connect_time"),
    "checkout_timeouts": _stat("checkout_timeouts"),
    "server_connects": _stat("connects"),
    "connect_errors": _stat("connect_errors"),
    "server_errors": _stat("server_errors"),
    "query_errors": _stat("errors"),
    "out_of_sync": _stat("out_of_sync"),
    "force_closed": _stat("force_closed"),
    "re_synced": _stat("re_synced"),
    "rollbacks": _stat("rollbacks"),
    "cleaned": _stat("cleaned"),
    "client_logins": _stat("logins"),
    "client_parse": _stat("client_parse_count"),
    "server_parse": _stat("server_parse_count"),
    "binds": _stat("bind_count"),
    "pool_banned": lambda r: int(r.pool.banned),
    "pool_primary": lambda r: int(r.pool.owner is not None and r.pool.owner.primary is r.pool),  # type: ignore[attr-defined]
    "reads": _stat("reads"),
    "writes": _stat("writes"),
    "healthchecks": _stat("healthchecks"),
    "healthcheck_failures": _stat("healthcheck_failures"),
    "bans": _stat("bans"),
    "replica_lag_bytes": lambda r: _lag(r.pool)[0],
    "replica_lag_seconds": lambda r: _lag(r.pool)[1],
}

_BUCKET_BOUNDS: tuple[str, ...] = (*(floatToGoString(b) for b in WAIT_BUCKETS), "+Inf")
_CLIENT_STATES: tuple[str, ...] = ("login", "idle", "waiting", "active")


def wait_buckets(counts: list[int]) -> list[tuple[str, float]]:
    """PoolStats.wait_buckets (a count per bound, then +Inf) as cumulative histogram buckets."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(_BUCKET_BOUNDS, counts, strict=True):
        running += count
        out.append((bound, running))
    return out


def _family(namespace: str, spec: MetricSpec) -> Metric:
    name = namespace + spec.name
    labels = list(spec.labels)
    if spec.kind is Kind.COUNTER:
        return CounterMetricFamily(name, spec.help, labels=labels)
    if spec.kind is Kind.HISTOGRAM:
        return HistogramMetricFamily(name, spec.help, labels=labels)
    return GaugeMetricFamily(name, spec.help, labels=labels)


class ProxyCollector(Collector):
    """Per-pool and proxy-wide metrics, read from ``host`` at each scrape."""

    def __init__(self, host: MetricsHost, namespace: str = "") -> None:
        self.host = host
        self.namespace = namespace

    def collect(self) -> Iterable[Metric]:
        readings = self._readings()
        yield from self._pool_families(readings)
        yield from self._global_families()

    def _readings(self) -> list[PoolReading]:
        now = self.host.reactor.now()
        directory = self.host.directory
        readings = {pool.id: PoolReading(pool, now) for pool in directory.pools.values()}
        for pool in directory.pools.values():
            counts = readings[pool.id].servers
            for server in pool.servers.values():
                state = server_state(server)
                counts[state] = counts.get(state, 0) + 1
        for client in directory.clients.values():
            pool = client.pool
            if pool is not None and pool.id in readings and client.state in (ClientState.IDLE, ClientState.ACTIVE):
                readings[pool.id].clients_active += 1
        return [readings[k] for k in sorted(readings)]

    def _pool_families(self, readings: list[PoolReading]) -> Iterator[Metric]:
        for spec in POOL_METRICS:
            family = _family(self.namespace, spec)
            for r in readings:
                k = r.pool.key
                labels = [k.user, k.database, k.host, str(k.port), str(k.shard), k.role]
                if isinstance(family, HistogramMetricFamily):
                    stats = r.pool.stats
                    family.add_metric(labels, wait_buckets(stats.wait_buckets), stats.wait_time_total)
                else:
                    family.add_metric(labels, POOL_VALUES[spec.name](r))
            yield family

    def _global_values(self) -> dict[str, float]:
        host = self.host
        directory = host.directory
        events = host.events
        sink = host.sink
        cache = default_cache()
        return {
            "pools": len(directory.pools),
            "clients": len(directory.clients),
            "auth_failures": directory.auth_failures,
            "prepared_statements": len(directory.statements),
            "query_cache_hits": cache.hits,
            "query_cache_misses": cache.misses,
            "query_cache_size": cache.size,
            "query_cache_limit": cache.limit,
            "query_cache_parse_time_seconds": cache.parse_time_ns / 1e9,
            "event_log_records": events.seq,
            "event_log_pending": events.pending,
            "event_log_clamped": events.clamped,
            "event_log_written_bytes": sink.bytes_written if sink is not None else 0,
            "event_log_rotations": sink.rotations if sink is not None else 0,
            "event_log_failed": int(sink is not None and sink.broken),
            # Per process: with several workers the supervisor sums them (and adds its restarts).
            "workers": 1,
            "worker_restarts": 0,
            "cancel_requests_forwarded": directory.cancels_forwarded,
        }

    def _global_families(self) -> Iterator[Metric]:
        values = self._global_values()
        for spec in GLOBAL_METRICS:
            family = _family(self.namespace, spec)
            if spec.name == "build_info":
                family.add_metric([__version__], 1)
            elif spec.name == "clients_by_state":
                counts = dict.fromkeys(_CLIENT_STATES, 0)
                for client in self.host.directory.clients.values():
                    state = client_state(client)
                    if state in counts:
                        counts[state] += 1
                for state, count in counts.items():
                    family.add_metric([state], count)
            else:
                family.add_metric([], values[spec.name])
            yield family


class PrefixedCollector(Collector):
    """Another collector's families with ``prefix`` put in front of every name.

    ProcessCollector can only join a namespace with "_"; PgDog's openmetrics_namespace is a plain
    prefix ("pgdog_"), and every name of one endpoint should carry the same one.
    """

    def __init__(self, inner: Collector, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix

    def collect(self) -> Iterable[Metric]:
        prefix = self.prefix
        for family in self.inner.collect():
            if prefix:
                family.name = prefix + family.name
                family.samples = [s._replace(name=prefix + s.name) for s in family.samples]
            yield family
