"""Loading pgdog.toml / users.toml: defaults, sections, users expansion, admin, cross-checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pgdog_ev.config import (
    AdminConfig,
    Config,
    ConfigError,
    DatabaseEntry,
    General,
    UserEntry,
    load_config,
    load_config_text,
)


def entropy(n: int) -> bytes:
    return bytes(range(n))


def load(pgdog: str | None = None, users: str | None = None, **kwargs: object) -> Config:
    return load_config_text(pgdog, users, entropy=entropy, **kwargs)  # type: ignore[arg-type]


APP = """
[[databases]]
name = "app"
host = "127.0.0.1"
"""

APP_USER = """
[[users]]
name = "alice"
database = "app"
password = "pw"
"""


# --- defaults -----------------------------------------------------------------------------------

# PgDog's documented defaults for the keys the proxy uses (reference section 1.23 / 3).
REFERENCE_DEFAULTS = {
    "host": "0.0.0.0",
    "port": 6432,
    "workers": 1,  # pgdog-ev: processes, not PgDog's Tokio threads (whose default is 2)
    "default_pool_size": 10,
    "min_pool_size": 1,
    "pooler_mode": "transaction",
    "idle_timeout": 60000,
    "server_lifetime": 86400000,
    "server_lifetime_jitter": 0,
    "checkout_timeout": 5000,
    "connect_timeout": 5000,
    "connect_attempts": 1,
    "connect_attempt_delay": 0,
    "query_timeout": None,
    "rollback_timeout": 5000,
    "connection_recovery": "recover",
    "client_connection_recovery": "drop",
    "client_login_timeout": 60000,
    "client_idle_timeout": None,
    "client_idle_in_transaction_timeout": None,
    "shutdown_timeout": 60000,
    "shutdown_termination_timeout": None,
    "healthcheck_interval": 30000,
    "idle_healthcheck_interval": 30000,
    "idle_healthcheck_delay": 5000,
    "healthcheck_timeout": 5000,
    "healthcheck_port": None,
    "ban_timeout": 300000,
    "ban_replica_lag": None,
    "ban_replica_lag_bytes": None,
    "load_balancing_strategy": "random",
    "read_write_strategy": "conservative",
    "read_write_split": "include_primary",
    "lsn_check_interval": 5000,
    "lsn_check_timeout": 5000,
    "lsn_check_delay": None,
    "tls_certificate": None,
    "tls_private_key": None,
    "tls_client_required": False,
    "tls_client_ca_certificate": None,
    "tls_verify": "prefer",
    "tls_server_ca_certificate": None,
    "tls_server_certificate": None,
    "tls_server_private_key": None,
    "auth_type": "scram",
    "passthrough_auth": "disabled",
    "query_parser": "auto",
    "query_cache_limit": 1000,
    "prepared_statements": "extended",
    "prepared_statements_limit": None,
    "openmetrics_port": None,
    "openmetrics_host": "0.0.0.0",
    "openmetrics_namespace": None,
    "stats_period": 15000,
    "log_format": "text",
    "log_level": "info",
    "log_connections": True,
    "log_disconnections": True,
    "dry_run": False,
    "cross_shard_disabled": False,
    "two_phase_commit": False,
    "two_phase_commit_auto": None,
    "two_phase_commit_wal_dir": None,
    "unique_id_min": 0,
    "mirror_queue": 128,
    "mirror_exposure": 1.0,
    "pub_sub_channel_size": 0,
    "max_client_conn": None,
    "max_message_size": 1073741824,
    "event_log": "pgdog-ev.evlog",
    "event_log_max_bytes": 67108864,
    "event_log_keep": 4,
    "capture_inputs": False,
    "capture_max_bytes": 67108864,
}


def test_defaults_match_reference() -> None:
    config = load_config(None, None, entropy=entropy)
    for key, expected in REFERENCE_DEFAULTS.items():
        assert getattr(config.general, key) == expected, key
    assert config.general == General()
    assert config.databases == ()
    assert config.users == ()
    assert config.extra_sections == {}
    assert config.config_path is None and config.users_path is None


def test_empty_files_give_defaults() -> None:
    assert load("", "").general == General()


def test_general_values_are_typed() -> None:
    config = load(
        """
