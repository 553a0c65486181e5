"""PGDOG_<KEY> environment variables for [general]."""

from __future__ import annotations

import pytest

from pgdog_ev.config import ConfigError, General, load_config_text


def entropy(n: int) -> bytes:
    return bytes(n)


def general(pgdog: str | None, env: dict[str, str] | None) -> General:
    return load_config_text(pgdog, None, entropy=entropy, env=env).general


def test_env_sets_keys_absent_from_file() -> None:
    env = {
        "PGDOG_PORT": "7432",
        "PGDOG_CHECKOUT_TIMEOUT": "250",
        "PGDOG_POOLER_MODE": "Session",
        "PGDOG_DRY_RUN": "on",
        "PGDOG_MIRROR_EXPOSURE": "0.5",
        "PGDOG_OPENMETRICS_NAMESPACE": "pgdog_",
        "PGDOG_QUERY_TIMEOUT": "0",
        "PGDOG_MAX_POOL_SIZE": "4",
        "PGDOG_CLIENT_LOG_TIMEOUT": "123",
        "RUST_LOG": "debug",
    }
    g = general(None, env)
    assert g.port == 7432
    assert g.checkout_timeout == 250
    assert g.pooler_mode == "session"
    assert g.dry_run is True
    assert g.mirror_exposure == 0.5
    assert g.openmetrics_namespace == "pgdog_"
    assert g.query_timeout is None
    assert g.default_pool_size == 4  # alias variable
    assert g.client_login_timeout == 123  # PgDog's misspelt variable
    assert g.log_level == "debug"  # RUST_LOG, as in PgDog


def test_file_value_wins_over_env() -> None:
    g = general("[general]\nport = 6000\n", {"PGDOG_PORT": "7000", "PGDOG_IDLE_TIMEOUT": "1"})
    assert g.port == 6000
    assert g.idle_timeout == 1


def test_no_env_mapping_means_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGDOG_PORT", "7000")
    assert general(None, None).port == 6432


def test_pgdog_log_level_beats_rust_log() -> None:
    assert general(None, {"PGDOG_LOG_LEVEL": "warn", "RUST_LOG": "trace"}).log_level == "warn"


def test_empty_nullable_env_means_unset() -> None:
    assert general(None, {"PGDOG_TLS_CERTIFICATE": ""}).tls_certificate is None


@pytest.mark.parametrize(
    ("var", "value", "text"),
    [
        ("PGDOG_PORT", "abc", 'expected an integer, got "abc"'),
        ("PGDOG_CHECKOUT_TIMEOUT", "5s", 'expected an integer (milliseconds), got "5s"'),
        ("PGDOG_DRY_RUN", "maybe", "expected a boolean"),
        ("PGDOG_POOLER_MODE", "statement", "not supported"),
        ("PGDOG_DEFAULT_POOL_SIZE", "0", "must be >= 1"),
    ],
)
def test_bad_env_value_names_variable(var: str, value: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        general(None, {var: value})
    error = info.value
    assert error.file == "environment" and error.key == var
    assert str(error).startswith(f"environment: {var}: ")
    assert text in str(error)


def test_env_value_resolves_event_log_against_config_dir(tmp_path: object) -> None:
    from pathlib import Path

    from pgdog_ev.config import load_config

    base = Path(str(tmp_path))
    (base / "pgdog.toml").write_text("")
    config = load_config(str(base / "pgdog.toml"), None, entropy=entropy, env={"PGDOG_EVENT_LOG": "x.evlog"})
    assert Path(config.general.event_log) == base / "x.evlog"
