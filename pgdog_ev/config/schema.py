"""The configuration schema as data: every key PgDog's files may contain, with kind, default and doc.

One table per TOML table. The loader walks these tables, SHOW CONFIG prints from them, admin
``SET`` and ``PGDOG_*`` environment variables parse through them, so a key added here is
accepted everywhere at once and documented in one place. Defaults are PgDog's (pgdog.toml /
users.toml keep their meaning when a user moves over); keys marked "pgdog-ev" are our own.

``None`` defaults mean "off", "unlimited" or "inherit from the outer level"; TOML has no null, so
such keys are simply left out of the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .kinds import BoolKind, ChoiceKind, FloatKind, IntKind, Kind, StrKind, StrListKind
from .log_filter import LogFilterKind

_NULL_WORDS = frozenset({"", "none", "null"})


@dataclass(frozen=True)
class KeySpec:
    """One key of one table.

    ``changeable`` says whether the running proxy can honour a new value (admin ``SET``); keys that
    are bound at start-up (listen address, TLS files, the event-log file) cannot. ``zero_is_off``
    folds 0 into ``None`` so code that consumes the value has one spelling for "disabled".
    """

    name: str
    kind: Kind
    default: object
    doc: str
    nullable: bool = False
    required: bool = False
    changeable: bool = True
    zero_is_off: bool = False

    def from_toml(self, raw: object) -> object:
        return self._normalise(self.kind.from_toml(raw))

    def from_text(self, text: str) -> object:
        """Parse a value typed by a person (env var, URL query, ``SET``), where "" can mean unset."""
        if self.nullable:
            if isinstance(self.kind, StrKind):
                # Only "" unsets a text: spaces are a value, as they are in the file, so that
                # SHOW CONFIG's text of any value sets that value back.
                if text == "":
                    return None
            else:
                word = text.strip().lower()
                if word == "" or word in _NULL_WORDS:
                    return None
                if isinstance(self.kind, IntKind) and word == "off":
                    return None
        return self._normalise(self.kind.from_text(text))

    def render(self, value: object) -> str:
        """Text that :meth:`from_text` turns back into the same value (SHOW CONFIG -> SET)."""
        return "" if value is None else self.kind.render(value)

    def _normalise(self, value: object) -> object:
        if self.zero_is_off and value == 0:
            return None
        return value


# --- kinds shared by several tables ------------------------------------------------------------

_MS = IntKind(minimum=0, unit="milliseconds")
_COUNT = IntKind(minimum=0)
_POSITIVE = IntKind(minimum=1)
_BYTES = IntKind(minimum=0, unit="bytes")
_PORT = IntKind(minimum=1, maximum=65535)
_TEXT = StrKind()
_NAME = StrKind(nonempty=True)
_BOOL = BoolKind()
_POOLER_MODE = ChoiceKind(
    choices=("transaction", "session"),
    rejected={"statement": "pooling is not supported (PgDog does not accept it either)"},
)
_PASSWORD_HASH = StrKind(
    nonempty=True,
    pattern=re.compile(
        r"SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*:[A-Za-z0-9+/]+=*|md5[0-9a-f]{32}"
    ),
    pattern_doc='a SCRAM verifier "SCRAM-SHA-256$<iterations>:<salt>$<stored key>:<server key>" '
    'or an MD5 hash "md5<32 hex digits>"',
)


def _choice(*choices: str) -> ChoiceKind:
    return ChoiceKind(choices=choices)


def _spec(
    name: str,
    kind: Kind,
    default: object,
    doc: str,
    *,
    nullable: bool = False,
    required: bool = False,
    changeable: bool = True,
    zero_is_off: bool = False,
) -> KeySpec:
    return KeySpec(name, kind, default, doc, nullable, required, changeable, zero_is_off)


def _opt(name: str, kind: Kind, doc: str, *, changeable: bool = True, zero_is_off: bool = False) -> KeySpec:
    return KeySpec(name, kind, None, doc, nullable=True, changeable=changeable, zero_is_off=zero_is_off)


def _fixed(name: str, kind: Kind, default: object, doc: str) -> KeySpec:
    return KeySpec(name, kind, default, doc, changeable=False)


# --- [general] ----------------------------------------------------------------------------------

GENERAL_KEYS: tuple[KeySpec, ...] = (
    # Listener and runtime.
    _fixed("host", _NAME, "0.0.0.0", "Address the client listener binds to."),
    _fixed(
        "port",
        IntKind(minimum=0, maximum=65535),
        6432,
        "Client listener port; 0 asks the OS for a free port (tests).",
    ),
    _fixed(
        "workers",
        IntKind(minimum=1, maximum=128),
        1,
        "pgdog-ev: processes serving the client port (SO_REUSEPORT), each with its share of the pool"
        " sizes and client limits; 1 is one process. PgDog's key of the same name counts threads"
        " (default 2). Changing it needs a restart.",
    ),
    _opt("broadcast_address", _NAME, "UDP address for multi-node peer discovery.", changeable=False),
    _opt("broadcast_port", _PORT, "UDP discovery port; unset means port + 1.", changeable=False),
    # Pools.
    _spec(
        "default_pool_size",
        _POSITIVE,
        10,
        "Server connections per pool unless a user or database sets pool_size (alias max_pool_size).",
    ),
    _spec("min_pool_size", _COUNT, 1, "Connections each pool keeps open even when idle."),
    _spec(
        "pooler_mode",
        _POOLER_MODE,
        "transaction",
        "When a server goes back to the pool: after each transaction or when the client leaves.",
    ),
    _spec("idle_timeout", _MS, 60000, "Close server connections above min_pool_size idle this long."),
    _spec("server_lifetime", _MS, 86400000, "Close server connections older than this at check-in."),
    _spec(
        "server_lifetime_jitter", _MS, 0, "Random spread added to server_lifetime to avoid reconnect storms."
    ),
    _spec("checkout_timeout", _MS, 5000, "How long a client waits for a server connection before an error."),
    _spec("connect_timeout", _MS, 5000, "Limit on establishing one server connection, including auth."),
    _spec("connect_attempts", _POSITIVE, 1, "Tries per server connection before giving up."),
    _spec("connect_attempt_delay", _MS, 0, "Pause between connection attempts."),
    _opt(
        "query_timeout",
        _MS,
        "Limit on waiting for a server's answer; unset or 0 means no limit.",
        zero_is_off=True,
    ),
    _spec("rollback_timeout", _MS, 5000, "Limit on cleaning a server left mid-transaction by its client."),
    _spec(
        "connection_recovery",
        _choice("recover", "rollback_only", "drop"),
        "recover",
        "What to do with a server whose client vanished mid-transaction.",
    ),
    _spec(
        "client_connection_recovery",
        _choice("recover", "drop"),
        "drop",
        "Whether clients survive pool errors; drop suits pipelining clients.",
    ),
    # Clients.
    _spec("client_login_timeout", _MS, 60000, "Time a new client has to finish startup and auth."),
    _opt(
        "client_idle_timeout",
        _MS,
        "Disconnect clients idle outside a transaction; unset or 0 = never.",
        zero_is_off=True,
    ),
    _opt(
        "client_idle_in_transaction_timeout",
        _MS,
        "Disconnect clients idle inside a transaction; unset or 0 = never.",
        zero_is_off=True,
    ),
    _spec("shutdown_timeout", _MS, 60000, "Graceful shutdown waits this long for open transactions."),
    _opt(
        "shutdown_termination_timeout",
        _MS,
        "After shutdown_timeout, cancel remaining queries and wait this much longer.",
    ),
    _opt(
        "max_client_conn", _POSITIVE, "Most client connections accepted (PgBouncer name); unset = no limit."
    ),
    _opt(
        "max_db_client_connections",
        _POSITIVE,
        "Most logged-in clients per database, unless the database sets its own (PgBouncer name).",
    ),
    _opt(
        "max_user_client_connections",
        _POSITIVE,
        "Most logged-in clients per user, unless the user sets its own (PgBouncer name).",
    ),
    # Health checks and load balancing.
    _spec("healthcheck_interval", _MS, 30000, "A connection unchecked for this long is checked at checkout."),
    _spec("idle_healthcheck_interval", _MS, 30000, "How often an idle connection of each pool is checked."),
    _spec("idle_healthcheck_delay", _MS, 5000, "Wait after start before the first idle health check."),
    _spec("healthcheck_timeout", _MS, 5000, "Limit on one health-check query."),
    _opt(
        "healthcheck_port",
        _PORT,
        "HTTP port answering up/down for external load balancers.",
        changeable=False,
    ),
    _spec(
        "require_healthcheck_on_discovery",
        _BOOL,
        False,
        "Keep hosts a reload adds out of the read rotation until their first health check passes.",
    ),
    _spec("ban_timeout", _MS, 300000, "How long a failing replica stays out of rotation."),
    _opt("ban_replica_lag", _MS, "Ban replicas lagging this many milliseconds; unset = never."),
    _opt("ban_replica_lag_bytes", _BYTES, "Ban replicas lagging this many WAL bytes; unset = never."),
    _spec(
        "load_balancing_strategy",
        _choice("random", "round_robin", "least_active_connections", "weighted_round_robin"),
        "random",
        "How reads are spread over the hosts of a database.",
    ),
    _spec(
        "read_write_strategy",
        _choice("conservative", "aggressive"),
        "conservative",
        "Whether a transaction's route is chosen by its first statement (aggressive) or kept on "
        "the primary unless declared read-only (conservative).",
    ),
    _spec(
        "read_write_split",
        _choice("include_primary", "exclude_primary", "include_primary_if_replica_banned", "prefer_primary"),
        "include_primary",
        "Whether the primary also serves reads.",
    ),
    _spec("lsn_check_interval", _MS, 5000, "How often replica lag / role is polled."),
    _spec("lsn_check_timeout", _MS, 5000, "Limit on one lag/role query."),
    _opt("lsn_check_delay", _MS, "Wait before the first lag/role poll; unset disables role detection."),
    # TLS and authentication.
    _opt("tls_certificate", _NAME, "PEM certificate offered to clients.", changeable=False),
    _opt("tls_private_key", _NAME, "PEM key for tls_certificate.", changeable=False),
    _spec("tls_client_required", _BOOL, False, "Refuse clients that do not ask for TLS."),
    _opt(
        "tls_client_ca_certificate",
        _NAME,
        "CA that client certificates must chain to (mTLS).",
        changeable=False,
    ),
    _spec(
        "tls_verify",
        _choice("disabled", "prefer", "verify_ca", "verify_full"),
        "prefer",
        "TLS towards servers: off, opportunistic, or verified.",
    ),
    _opt("tls_server_ca_certificate", _NAME, "CA bundle used to verify servers.", changeable=False),
    _opt("tls_server_certificate", _NAME, "Client certificate presented to servers.", changeable=False),
    _opt("tls_server_private_key", _NAME, "Key for tls_server_certificate.", changeable=False),
    _spec(
        "auth_type",
        _choice("scram", "md5", "plain", "trust"),
        "scram",
        "How clients prove their password to the proxy.",
    ),
    _spec(
        "passthrough_auth",
        _choice("disabled", "enabled", "enabled_plain", "enabled_allow_change", "enabled_plain_allow_change"),
        "disabled",
        "Create pools on the fly from the client's own credentials.",
    ),
    # Query parser and prepared statements.
    _spec(
        "query_parser",
        _choice("auto", "on", "off", "session_control", "session_control_and_locks"),
        "auto",
        "When SQL is parsed for routing; auto = when replicas or shards exist.",
    ),
    _spec("query_parser_enabled", _BOOL, False, 'Deprecated PgDog switch; use query_parser = "on".'),
    _fixed(
        "query_parser_engine",
        _choice("pg_query_protobuf", "pg_query_raw"),
        "pg_query_protobuf",
        "PgDog parser backend; accepted for compatibility.",
    ),
    _spec("regex_parser_limit", _COUNT, 1000, "Longest query the cheap pre-parser inspects."),
    _spec("query_cache_limit", _COUNT, 1000, "Parsed statements kept in the routing cache."),
    _spec(
        "prepared_statements",
        _choice("disabled", "extended", "extended_anonymous", "full"),
        "extended",
        "How prepared statements are shared across server connections in transaction mode.",
    ),
    _opt("prepared_statements_limit", _COUNT, "Prepared statements per server connection; unset = no limit."),
    _opt("prepared_statements_ttl", _MS, "Re-prepare statements older than this; unset = never."),
    _spec("prepared_statements_ttl_jitter", _MS, 30000, "Random spread on prepared_statements_ttl."),
    _opt("query_size_limit", _BYTES, "Queries longer than this trigger query_size_limit_action."),
    _spec("query_size_limit_action", _choice("warn", "block"), "warn", "Log or refuse oversized queries."),
    _opt("log_min_duration_parse", _MS, "Log SQL parses slower than this."),
    # Sharding.
    _spec("cross_shard_disabled", _BOOL, False, "Reject queries that would touch more than one shard."),
    _spec(
        "system_catalogs",
        _choice("omnisharded", "omnisharded_sticky", "sharded"),
        "omnisharded_sticky",
        "How queries on pg_catalog tables are routed in sharded clusters.",
    ),
    _spec("omnisharded_sticky", _BOOL, False, "Pin each client to one shard for omnisharded reads."),
    _spec("dry_run", _BOOL, False, "Parse and record routing decisions without acting on them."),
    _spec("expanded_explain", _BOOL, False, "Expanded output for cross-shard EXPLAIN."),
    _spec(
        "load_schema", _choice("on", "off", "auto"), "auto", "Whether table schemas are loaded for routing."
    ),
    _spec("reload_schema_on_ddl", _BOOL, True, "Reload routing schema after DDL."),
    _spec("canonicalize_type_information", _BOOL, False, "PgDog type canonicalisation switch."),
    _spec("unique_id_min", _COUNT, 0, "Offset added to every generated unique id."),
    _spec("unique_id_function", _choice("standard", "compact"), "standard", "Bit layout of unique ids."),
    _spec("sharding_lookup_cache_size", _BYTES, 67108864, "Memory for cached sharding-key lookups."),
    _spec("sharding_lookup_timeout", _MS, 5000, "Limit on one sharding-key lookup query."),
    # Two-phase commit.
    _spec("two_phase_commit", _BOOL, False, "Use two-phase commit for cross-shard write transactions."),
    _opt("two_phase_commit_auto", _BOOL, "Promote single-statement cross-shard writes to 2PC."),
    _opt("two_phase_commit_wal_dir", _NAME, "Directory of the 2PC decision log.", changeable=False),
    _spec("two_phase_commit_wal_segment_size", _BYTES, 16777216, "2PC log segment size before rotation."),
    _spec("two_phase_commit_wal_fsync_interval", _MS, 0, "Group-commit window for 2PC log fsyncs."),
    _spec("two_phase_commit_wal_checkpoint_interval", _MS, 15000, "How often the 2PC log is checkpointed."),
    # Resharding.
    _spec(
        "resharding_copy_format", _choice("binary", "text"), "binary", "COPY format used while resharding."
    ),
    _spec("resharding_parallel_copies", _POSITIVE, 1, "Concurrent table copies while resharding."),
    _spec("resharding_copy_retry_max_attempts", _COUNT, 5, "Retries of a failed table copy."),
    _spec("resharding_copy_retry_min_delay", _MS, 1000, "First back-off of table copy retries."),
    _spec("resharding_replication_retry_max_attempts", _COUNT, 5, "Replication retries; 0 = forever."),
    _spec("resharding_replication_retry_min_delay", _MS, 1000, "Back-off of replication retries."),
    _spec("cutover_traffic_stop_threshold", _BYTES, 1000000, "Replication lag at which traffic pauses."),
    _spec("cutover_replication_lag_threshold", _BYTES, 0, "Replication lag at which cutover happens."),
    _spec("cutover_last_transaction_delay", _MS, 1000, "Idle time after which cutover may happen."),
    _spec("cutover_timeout", _MS, 30000, "Limit on waiting for cutover conditions."),
    _spec("cutover_timeout_action", _choice("abort", "cutover"), "abort", "What happens at cutover_timeout."),
    _spec("cutover_save_config", _BOOL, False, "Write the swapped configuration back to disk."),
    # Mirroring and pub/sub.
    _spec("mirror_queue", _COUNT, 128, "Transactions buffered per mirror before dropping."),
    _spec("mirror_exposure", FloatKind(minimum=0.0, maximum=1.0), 1.0, "Fraction of traffic mirrored."),
    _spec("pub_sub_channel_size", _COUNT, 0, "LISTEN/NOTIFY queue size; 0 disables pub/sub."),
    # Observability.
    _opt(
        "openmetrics_port", _PORT, "HTTP port of the metrics endpoint; unset = no endpoint.", changeable=False
    ),
    _fixed("openmetrics_host", _NAME, "0.0.0.0", "Address the metrics endpoint binds to."),
    _opt("openmetrics_namespace", _NAME, "Prefix for metric names, e.g. pgdog_.", changeable=False),
    _spec(
        "stats_period",
        IntKind(minimum=1, unit="milliseconds"),
        15000,
        "Period over which SHOW STATS averages are computed.",
    ),
    _opt("query_log", _NAME, "File every query is appended to (slow; debugging only)."),
    _spec("query_log_stdout", _BOOL, False, "Print every query to stdout (debugging only)."),
    _fixed("log_format", _choice("text", "json", "json_flattened"), "text", "Application log line format."),
    _spec("log_level", LogFilterKind(), "info", "Log filter, e.g. info, debug or pgdog=debug,info (RUST_LOG syntax)."),
    _spec("log_connections", _BOOL, True, "Log each client login."),
    _spec("log_disconnections", _BOOL, True, "Log each client logout."),
    _spec("log_dedup_window", _MS, 0, "Window for collapsing repeated log lines; 0 = off."),
    _spec("log_dedup_threshold", _COUNT, 0, "Repeats allowed per window before collapsing; 0 = off."),
    _spec("log_query_sample_length", _COUNT, 1000, "Characters of a query quoted in log lines."),
    _opt("dns_ttl", _MS, "Override DNS record lifetimes for server host names."),
    # pgdog-ev's own keys.
    _spec(
        "max_message_size",
        IntKind(minimum=1024, unit="bytes"),
        1073741824,
        "pgdog-ev: largest protocol message body accepted from a client or server.",
    ),
    _fixed(
        "event_log",
        _TEXT,
        "pgdog-ev.evlog",
        'pgdog-ev: event-log file; relative to pgdog.toml\'s directory; "" disables the file.',
    ),
    _fixed(
        "event_log_max_bytes",
        IntKind(minimum=1, unit="bytes"),
        67108864,
        "pgdog-ev: rotate the event log after this many bytes.",
    ),
    _fixed("event_log_keep", _COUNT, 4, "pgdog-ev: rotated event-log files kept."),
    _fixed(
        "capture_inputs",
        _BOOL,
        False,
        "pgdog-ev: write every input (client and server bytes, timers, entropy; passwords masked) to"
        " <event_log>.inputs so `pgdog-ev replay --reexecute` can run it again; needs event_log.",
    ),
    _fixed(
        "capture_max_bytes",
        IntKind(minimum=1024, unit="bytes"),
        67108864,
        "pgdog-ev: size limit of the input capture; when reached, capture stops (the run up to there"
        " can still be re-executed).",
    ),
    _spec(
        "session_state",
        _choice("pin", "refuse"),
        "pin",
        "pgdog-ev: transaction mode, when a client creates session state the proxy cannot carry to"
        " another server (LISTEN, temp tables, session advisory locks, WITH HOLD cursors): pin the"
        " client to its server for the session, or refuse the statement with 0A000.",
    ),
)

#: Other spellings PgDog accepts for a [general] key, mapped to the canonical name.
GENERAL_ALIASES: Mapping[str, str] = {"max_pool_size": "default_pool_size"}

#: Environment variables PgDog reads under a name that is not PGDOG_<KEY>.
ENV_ALIASES: Mapping[str, str] = {"PGDOG_CLIENT_LOG_TIMEOUT": "client_login_timeout"}

# --- per-role overrides shared by [[databases]] and [[users]] ----------------------------------

_ROLE_KEYS: tuple[KeySpec, ...] = (
    _opt("pool_size_primary", _POSITIVE, "pool_size when the host is the primary."),
    _opt("pool_size_replica", _POSITIVE, "pool_size when the host is a replica."),
    _opt("min_pool_size_primary", _COUNT, "min_pool_size when the host is the primary."),
    _opt("min_pool_size_replica", _COUNT, "min_pool_size when the host is a replica."),
    _opt("idle_timeout_primary", _MS, "idle_timeout when the host is the primary."),
    _opt("idle_timeout_replica", _MS, "idle_timeout when the host is a replica."),
)

# --- [[databases]] ------------------------------------------------------------------------------

DATABASE_KEYS: tuple[KeySpec, ...] = (
    _spec("name", _NAME, None, "Database name clients connect to.", required=True),
    _spec("host", _NAME, None, "Server host name or address.", required=True),
    _spec("port", _PORT, 5432, "Server port."),
    _opt("database_name", _NAME, "Database name on the server; defaults to name."),
    _opt("user", _NAME, "Server user for every pool of this database."),
    _opt("password", _TEXT, "Server password; wins over the user's server_password."),
    _spec(
        "role",
        _choice("primary", "replica", "auto"),
        "primary",
        "The host's role; auto detects it from pg_is_in_recovery().",
    ),
    _spec("shard", _COUNT, 0, "Shard number, contiguous from 0."),
    _opt("pool_size", _POSITIVE, "Overrides [general] default_pool_size."),
    _opt("max_db_client_connections", _POSITIVE, "Most logged-in clients of this database."),
    _opt("min_pool_size", _COUNT, "Overrides [general] min_pool_size."),
    _opt("pooler_mode", _POOLER_MODE, "Overrides [general] pooler_mode."),
    _opt("statement_timeout", _MS, "Sent to the server as statement_timeout at connect."),
    _opt("lock_timeout", _MS, "Sent to the server as lock_timeout at connect."),
    _opt("idle_timeout", _MS, "Overrides [general] idle_timeout."),
    _opt("read_only", _BOOL, "Connect with default_transaction_read_only=on."),
    _opt("server_lifetime", _MS, "Overrides [general] server_lifetime."),
    _opt("server_lifetime_jitter", _MS, "Overrides [general] server_lifetime_jitter."),
    _spec("resharding_only", _BOOL, False, "Host takes part in resharding only, never in traffic."),
    _spec("lb_weight", IntKind(minimum=0, maximum=255), 255, "Weight for weighted_round_robin."),
    *_ROLE_KEYS,
)

# --- [[users]] ----------------------------------------------------------------------------------

USER_KEYS: tuple[KeySpec, ...] = (
    _spec("name", _NAME, None, "User name clients log in with.", required=True),
    _opt("database", _NAME, "The database this user may use."),
    _opt("databases", StrListKind(), "Several databases for this user."),
    _spec("all_databases", _BOOL, False, "The user may use every configured database."),
    _opt("password", _TEXT, "Client password (plain text)."),
    _opt("passwords", StrListKind(), "Further accepted client passwords (rotation)."),
    _opt("password_hash", _PASSWORD_HASH, "SCRAM verifier or md5 hash instead of a plain password."),
    _opt("vault_path", _NAME, "Vault secret holding the client password."),
    _opt("identity", _NAME, "Client certificate identity (SAN dNSName or CN) for mTLS."),
    _opt("tls_client_certificate_required", _BOOL, "Whether this user must present a client certificate."),
    _opt("pool_size", _POSITIVE, "Overrides database and general pool size."),
    _opt("max_user_client_connections", _POSITIVE, "Most logged-in clients of this user."),
    _opt("min_pool_size", _COUNT, "Overrides database and general min_pool_size."),
    _opt("pooler_mode", _POOLER_MODE, "Overrides database and general pooler_mode."),
    _opt("server_user", _NAME, "User name on the server; defaults to name."),
    _opt("server_password", _TEXT, "Server password when the database entry has none."),
    _spec(
        "server_auth",
        _choice("password", "rds_iam", "azure_workload_identity", "vault_dynamic", "vault_static"),
        "password",
        "How the proxy authenticates to servers for this user.",
    ),
    _opt("server_iam_region", _NAME, "AWS region for rds_iam."),
    _opt("server_vault_path", _NAME, "Vault path for vault_* server auth."),
    _opt("vault_refresh_percent", IntKind(minimum=1, maximum=80), "Refresh Vault leases at this % of TTL."),
    _opt("statement_timeout", _MS, "Overrides the database's statement_timeout."),
    _opt("lock_timeout", _MS, "Overrides the database's lock_timeout."),
    _opt("idle_timeout", _MS, "Overrides database and general idle_timeout."),
    _opt("read_only", _BOOL, "Connect with default_transaction_read_only=on."),
    _opt("server_lifetime", _MS, "Overrides database and general server_lifetime."),
    _opt("server_lifetime_jitter", _MS, "Overrides database and general server_lifetime_jitter."),
    _spec("replication_mode", _BOOL, False, "Connect with replication=database."),
    _opt("replication_sharding", _NAME, "Sharding configuration used for logical replication."),
    _spec("schema_admin", _BOOL, False, "This user owns schema changes (DDL) in sharded clusters."),
    _opt("cross_shard_disabled", _BOOL, "Overrides [general] cross_shard_disabled."),
    _opt("two_phase_commit", _BOOL, "Overrides [general] two_phase_commit."),
    _opt("two_phase_commit_auto", _BOOL, "Overrides [general] two_phase_commit_auto."),
    *_ROLE_KEYS,
)

# --- [admin] ------------------------------------------------------------------------------------

ADMIN_KEYS: tuple[KeySpec, ...] = (
    _spec("name", _NAME, "admin", "Database name of the admin console."),
    _spec("user", _NAME, "admin", "User name for the admin console."),
    _opt("password", _NAME, "Admin password; a random unusable one is generated when unset."),
)

# --- sections kept raw --------------------------------------------------------------------------

#: PgDog sections pgdog-ev accepts so existing files load, but does not interpret here. The value
#: says whether TOML writes them as one table (`[x]`) or an array of tables (`[[x]]`).
EXTRA_SECTIONS: Mapping[str, bool] = {
    "rewrite": False,
    "tcp": False,
    "multi_tenant": False,
    "plugins": True,
    "sharded_tables": True,
    "omnisharded_tables": True,
    "sharded_mappings": True,
    "sharded_schemas": True,
    "replica_lag": False,
    "replication": False,
    "mirroring": True,
    "memory": False,
    "otel": False,
    "vault": False,
    "query_parsers": True,
}


def index(keys: tuple[KeySpec, ...]) -> dict[str, KeySpec]:
    return {spec.name: spec for spec in keys}


GENERAL_BY_NAME: Mapping[str, KeySpec] = index(GENERAL_KEYS)
DATABASE_BY_NAME: Mapping[str, KeySpec] = index(DATABASE_KEYS)
USER_BY_NAME: Mapping[str, KeySpec] = index(USER_KEYS)
ADMIN_BY_NAME: Mapping[str, KeySpec] = index(ADMIN_KEYS)


def general_spec(key: str) -> KeySpec | None:
    """Look a [general] key up by canonical name or PgDog alias (admin SET, env)."""
    return GENERAL_BY_NAME.get(GENERAL_ALIASES.get(key, key))
