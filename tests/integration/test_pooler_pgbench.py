"""pgbench through the proxy (16 clients on a transaction-mode pool of 4) and directly, for comparison.

The TPS lines of both runs are printed; run pytest with `-s` (or look at the captured output of a
failure) to see them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

import psycopg
import pytest

from tests.conftest import APP_PASSWORD, APP_USER
from tests.harness.pgserver import find_bindir

CLIENTS, THREADS, DURATION, POOL = 16, 2, 10, 4


def _pgbench() -> str:
    p = os.path.join(find_bindir(), "pgbench")
    if os.access(p, os.X_OK):
        return p
    found = shutil.which("pgbench")
    if not found:
        pytest.skip("pgbench not installed")
    return found


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = APP_PASSWORD
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _run(args: list[str], timeout: float) -> str:
    res = subprocess.run(
        [_pgbench(), *args], capture_output=True, text=True, timeout=timeout, env=_env(), stdin=subprocess.DEVNULL
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"pgbench {' '.join(args)} exited {res.returncode}:\n{out}"
    return out


def _summary(out: str) -> dict[str, str | int]:
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    tps = re.search(r"^tps = .*$", out, re.M)
    assert processed and tps, out
    return {
        "processed": int(processed.group(1)),
        # pgbench < 15 has no such line: it aborts a client on the first error instead.
        "failed": int(failed.group(1)) if failed else 0,
        "tps": tps.group(0),
    }


def test_pgbench_transaction_mode_vs_direct(pg, proxy_factory):
    db = f"bench_{uuid.uuid4().hex[:8]}"
    pg.create_database(db, owner=APP_USER)
    proxy = proxy_factory(
        general={"default_pool_size": POOL, "pooler_mode": "transaction", "checkout_timeout": 20000},
        databases=[{"name": db, "host": pg.host, "port": pg.port, "database_name": db}],
        users=[{"name": APP_USER, "database": db, "password": APP_PASSWORD}],
    )
    via = ["-h", proxy.host, "-p", str(proxy.port), "-U", APP_USER]
    direct = ["-h", pg.host, "-p", str(pg.port), "-U", APP_USER]

    init = _run(["-i", "-s", "1", "-q", *via, db], timeout=120)
    assert "done" in init, init
    with psycopg.connect(proxy.dsn(APP_USER, APP_PASSWORD, db), autocommit=True, connect_timeout=10) as c:
        assert c.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == (100_000,)
        assert c.execute("SELECT count(*) FROM pgbench_branches").fetchone() == (1,)

    bench = ["-M", "simple", "-c", str(CLIENTS), "-j", str(THREADS), "-T", str(DURATION), "-n"]
    out_proxy = _run([*bench, *via, db], timeout=DURATION + 60)
    s_proxy = _summary(out_proxy)
    out_direct = _run([*bench, *direct, db], timeout=DURATION + 60)
    s_direct = _summary(out_direct)
    print(f"\npgbench via proxy (pool {POOL}, {CLIENTS} clients): {s_proxy}")
    print(f"pgbench direct ({CLIENTS} clients):                 {s_direct}")

    assert s_proxy["failed"] == 0, out_proxy
    assert s_proxy["processed"] > 0, out_proxy
    # pgbench's history table has one row per transaction of both runs.
    with psycopg.connect(pg.dsn(APP_USER, db, APP_PASSWORD), autocommit=True, connect_timeout=10) as c:
        (history,) = c.execute("SELECT count(*) FROM pgbench_history").fetchone()
    assert history == s_proxy["processed"] + s_direct["processed"]
    # The proxy never opened more than its pool size of server connections for this database.
    assert int(pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'")) <= POOL