[general]
port = 7000
max_pool_size = 3
pooler_mode = "session"
query_timeout = 1500
mirror_exposure = 1
tls_client_required = true
openmetrics_namespace = "pgdog_"
"""
    )
    general = config.general
    assert general.port == 7000
    assert general.default_pool_size == 3  # PgDog alias
    assert general.pooler_mode == "session"
    assert general.query_timeout == 1500
    assert general.mirror_exposure == 1.0 and isinstance(general.mirror_exposure, float)
    assert general.tls_client_required is True
    assert general.openmetrics_namespace == "pgdog_"


@pytest.mark.parametrize(
    "key", ["query_timeout", "client_idle_timeout", "client_idle_in_transaction_timeout"]
)
def test_zero_timeout_means_off(key: str) -> None:
    assert getattr(load(f"[general]\n{key} = 0\n").general, key) is None


def test_port_zero_allowed_for_listener_only() -> None:
    assert load("[general]\nport = 0\n").general.port == 0
    with pytest.raises(ConfigError):
        load("[general]\nopenmetrics_port = 0\n")


def test_every_pgdog_general_key_parses() -> None:
    """A file using PgDog-only keys must load (users move their files over unchanged)."""
    config = load(
        """
[general]
broadcast_address = "10.0.0.255"
broadcast_port = 6433
require_healthcheck_on_discovery = true
query_parser_enabled = false
query_parser_engine = "pg_query_raw"
regex_parser_limit = 500
prepared_statements_ttl = 60000
prepared_statements_ttl_jitter = 1000
query_size_limit = 100000
query_size_limit_action = "block"
log_min_duration_parse = 10
system_catalogs = "sharded"
omnisharded_sticky = true
expanded_explain = true
load_schema = "off"
reload_schema_on_ddl = false
canonicalize_type_information = true
unique_id_function = "compact"
sharding_lookup_cache_size = 1024
sharding_lookup_timeout = 100
two_phase_commit_wal_segment_size = 1048576
two_phase_commit_wal_fsync_interval = 2
two_phase_commit_wal_checkpoint_interval = 60
resharding_copy_format = "text"
resharding_parallel_copies = 2
resharding_copy_retry_max_attempts = 3
resharding_copy_retry_min_delay = 10
resharding_replication_retry_max_attempts = 0
resharding_replication_retry_min_delay = 10
cutover_traffic_stop_threshold = 10
cutover_replication_lag_threshold = 0
cutover_last_transaction_delay = 5
cutover_timeout = 100
cutover_timeout_action = "cutover"
cutover_save_config = true
query_log = "queries.log"
query_log_stdout = true
log_dedup_window = 1000
log_dedup_threshold = 5
log_query_sample_length = 80
dns_ttl = 30000
log_format = "json"
log_level = "debug,pgdog=trace"
"""
    )
    assert config.general.query_parser_engine == "pg_query_raw"
    assert config.general.cutover_timeout_action == "cutover"


def test_extra_sections_kept_raw() -> None:
    config = load(
        """
[rewrite]
enabled = true
shard_key = "rewrite"

[[sharded_tables]]
database = "app"
column = "tenant_id"

[[sharded_tables.mapping]]
values = [1, 2]
shard = 0

[tcp]
keepalive = false

[[plugins]]
name = "x"
"""
    )
    assert config.extra_sections["rewrite"] == {"enabled": True, "shard_key": "rewrite"}
    assert config.extra_sections["sharded_tables"][0]["mapping"][0]["values"] == [1, 2]
    assert config.extra_sections["tcp"] == {"keepalive": False}
    assert config.extra_sections["plugins"] == [{"name": "x"}]


# --- databases and users ------------------------------------------------------------------------


def test_database_entry_defaults_and_database_name() -> None:
    config = load(
        APP + '\n[[databases]]\nname = "app"\nhost = "replica"\nrole = "replica"\ndatabase_name = "real"\n'
    )
    primary, replica = config.databases
    assert primary == DatabaseEntry(name="app", host="127.0.0.1")
    assert primary.port == 5432 and primary.role == "primary" and primary.shard == 0
    assert primary.database_name == "app" and primary.lb_weight == 255
    assert replica.role == "replica" and replica.database_name == "real"
    assert config.database_names() == ["app"]
    assert config.hosts("app") == [primary, replica]
    assert config.hosts("nope") == []


def test_users_merge_passwords_and_lookup() -> None:
    config = load(
        APP,
        """
