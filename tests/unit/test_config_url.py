"""--database-url / PGDOG_DATABASE_URL_<n>: one host entry and one user per URL."""

from __future__ import annotations

import pytest

from pgdog_ev.config import ConfigError, DatabaseEntry, load_config_text
from pgdog_ev.config.url import parse_database_url, redact


def entropy(n: int) -> bytes:
    return bytes(n)


def test_basic_url() -> None:
    entry = parse_database_url("postgres://alice:secret@db.example:5433/app")
    assert entry.database == DatabaseEntry(name="app", host="db.example", port=5433)
    assert entry.user.name == "alice" and entry.user.database == "app"
    assert entry.user.passwords == ("secret",)


def test_postgresql_scheme_and_defaults() -> None:
    entry = parse_database_url("postgresql://", default_user="me")
    assert entry.database.host == "127.0.0.1" and entry.database.port == 5432
    assert entry.database.name == "postgres"
    assert entry.user.name == "me" and entry.user.passwords == ("postgres",)


def test_percent_decoding() -> None:
    entry = parse_database_url(
        "postgres://us%40er:p%40ss%3Aw%2Fd@host/my%20db?database_name=real%2Fdb&user=srv%2B1"
    )
    assert entry.user.name == "us@er"
    assert entry.user.passwords == ("p@ss:w/d",)
    assert entry.database.name == "my db"
    assert entry.database.database_name == "real/db"
    assert entry.database.user == "srv+1"


def test_query_keys() -> None:
    url = (
        "postgres://u:p@h/app?role=replica&shard=1&pool_size=5&database_name=x&min_pool_size=2"
        "&pooler_mode=session&statement_timeout=3000&idle_timeout=10&read_only=true&server_lifetime=99"
        "&server_lifetime_jitter=7&password=srvpw&user=srv"
    )
    db = parse_database_url(url).database
    assert db.role == "replica" and db.shard == 1 and db.pool_size == 5
    assert db.database_name == "x" and db.min_pool_size == 2 and db.pooler_mode == "session"
    assert db.statement_timeout == 3000 and db.idle_timeout == 10 and db.read_only is True
    assert db.server_lifetime == 99 and db.server_lifetime_jitter == 7
    assert db.user == "srv" and db.password == "srvpw"


@pytest.mark.parametrize(
    ("url", "part", "text"),
    [
        ("mysql://u:p@h/app", "scheme", 'got "mysql"'),
        ("postgres://u:p@h/app?shrad=1", "shrad", 'unknown query key "shrad"'),
        ("postgres://u:p@h/app?shard=one", "shard", 'expected an integer, got "one"'),
        ("postgres://u:p@h/app?role=leader", "role", '"primary", "replica", "auto"'),
        ("postgres://u:p@h/app?pooler_mode=statement", "pooler_mode", "not supported"),
        ("postgres://u:p@h/app?shard=1&shard=2", "shard", "more than once"),
        ("postgres://u:p@h:notaport/app", "port", "malformed URL"),
        ("postgres://u:p@h:0/app", "port", "must be >= 1"),
        ("postgres://u:p@h/a/b", "database", "single database name"),
        ("postgres://u:p@h/app#frag", "fragment", "unexpected fragment"),
        ("postgres://u:p@h/app?shard", "query", "malformed query string"),
    ],
)
def test_bad_urls(url: str, part: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_database_url(url, index=2)
    error = info.value
    assert error.file == "--database-url"
    assert error.key == part
    assert error.table is not None and error.table.startswith("#2 ")
    assert text in str(error)
    assert str(error).startswith("--database-url: #2 ")


def test_password_not_in_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_database_url("postgres://u:topsecret@h/app?bogus=1")
    assert "topsecret" not in str(info.value)
    assert "u:***@h" in str(info.value)


def test_redact() -> None:
    assert redact("postgres://u:pw@h/db") == "postgres://u:***@h/db"
    assert redact("postgres://u@h/db") == "postgres://u@h/db"


def test_urls_replace_files() -> None:
    pgdog = '[general]\nport = 7000\n[[databases]]\nname = "fromfile"\nhost = "h"\n'
    users = '[[users]]\nname = "fileuser"\ndatabase = "fromfile"\n'
    config = load_config_text(
        pgdog,
        users,
        [
            "postgres://a:pw@primary/app",
            "postgres://a:pw@replica/app?role=replica",
            "postgres://b:x@primary/other",
        ],
        entropy=entropy,
    )
    assert config.general.port == 7000
    assert config.database_names() == ["app", "other"]
    assert [(db.host, db.role) for db in config.hosts("app")] == [
        ("primary", "primary"),
        ("replica", "replica"),
    ]
    # The repeated user collapses into one entry.
    assert [(user.name, user.database) for user in config.users] == [("a", "app"), ("b", "other")]


def test_urls_still_validate_files() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_config_text(
            None, '[[users]]\nname = "u"\ndatabase = "x"\nbad = 1\n', ["postgres://h/x"], entropy=entropy
        )


def test_conflicting_url_users() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(None, None, ["postgres://a:one@h1/app", "postgres://a:two@h2/app"], entropy=entropy)
    assert info.value.file == "--database-url" and info.value.table == "#2"


def test_duplicate_url_hosts_with_different_settings() -> None:
    with pytest.raises(ConfigError, match="duplicates #1"):
        load_config_text(
            None, None, ["postgres://a@h/app", "postgres://a@h/app?pool_size=3"], entropy=entropy
        )


def test_urls_from_env() -> None:
    env = {
        "PGDOG_DATABASE_URL_1": "postgres://a:pw@h1/app",
        "PGDOG_DATABASE_URL_2": "postgres://h2/app?role=replica",
        "PGDOG_DATABASE_URL_4": "postgres://ignored/after-gap",
        "USER": "envuser",
    }
    config = load_config_text(None, None, entropy=entropy, env=env)
    assert [db.host for db in config.databases] == ["h1", "h2"]
    assert [user.name for user in config.users] == ["a", "envuser"]
    with pytest.raises(ConfigError) as info:
        load_config_text(None, None, entropy=entropy, env={"PGDOG_DATABASE_URL_1": "http://x/y"})
    assert info.value.file == "PGDOG_DATABASE_URL_1"


def test_cli_urls_win_over_env_urls() -> None:
    env = {"PGDOG_DATABASE_URL_1": "postgres://envhost/app"}
    config = load_config_text(None, None, ["postgres://clihost/app"], entropy=entropy, env=env)
    assert [db.host for db in config.databases] == ["clihost"]
