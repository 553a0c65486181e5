"""The command line: configuration errors from `configcheck` and `run`, `-d URL` without config
files, `--version`."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.config import app_database, app_user
from tests.harness.ports import free_port, wait_for_port
from tests.harness.proxy import REPO_ROOT, _child_env, dump_toml


def _cli(*args: str, cwd: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgdog_ev", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO_ROOT,
        env=_child_env(None), stdin=subprocess.DEVNULL,
    )


def _valid(pg) -> tuple[dict, dict]:
    config = {
        "general": {"host": "127.0.0.1", "port": free_port(), "default_pool_size": 2},
        "databases": [app_database(pg)],
    }
    users = {"users": [app_user()]}
    return config, users


def _write(tmp_path, config: dict, users: dict) -> tuple[str, str]:
    c, u = tmp_path / "pgdog.toml", tmp_path / "users.toml"
    c.write_text(dump_toml(config))
    u.write_text(dump_toml(users))
    return str(c), str(u)


def _break(kind: str, config: dict, users: dict) -> tuple[str, str, str]:
    """Damage the config; returns (which file, table label start, key)."""
    if kind == "general_unknown":
        config["general"]["bogus_general_key"] = 1
        return "config", "[general]", "bogus_general_key"
    if kind == "databases_unknown":
        config["databases"][0]["bogus_db_key"] = "x"
        return "config", "[[databases]]", "bogus_db_key"
    if kind == "users_unknown":
        users["users"][0]["bogus_user_key"] = True
        return "users", "[[users]]", "bogus_user_key"
    if kind == "general_type":
        config["general"]["default_pool_size"] = "ten"
        return "config", "[general]", "default_pool_size"
    if kind == "users_type":
        users["users"][0]["pool_size"] = [1, 2]
        return "users", "[[users]]", "pool_size"
    if kind == "databases_missing":
        del config["databases"][0]["host"]
        return "config", "[[databases]]", "host"
    if kind == "users_missing":
        del users["users"][0]["name"]
        return "users", "[[users]]", "name"
    raise AssertionError(kind)


KINDS = [
    "general_unknown",
    "databases_unknown",
    "users_unknown",
    "general_type",
    "users_type",
    "databases_missing",
    "users_missing",
]


@pytest.mark.parametrize("kind", KINDS)
def test_config_errors_name_file_table_key(pg, tmp_path, kind):
    config, users = _valid(pg)
    which, table, key = _break(kind, config, users)
    config_path, users_path = _write(tmp_path, config, users)
    path = config_path if which == "config" else users_path

    check = _cli("configcheck", "-c", config_path, "-u", users_path)
    assert check.returncode != 0, check.stdout
    err = check.stderr
    assert path in err and table in err and key in err, err
    assert "Traceback" not in err and "Traceback" not in check.stdout
    message = next(line for line in err.splitlines() if key in line)

    run = _cli("run", "-c", config_path, "-u", users_path, timeout=20)
    assert run.returncode != 0
    assert message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    # It did not start listening anyway.
    assert "listening" not in run.stderr + run.stdout


def test_configcheck_accepts_valid_config(pg, tmp_path):
    config_path, users_path = _write(tmp_path, *_valid(pg))
    res = _cli("configcheck", "-c", config_path, "-u", users_path)
    assert res.returncode == 0, res.stderr
    assert "1 databases, 1 users" in res.stdout or "OK" in res.stdout


def test_database_url_without_config_files(pg, tmp_path):
    port = free_port()
    url = f"postgres://{APP_USER}:{APP_PASSWORD}@{pg.host}:{pg.port}/{APP_DB}"
    env = _child_env({"PGDOG_PORT": str(port), "PGDOG_HOST": "127.0.0.1"})
    log = open(tmp_path / "proxy.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgdog_ev", "run", "-d", url],
        cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert not (tmp_path / "pgdog.toml").exists() and not (tmp_path / "users.toml").exists()
        assert wait_for_port("127.0.0.1", port, timeout=20, proc=proc), (tmp_path / "proxy.log").read_text()
        dsn = f"host=127.0.0.1 port={port} user={APP_USER} password={APP_PASSWORD} dbname={APP_DB}"
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (APP_USER, APP_DB)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(dsn.replace(APP_PASSWORD, "wrong"), connect_timeout=10)
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()


def test_version():
    res = _cli("--version")
    assert res.returncode == 0
    out = (res.stdout + res.stderr).strip()
    assert out.startswith("pgdog-ev ") and any(ch.isdigit() for ch in out), out
