"""pgbench through the proxy (16 clients on a transaction-mode pool of 4) and directly, for comparison.

The TPS lines of both runs are printed; run pytest with `-s` (or look at the captured output of a
failure) to see them.
"""

from __future__ import annotations

import re
import uuid

import psycopg

from tests.conftest import APP_PASSWORD, APP_USER
from tests.harness.config import app_database, app_user
from tests.harness.pgbench import run_pgbench

CLIENTS, THREADS, DURATION, POOL = 16, 2, 10, 4


def _run(args: list[str], timeout: float) -> str:
    return run_pgbench(args, timeout, APP_PASSWORD)


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


def test_pgbench_transaction_mode_vs_direct(pg, proxy_factory, poll):
    db = f"bench_{uuid.uuid4().hex[:8]}"
    pg.create_database(db, owner=APP_USER)
    proxy = proxy_factory(
        general={"default_pool_size": POOL, "pooler_mode": "transaction", "checkout_timeout": 20000},
        databases=[app_database(pg, db, db)],
        users=[app_user(db)],
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
    # The proxy holds no more than its pool size of server connections for this database. Backends
    # of the direct run and of the check above exit asynchronously after their clients leave, so
    # the count is polled; a pool that overshot would stay above POOL (its servers stay open).
    count = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"
    poll(lambda: int(pg.psql(count)) <= POOL, timeout=10, what=f"at most {POOL} backends on {db}")