[[users]]
name = "alice"
database = "app"
password = "one"
passwords = ["two", "one", "three"]
""",
    )
    (alice,) = config.users
    assert alice.passwords == ("one", "two", "three")
    assert alice.password == "one"
    assert config.user("alice", "app") is alice
    assert config.user("alice", "other") is None
    assert config.users_for("app") == [alice]


def test_user_with_several_databases_is_expanded() -> None:
    pgdog = APP + '\n[[databases]]\nname = "b"\nhost = "h"\n[[databases]]\nname = "c"\nhost = "h"\n'
    config = load(
        pgdog,
        """
[[users]]
name = "multi"
databases = ["b", "app"]
password = "x"

[[users]]
name = "everyone"
all_databases = true
password_hash = "md5d41d8cd98f00b204e9800998ecf8427e"
""",
    )
    pairs = [(user.name, user.database) for user in config.users]
    assert pairs == [
        ("multi", "b"),
        ("multi", "app"),
        ("everyone", "app"),
        ("everyone", "b"),
        ("everyone", "c"),
    ]
    assert config.user("everyone", "c").password_hash == "md5d41d8cd98f00b204e9800998ecf8427e"  # type: ignore[union-attr]


def test_scram_password_hash_accepted() -> None:
    verifier = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVka2V5c3RvcmVka2V5:c2VydmVya2V5c2VydmVya2V5"
    users = f'[[users]]\nname = "a"\ndatabase = "app"\npassword_hash = "{verifier}"\n'
    assert load(APP, users).users[0].password_hash == verifier


def test_event_log_resolves_against_config_dir(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "pgdog.toml").write_text('[general]\nevent_log = "logs/ev.evlog"\n')
    config = load_config(str(conf_dir / "pgdog.toml"), None, entropy=entropy)
    assert Path(config.general.event_log) == conf_dir / "logs" / "ev.evlog"
    assert config.config_path == str(conf_dir / "pgdog.toml")
    (conf_dir / "abs.toml").write_text(f'[general]\nevent_log = "{tmp_path / "x.evlog"}"\n')
    assert load_config(str(conf_dir / "abs.toml"), None, entropy=entropy).general.event_log == str(
        tmp_path / "x.evlog"
    )
    (conf_dir / "off.toml").write_text('[general]\nevent_log = ""\n')
    assert load_config(str(conf_dir / "off.toml"), None, entropy=entropy).general.event_log == ""
    # Default value is relative too, so it lands next to pgdog.toml.
    (conf_dir / "default.toml").write_text("")
    assert Path(load_config(str(conf_dir / "default.toml"), None, entropy=entropy).general.event_log) == (
        conf_dir / "pgdog-ev.evlog"
    )


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(missing, None, entropy=entropy)
    assert info.value.file == missing
    with pytest.raises(ConfigError, match="not found"):
        load_config(None, missing, entropy=entropy)
    with pytest.raises(ConfigError, match="directory"):
        load_config(str(tmp_path), None, entropy=entropy)


def test_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "pgdog.toml"
    path.write_bytes(b'[general]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match=r"UTF-8.*line 2"):
        load_config(str(path), None, entropy=entropy)


# --- admin --------------------------------------------------------------------------------------


def test_admin_password_generated_from_entropy() -> None:
    admin = load().admin
    assert admin.name == "admin" and admin.user == "admin"
    assert admin.password_generated
    assert admin.password is not None and admin.password.startswith("_pgdog_")
    assert len(admin.password) == len("_pgdog_") + 12
    # Deterministic given the entropy source, different for a different one.
    assert load().admin == admin
    other = load_config_text(None, None, entropy=lambda n: bytes([7]) * n).admin
    assert other.password != admin.password


def test_admin_from_users_toml_wins() -> None:
    pgdog = '[admin]\nname = "pgdog_admin"\nuser = "pgdog_user"\npassword = "from-pgdog"\n'
    users = '[admin]\nuser = "users_user"\npassword = "from-users"\n'
    assert load(pgdog).admin == AdminConfig("pgdog_admin", "pgdog_user", "from-pgdog", False)
    # The users.toml section replaces pgdog.toml's whole, as in PgDog.
    assert load(pgdog, users).admin == AdminConfig("admin", "users_user", "from-users", False)


def test_admin_password_from_env() -> None:
    env = {"PGDOG_ADMIN_PASSWORD": "envpw"}
    assert load(env=env).admin == AdminConfig("admin", "admin", "envpw", False)
    # A password written in a file is kept (the variable only fills a gap, like in PgDog).
    assert load('[admin]\npassword = "file"\n', env=env).admin.password == "file"


# --- cross-checks -------------------------------------------------------------------------------


def test_duplicate_database_entry() -> None:
    with pytest.raises(ConfigError) as info:
        load(APP + APP)
    error = info.value
    assert error.file == "pgdog.toml" and error.table == '[[databases]] #2 (name "app")'
    assert "duplicates [[databases]] #1" in str(error)


def test_same_host_different_shard_is_fine() -> None:
    config = load(APP + '\n[[databases]]\nname = "app"\nhost = "127.0.0.1"\nshard = 1\n')
    assert [db.shard for db in config.databases] == [0, 1]


def test_user_naming_unknown_database_lists_known() -> None:
    users = '[[users]]\nname = "bob"\ndatabase = "ap"\n'
    with pytest.raises(ConfigError) as info:
        load(APP + '\n[[databases]]\nname = "other"\nhost = "h"\n', users)
    error = info.value
    assert (error.file, error.table, error.key) == ("users.toml", '[[users]] #1 (name "bob")', "database")
    assert 'no [[databases]] entry named "ap"' in str(error)
    assert '"app", "other"' in str(error)


def test_user_unknown_database_with_no_databases() -> None:
    with pytest.raises(ConfigError, match="none configured"):
        load(None, '[[users]]\nname = "bob"\ndatabase = "app"\n')


def test_duplicate_user() -> None:
    with pytest.raises(ConfigError) as info:
        load(APP, APP_USER + APP_USER)
    assert info.value.table == '[[users]] #2 (name "alice")' and info.value.key == "name"
    assert "already defined by [[users]] #1" in str(info.value)


def test_user_missing_database() -> None:
    with pytest.raises(ConfigError) as info:
        load(APP, '[[users]]\nname = "bob"\npassword = "x"\n')
    assert str(info.value).startswith(
        'users.toml: [[users]] #1 (name "bob"): missing required key "database"'
    )
    assert info.value.key == "database"


def test_pool_size_must_be_positive() -> None:
    for text in ("[general]\ndefault_pool_size = 0\n", APP.replace('"127.0.0.1"', '"h"\npool_size = 0')):
        with pytest.raises(ConfigError, match="must be >= 1, got 0"):
            load(text)
    with pytest.raises(ConfigError, match="must be >= 1"):
        load(APP, APP_USER + "pool_size = 0\n")


def test_min_pool_size_above_pool_size() -> None:
    with pytest.raises(ConfigError) as info:
        load("[general]\nmin_pool_size = 11\n")
    assert (info.value.table, info.value.key) == ("[general]", "min_pool_size")

    with pytest.raises(ConfigError) as info:
        load(APP, APP_USER + "pool_size = 2\nmin_pool_size = 3\n")
    assert info.value.file == "users.toml" and info.value.key == "min_pool_size"

    # general min 5 is fine for general max 10 but not for this user's pool of 2.
    with pytest.raises(ConfigError) as info:
        load("[general]\nmin_pool_size = 5\n" + APP, APP_USER + "pool_size = 2\n")
    message = str(info.value)
    assert info.value.file == "users.toml" and info.value.key == "pool_size"
    assert "min_pool_size 5 (from [general] min_pool_size)" in message
    assert 'pool_size 2 (from [[users]] #1 (name "alice") pool_size)' in message


def test_config_build_and_replace() -> None:
    config = Config.build(
        databases=(DatabaseEntry("app", "h"),),
        users=(UserEntry("u", "app", ("p",)),),
    )
    assert config.general == General() and config.admin == AdminConfig()
    assert len(config.digest) == 64
    tweaked = dataclasses.replace(config.general, checkout_timeout=1)
    assert tweaked.checkout_timeout == 1 and config.general.checkout_timeout == 5000
