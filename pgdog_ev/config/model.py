"""The loaded configuration as immutable values.

Everything here is frozen so that a Config can be handed to every state machine without copying
and a reload is a swap of one reference; admin ``SET`` produces a new :class:`General` with
``dataclasses.replace`` rather than mutating the one in use. Times are integer milliseconds;
``None`` means "off / unlimited / inherit", and for query_timeout, client_idle_timeout and
client_idle_in_transaction_timeout a configured 0 is already folded into ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .digest import config_digest
from .pool_settings import PoolSettings, resolve_pool_settings

PoolerMode = Literal["transaction", "session"]
Role = Literal["primary", "replica", "auto"]
AuthType = Literal["scram", "md5", "plain", "trust"]
PassthroughAuth = Literal[
    "disabled", "enabled", "enabled_plain", "enabled_allow_change", "enabled_plain_allow_change"
]
LoadBalancingStrategy = Literal["random", "round_robin", "least_active_connections", "weighted_round_robin"]
ReadWriteStrategy = Literal["conservative", "aggressive"]
ReadWriteSplit = Literal[
    "include_primary", "exclude_primary", "include_primary_if_replica_banned", "prefer_primary"
]
PreparedStatementsMode = Literal["disabled", "extended", "extended_anonymous", "full"]
TlsVerify = Literal["disabled", "prefer", "verify_ca", "verify_full"]
ConnectionRecovery = Literal["recover", "rollback_only", "drop"]
ClientConnectionRecovery = Literal["recover", "drop"]
LogFormat = Literal["text", "json", "json_flattened"]


@dataclass(frozen=True)
class General:
    """``[general]`` of pgdog.toml: one attribute per key, named exactly as in the file.

    ``max_pool_size`` (PgDog alias) arrives as ``default_pool_size``. ``broadcast_port = None``
    means port + 1. ``event_log`` is already resolved against pgdog.toml's directory; "" = off.
    """

    # Listener and runtime.
    host: str = "0.0.0.0"
    port: int = 6432
    workers: int = 1
    broadcast_address: str | None = None
    broadcast_port: int | None = None

    # Pools (PoolSettings resolves per-user/per-database overrides).
    default_pool_size: int = 10
    min_pool_size: int = 1
    pooler_mode: PoolerMode = "transaction"
    idle_timeout: int = 60000
    server_lifetime: int = 86400000
    server_lifetime_jitter: int = 0
    checkout_timeout: int = 5000
    connect_timeout: int = 5000
    connect_attempts: int = 1
    connect_attempt_delay: int = 0
    query_timeout: int | None = None
    rollback_timeout: int = 5000
    connection_recovery: ConnectionRecovery = "recover"
    client_connection_recovery: ClientConnectionRecovery = "drop"

    # Clients.
    client_login_timeout: int = 60000
    client_idle_timeout: int | None = None
    client_idle_in_transaction_timeout: int | None = None
    shutdown_timeout: int = 60000
    shutdown_termination_timeout: int | None = None
    max_client_conn: int | None = None
    max_db_client_connections: int | None = None
    max_user_client_connections: int | None = None

    # Health checks and load balancing.
    healthcheck_interval: int = 30000
    idle_healthcheck_interval: int = 30000
    idle_healthcheck_delay: int = 5000
    healthcheck_timeout: int = 5000
    healthcheck_port: int | None = None
    require_healthcheck_on_discovery: bool = False
    ban_timeout: int = 300000
    ban_replica_lag: int | None = None
    ban_replica_lag_bytes: int | None = None
    load_balancing_strategy: LoadBalancingStrategy = "random"
    read_write_strategy: ReadWriteStrategy = "conservative"
    read_write_split: ReadWriteSplit = "include_primary"
    lsn_check_interval: int = 5000
    lsn_check_timeout: int = 5000
    lsn_check_delay: int | None = None

    # TLS and authentication.
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    tls_client_required: bool = False
    tls_client_ca_certificate: str | None = None
    tls_verify: TlsVerify = "prefer"
    tls_server_ca_certificate: str | None = None
    tls_server_certificate: str | None = None
    tls_server_private_key: str | None = None
    auth_type: AuthType = "scram"
    passthrough_auth: PassthroughAuth = "disabled"

    # Query parser and prepared statements.
    query_parser: str = "auto"
    query_parser_enabled: bool = False
    query_parser_engine: str = "pg_query_protobuf"
    regex_parser_limit: int = 1000
    query_cache_limit: int = 1000
    prepared_statements: PreparedStatementsMode = "extended"
    prepared_statements_limit: int | None = None
    prepared_statements_ttl: int | None = None
    prepared_statements_ttl_jitter: int = 30000
    query_size_limit: int | None = None
    query_size_limit_action: str = "warn"
    log_min_duration_parse: int | None = None

    # Sharding.
    cross_shard_disabled: bool = False
    system_catalogs: str = "omnisharded_sticky"
    omnisharded_sticky: bool = False
    dry_run: bool = False
    expanded_explain: bool = False
    load_schema: str = "auto"
    reload_schema_on_ddl: bool = True
    canonicalize_type_information: bool = False
    unique_id_min: int = 0
    unique_id_function: str = "standard"
    sharding_lookup_cache_size: int = 67108864
    sharding_lookup_timeout: int = 5000

    # Two-phase commit.
    two_phase_commit: bool = False
    two_phase_commit_auto: bool | None = None
    two_phase_commit_wal_dir: str | None = None
    two_phase_commit_wal_segment_size: int = 16777216
    two_phase_commit_wal_fsync_interval: int = 0
    two_phase_commit_wal_checkpoint_interval: int = 15000

    # Resharding.
    resharding_copy_format: str = "binary"
    resharding_parallel_copies: int = 1
    resharding_copy_retry_max_attempts: int = 5
    resharding_copy_retry_min_delay: int = 1000
    resharding_replication_retry_max_attempts: int = 5
    resharding_replication_retry_min_delay: int = 1000
    cutover_traffic_stop_threshold: int = 1000000
    cutover_replication_lag_threshold: int = 0
    cutover_last_transaction_delay: int = 1000
    cutover_timeout: int = 30000
    cutover_timeout_action: str = "abort"
    cutover_save_config: bool = False

    # Mirroring and pub/sub.
    mirror_queue: int = 128
    mirror_exposure: float = 1.0
    pub_sub_channel_size: int = 0

    # Observability.
    openmetrics_port: int | None = None
    openmetrics_host: str = "0.0.0.0"
    openmetrics_namespace: str | None = None
    stats_period: int = 15000
    query_log: str | None = None
    query_log_stdout: bool = False
    log_format: LogFormat = "text"
    log_level: str = "info"
    log_connections: bool = True
    log_disconnections: bool = True
    log_dedup_window: int = 0
    log_dedup_threshold: int = 0
    log_query_sample_length: int = 1000
    dns_ttl: int | None = None

    # pgdog-ev's own keys.
    max_message_size: int = 1073741824
    event_log: str = "pgdog-ev.evlog"
    event_log_max_bytes: int = 67108864
    event_log_keep: int = 4
    capture_inputs: bool = False
    capture_max_bytes: int = 67108864
    session_state: str = "pin"


@dataclass(frozen=True)
class DatabaseEntry:
    """One ``[[databases]]`` entry: one host of one shard of one logical database."""

    name: str
    host: str
    port: int = 5432
    database_name: str = ""
    user: str | None = None
    password: str | None = None
    role: Role = "primary"
    shard: int = 0
    pool_size: int | None = None
    min_pool_size: int | None = None
    max_db_client_connections: int | None = None
    pooler_mode: PoolerMode | None = None
    statement_timeout: int | None = None
    lock_timeout: int | None = None
    idle_timeout: int | None = None
    read_only: bool | None = None
    server_lifetime: int | None = None
    server_lifetime_jitter: int | None = None
    resharding_only: bool = False
    lb_weight: int = 255
    pool_size_primary: int | None = None
    pool_size_replica: int | None = None
    min_pool_size_primary: int | None = None
    min_pool_size_replica: int | None = None
    idle_timeout_primary: int | None = None
    idle_timeout_replica: int | None = None

    def __post_init__(self) -> None:
        # The server-side name defaults to the client-facing one; resolve it once here so no
        # consumer has to remember the fallback.
        if not self.database_name:
            object.__setattr__(self, "database_name", self.name)


@dataclass(frozen=True)
class UserEntry:
    """One user for one database.

    A users.toml entry with ``databases = [...]`` or ``all_databases = true`` becomes one
    UserEntry per database, so pools can always be keyed by (name, database). ``passwords`` holds
    ``password`` first, then ``passwords``, without duplicates; any of them logs the client in.
    """

    name: str
    database: str
    passwords: tuple[str, ...] = ()
    password_hash: str | None = None
    pool_size: int | None = None
    max_user_client_connections: int | None = None
    min_pool_size: int | None = None
    pooler_mode: PoolerMode | None = None
    server_user: str | None = None
    server_password: str | None = None
    statement_timeout: int | None = None
    lock_timeout: int | None = None
    idle_timeout: int | None = None
    read_only: bool | None = None
    server_lifetime: int | None = None
    server_lifetime_jitter: int | None = None
    replication_mode: bool = False
    schema_admin: bool = False
    cross_shard_disabled: bool | None = None
    two_phase_commit: bool | None = None
    two_phase_commit_auto: bool | None = None
    vault_path: str | None = None
    identity: str | None = None
    tls_client_certificate_required: bool | None = None
    server_auth: str = "password"
    server_iam_region: str | None = None
    server_vault_path: str | None = None
    vault_refresh_percent: int | None = None
    replication_sharding: str | None = None
    pool_size_primary: int | None = None
    pool_size_replica: int | None = None
    min_pool_size_primary: int | None = None
    min_pool_size_replica: int | None = None
    idle_timeout_primary: int | None = None
    idle_timeout_replica: int | None = None

    @property
    def password(self) -> str | None:
        """The first configured password, the one used towards servers when nothing else is set."""
        return self.passwords[0] if self.passwords else None


@dataclass(frozen=True)
class AdminConfig:
    """Credentials of the admin console database.

    ``password_generated`` marks the random default: nobody knows it, so the console is locked
    until an operator sets one; the CLI can say so instead of leaving people guessing.
    """

    name: str = "admin"
    user: str = "admin"
    password: str | None = None
    password_generated: bool = False


@dataclass(frozen=True)
class Config:
    """Everything loaded from pgdog.toml, users.toml, ``--database-url`` and the environment.

    ``extra_sections`` holds PgDog sections we accept but do not interpret (``[rewrite]``,
    ``[[sharded_tables]]``, ...) as parsed TOML. ``digest`` identifies the effective settings in the
    event-log header; see :mod:`pgdog_ev.config.digest` for what it covers.
    """

    general: General
    databases: tuple[DatabaseEntry, ...]
    users: tuple[UserEntry, ...]
    admin: AdminConfig
    extra_sections: dict[str, Any]
    config_path: str | None
    users_path: str | None
    digest: str

    @classmethod
    def build(
        cls,
        general: General | None = None,
        databases: tuple[DatabaseEntry, ...] = (),
        users: tuple[UserEntry, ...] = (),
        admin: AdminConfig | None = None,
        extra_sections: Mapping[str, Any] | None = None,
        *,
        config_path: str | None = None,
        users_path: str | None = None,
    ) -> Config:
        """Assemble a Config with its digest; for the loader and for tests that need a Config."""
        general = general if general is not None else General()
        admin = admin if admin is not None else AdminConfig()
        extra = dict(extra_sections or {})
        digest = config_digest(general, databases, users, admin, extra)
        return cls(general, tuple(databases), tuple(users), admin, extra, config_path, users_path, digest)

    def database_names(self) -> list[str]:
        """Logical database names in file order, each once."""
        return list(dict.fromkeys(entry.name for entry in self.databases))

    def hosts(self, name: str) -> list[DatabaseEntry]:
        """Every host entry (all shards and roles) of one logical database, in file order."""
        return [entry for entry in self.databases if entry.name == name]

    def users_for(self, database: str) -> list[UserEntry]:
        return [user for user in self.users if user.database == database]

    def user(self, name: str, database: str) -> UserEntry | None:
        for user in self.users:
            if user.name == name and user.database == database:
                return user
        return None

    def pool_settings(self, user: UserEntry, db: DatabaseEntry) -> PoolSettings:
        """Settings of the pool serving ``user`` on host entry ``db`` (user > database > general)."""
        return resolve_pool_settings(self.general, user, db)


__all__ = [
    "AdminConfig",
    "Config",
    "DatabaseEntry",
    "General",
    "PoolSettings",
    "UserEntry",
]
