"""Every metric the OpenMetrics endpoint exports: names, types, help texts and labels.

This list is the contract with dashboards and alert rules (ops/grafana, ops/prometheus): the
collector builds its families from it, and a test checks that every name a PromQL expression in
ops/ uses appears here and in a real scrape. Renaming an entry breaks users' dashboards, so add,
do not rename. Names are given without the `openmetrics_namespace` prefix; counters without the
`_total` suffix the exposition appends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


#: Labels of every per-pool metric: the pool key, as in SHOW POOLS.
POOL_LABELS: tuple[str, ...] = ("user", "database", "host", "port", "shard", "role")

G, C, H = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM


def _pool(name: str, kind: Kind, help_: str) -> MetricSpec:
    return MetricSpec(name, kind, help_, POOL_LABELS)


POOL_METRICS: tuple[MetricSpec, ...] = (
    # Gauges: what the pool looks like right now (SHOW POOLS).
    _pool("clients_waiting", G, "Clients queued for a server connection (cl_waiting)."),
    _pool("clients_active", G, "Logged-in clients of the pool not waiting for a server (cl_active)."),
    _pool("servers_active", G, "Server connections lent to a client and busy (sv_active)."),
    _pool("servers_idle", G, "Server connections idle in the pool, ready to lend (sv_idle)."),
    _pool("servers_idle_xact", G, "Server connections held by a client idle in a transaction (sv_idle_xact)."),
    _pool("servers_login", G, "Server connections connecting or logging in (sv_login)."),
    _pool("servers_used", G, "Server connections being cleaned before reuse (sv_used)."),
    _pool("servers_total", G, "All server connections of the pool (sv_total)."),
    _pool("pool_size", G, "Most server connections the pool may open (max_connections)."),
    _pool("pool_paused", G, "1 while the pool is paused by the admin PAUSE command."),
    _pool("pool_maintenance", G, "1 while the pool is in admin MAINTENANCE mode."),
    _pool("pool_healthy", G, "0 when the last attempt to connect a server failed, else 1."),
    _pool("maxwait_seconds", G, "How long the oldest queued client has been waiting (maxwait)."),
    # Counters: totals since the pool was created (SHOW STATS total_*).
    _pool("transactions", C, "Transactions run through the pool (total_xact_count)."),
    _pool("queries", C, "Requests answered by a server: queries and Sync-terminated pipelines (total_query_count)."),
    _pool("received_bytes", C, "Bytes received from the pool's clients (total_received)."),
    _pool("sent_bytes", C, "Bytes sent to the pool's clients (total_sent)."),
    _pool("xact_time_seconds", C, "Time spent inside transactions (total_xact_time)."),
    _pool("query_time_seconds", C, "Time servers spent answering requests (total_query_time)."),
    _pool("connect_time_seconds", C, "Time spent connecting and logging in new servers (total_connect_time)."),
    _pool("checkout_wait_seconds", H, "Time clients waited for a server connection, per checkout."),
    _pool("checkout_timeouts", C, "Clients that gave up after checkout_timeout without a server."),
    _pool("server_connects", C, "Server connections the pool opened (total_connect_count)."),
    _pool("connect_errors", C, "Server connections that failed to connect or log in."),
    _pool("server_errors", C, "Server connections lost while lent to a client."),
    _pool("query_errors", C, "ErrorResponses PostgreSQL sent to the pool's clients (total_errors)."),
    _pool("out_of_sync", C, "Server connections closed because their protocol state went out of sync."),
    _pool("force_closed", C, "Server connections closed because they could not be trusted for reuse."),
    _pool("re_synced", C, "Checkouts that first synced the server's settings to the client's."),
    _pool("rollbacks", C, "Transactions the pool rolled back for clients that left them open."),
    _pool("cleaned", C, "Server connections returned through cleanup (ROLLBACK, DISCARD, drained results)."),
    _pool("client_logins", C, "Client logins to the pool (total_client_login_count)."),
    _pool("client_parse", C, "Parse messages received from clients (total_client_parse_count)."),
    _pool("server_parse", C, "Parse messages sent to servers (total_server_parse_count)."),
    _pool("binds", C, "Bind messages received from clients (total_bind_count)."),
    # Replicas: routing, health checks, bans and replication (SHOW BANS, SHOW REPLICATION).
    _pool("pool_banned", G, "1 while the host is banned from the read rotation."),
    _pool("pool_primary", G, "1 while the host is its database's primary (detected, for role = auto)."),
    _pool("reads", C, "Checkouts routed to this host as reads (multi-host databases)."),
    _pool("writes", C, "Checkouts routed to this host as writes (multi-host databases)."),
    _pool("healthchecks", C, "Health checks run on the host (at checkout, idle, admin HEALTHCHECK)."),
    _pool("healthcheck_failures", C, "Health checks that failed or timed out."),
    _pool("bans", C, "Times the host was banned (health, connect errors, lag, admin BAN)."),
    _pool("replica_lag_bytes", G, "WAL bytes the host is behind the primary (NaN when unknown)."),
    _pool("replica_lag_seconds", G, "Seconds the host's replay is behind the primary (NaN when unknown)."),
)

GLOBAL_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("build_info", G, "Always 1; the version label names the running pgdog-ev.", ("version",)),
    MetricSpec("pools", G, "Pools configured (one per user, database and host)."),
    MetricSpec("clients", G, "Client connections, logging in or logged in."),
    MetricSpec("clients_by_state", G, "Client connections by state (login, idle, waiting, active).", ("state",)),
    MetricSpec("auth_failures", C, "Client logins refused for a wrong password or unknown user."),
    MetricSpec("prepared_statements", G, "Proxy-global prepared statements held (SHOW PREPARED)."),
    MetricSpec("query_cache_hits", C, "SQL analyses answered from the query cache."),
    MetricSpec("query_cache_misses", C, "SQL analyses that had to parse the query."),
    MetricSpec("query_cache_size", G, "Query texts held in the query cache."),
    MetricSpec("query_cache_limit", G, "Most query texts the cache holds (query_cache_limit)."),
    MetricSpec("query_cache_parse_time_seconds", C, "Time spent parsing queries the cache did not know."),
    MetricSpec("event_log_records", C, "Event-log records emitted."),
    MetricSpec("event_log_pending", G, "Event-log records emitted but not yet flushed to the sink."),
    MetricSpec("event_log_clamped", C, "Event-log records whose fields had to be clamped to fit."),
    MetricSpec("event_log_written_bytes", C, "Bytes written to the event-log file (0 without event_log)."),
    MetricSpec("event_log_rotations", C, "Event-log file rotations."),
    MetricSpec("event_log_failed", G, "1 after the event-log file failed and file logging stopped."),
    MetricSpec("workers", G, "Worker processes serving clients that answered this scrape (1 for one process)."),
    MetricSpec("worker_restarts", C, "Worker processes the supervisor restarted after they exited unexpectedly."),
    MetricSpec("cancel_requests_forwarded", C, "CancelRequests passed to the worker process that owns the key."),
)

#: Samples of prometheus_client's ProcessCollector (Linux), re-exported under the namespace.
PROCESS_SAMPLES: tuple[str, ...] = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
)

ALL_METRICS: tuple[MetricSpec, ...] = POOL_METRICS + GLOBAL_METRICS


def sample_names(spec: MetricSpec) -> tuple[str, ...]:
    """The sample names one family produces in the exposition, without namespace."""
    if spec.kind is Kind.COUNTER:
        return (spec.name + "_total",)
    if spec.kind is Kind.HISTOGRAM:
        return (spec.name + "_bucket", spec.name + "_sum", spec.name + "_count")
    return (spec.name,)


def exported_samples(namespace: str = "") -> frozenset[str]:
    """Every sample name a scrape can contain, as PromQL sees them."""
    names = [n for spec in ALL_METRICS for n in sample_names(spec)] + list(PROCESS_SAMPLES)
    return frozenset(namespace + n for n in names)
