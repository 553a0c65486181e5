"""PgJDBC, the real driver, through a transaction-mode proxy: each scenario of
tests/jdbc/JdbcScenarios.java runs against PostgreSQL itself and then against the proxy, and the two
transcripts (results, SQLSTATEs, update counts) must be the same.

JDBC is the client that leans hardest on the extended protocol: named statements past
prepareThreshold, binary transfer, executeBatch as one long pipeline, autosave savepoints, fetch
sizes (PortalSuspended), CopyManager, setQueryTimeout (a CancelRequest of its own) and the
catalogue queries of DatabaseMetaData. The pool has two servers; the `threads` scenario runs six
connections at once, so statements move between servers.

The JDK and Debian's libpostgresql-jdbc-java are installed by `make jdbc` (part of `make setup`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.certs import CertAuthority, Leaf
from tests.harness.config import app_database, app_user

SOURCE = Path(__file__).resolve().parents[1] / "jdbc" / "JdbcScenarios.java"
JAR = Path("/usr/share/java/postgresql.jar")
SCENARIOS = [
    "batch", "batch_rewritten", "copy", "deallocate", "errors", "fetch_size", "large_object", "metadata",
    "notify", "plan_change", "prepared", "settings", "simple_mode", "statement_cache", "threads", "timeout",
    "transactions", "types",
]  # fmt: skip


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JdbcScenarios compiled once per test process."""
    javac = shutil.which("javac")
    assert javac, "javac not found: `make jdbc` installs a JDK"
    assert JAR.exists(), f"{JAR} not found: `make jdbc` installs Debian's libpostgresql-jdbc-java"
    out = tmp_path_factory.mktemp("jdbc")
    done = subprocess.run([javac, "-nowarn", "-cp", str(JAR), "-d", str(out), str(SOURCE)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def proxy(pg, module_proxy_factory):
    return module_proxy_factory(
        general={"default_pool_size": 2, "pooler_mode": "transaction", "checkout_timeout": 20000},
        databases=[app_database(pg)],
        users=[app_user()],
    )


@pytest.fixture(scope="module")
def tls(pg, module_proxy_factory, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, str]:
    """A proxy that refuses clients without TLS, and the JDBC URL options that verify it."""
    ca = CertAuthority(str(tmp_path_factory.mktemp("jdbc-pki")), "jdbc CA")
    leaf: Leaf = ca.issue("proxy")
    proxy = module_proxy_factory(
        general={"default_pool_size": 2, "pooler_mode": "transaction", "checkout_timeout": 20000,
                 "tls_certificate": leaf.cert, "tls_private_key": leaf.key, "tls_client_required": True},
        databases=[app_database(pg)],
        users=[app_user()],
    )
    return proxy, f"?sslmode=verify-full&sslrootcert={ca.cert}"


def _java(classes: Path, url: str, table: str, scenario: str) -> subprocess.CompletedProcess[str]:
    """One scenario in a JVM of its own, without the PG* and JAVA_TOOL* variables of this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "JAVA_TOOL"))}
    return subprocess.run(
        ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", f"{JAR}{os.pathsep}{classes}", "JdbcScenarios",
         url, APP_USER, APP_PASSWORD, table, scenario],
        capture_output=True, text=True, timeout=240, env=env,
    )


def _run(classes: Path, host: str, port: int, table: str, scenario: str, options: str = "") -> list[str]:
    done = _java(classes, f"jdbc:postgresql://{host}:{port}/{APP_DB}{options}", table, scenario)
    assert done.returncode == 0, f"{scenario} against port {port} failed:\n{done.stdout}\n{done.stderr}"
    return [line.replace(table, "T") for line in done.stdout.splitlines()]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_jdbc_sees_what_postgres_gives(pg, proxy, classes, scenario):
    name = f"jdbc_{uuid.uuid4().hex[:8]}"
    want = _run(classes, pg.host, pg.port, f"{name}_d", scenario)
    assert want, "the scenario printed nothing"
    got = _run(classes, proxy.host, proxy.port, f"{name}_p", scenario)
    assert got == want


@pytest.mark.parametrize("scenario", ["copy", "notify", "prepared", "threads", "timeout"])
def test_jdbc_over_tls_sees_what_postgres_gives(pg, tls, classes, scenario):
    """sslmode=verify-full against a proxy with tls_client_required. The driver's CancelRequest
    (setQueryTimeout) goes out on a plaintext connection of its own, as PostgreSQL allows."""
    proxy, options = tls
    name = f"jdbc_{uuid.uuid4().hex[:8]}"
    want = _run(classes, pg.host, pg.port, f"{name}_d", scenario)
    got = _run(classes, proxy.host, proxy.port, f"{name}_p", scenario, options)
    assert got == want


def test_jdbc_without_tls_is_refused_by_a_proxy_that_requires_it(tls, classes):
    proxy, _ = tls
    done = _java(classes, f"jdbc:postgresql://{proxy.host}:{proxy.port}/{APP_DB}?sslmode=disable", "jdbc_plain",
                 "prepared")
    assert done.returncode != 0
    assert "TLS is required by this proxy" in done.stderr, done.stderr


def test_jdbc_transcripts_say_what_they_check(pg, classes):
    """The transcripts hold what the scenarios are for, so an equal pair is not two equal failures."""
    name = f"jdbc_{uuid.uuid4().hex[:8]}"
    run = {s: _run(classes, pg.host, pg.port, f"{name}_{s}", s)
           for s in ("batch", "copy", "large_object", "notify", "timeout", "transactions")}
    assert run["batch"] == ["batch of 500 counts 500", "duplicate: 23505", "table 500,124750,v0,v99"]
    assert run["copy"] == ["copied in 2000", "bad copy: 22P02", "copied out 2000 same true", "count 2000"]
    assert run["timeout"][:3] == ["sleep: 57014", "cancelled within 10 s true", "after 42"]
    assert run["notify"] == [
        "idle [T_chan:one, T_chan:two, T_chan:three]", "own [T_chan:self]", "in txn 7", "during txn []",
        "after commit [T_chan:during txn]", "after unlisten []", "still 8",
    ]
    assert run["large_object"][:3] == ["written, at 100000", "read 100000 same true",
                                       "at 50000 [-73, -42, -11, 20] size 100000"]
    assert run["large_object"][3:] == ["truncated, size 10", "after rollback size 100000", "open unlinked: 42704",
                                       "after 9"]
    assert run["transactions"][-2:] == ["other sees after 1,2", "isolation after read committed"]
