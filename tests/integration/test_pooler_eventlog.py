"""The event log after real traffic, decoded by `python -m pgdog_ev events`."""

from __future__ import annotations

import json
import re

import psycopg

from tests.conftest import APP_DB, APP_PASSWORD, APP_USER
from tests.harness.config import app_database, app_user
from tests.harness.events import run_events


def test_events_after_traffic(pg, proxy_factory, poll):
    proxy = proxy_factory(
        general={"default_pool_size": 1, "checkout_timeout": 5000},
        databases=[app_database(pg)],
        users=[app_user()],
    )
    dsn = proxy.dsn(APP_USER, APP_PASSWORD, APP_DB)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as a, psycopg.connect(
        dsn, autocommit=True, connect_timeout=10
    ) as b:
        for i in range(3):
            assert a.execute("SELECT %s::int", (i,)).fetchone() == (i,)
            assert b.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    # A live log can be decoded (it is flushed periodically).
    poll(lambda: "TRANSITION" in run_events(proxy.event_log_path).stdout, what="transitions in the live log")
    assert proxy.stop() == 0  # the pool closes at shutdown: a pool transition too

    res = run_events(proxy.event_log_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    line = r"^\S+Z \+\d+\.\d+s #\d+ "
    assert re.search(line + r"client:\d+ TRANSITION IDLE -> WAITING reason=\w+", out, re.M), out[-3000:]
    assert re.search(line + r"client:\d+ TRANSITION WAITING -> ACTIVE", out, re.M)
    assert re.search(line + r"client:\d+ TRANSITION ACTIVE -> IDLE", out, re.M)
    assert re.search(line + r"client:\d+ TRANSITION \w+ -> CLOSED", out, re.M)
    assert re.search(line + r"server:\d+ TRANSITION CONNECTING -> STARTUP", out, re.M)
    assert re.search(line + r"server:\d+ TRANSITION IDLE -> ACTIVE", out, re.M)
    assert re.search(line + r"pool:\d+ TRANSITION OPEN -> CLOSED", out, re.M)
    assert re.search(line + r"pool:\d+ CHECKOUT", out, re.M)
    # Sequence numbers increase.
    seqs = [int(m) for m in re.findall(r" #(\d+) ", out)]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))

    # Filters and JSON output.
    only = run_events(proxy.event_log_path, "--machine", "client", "--kind", "transition", "--tail", "5")
    assert only.returncode == 0, only.stderr
    lines = only.stdout.strip().splitlines()
    assert 1 <= len(lines) <= 5 and all(" client:" in ln and " TRANSITION " in ln for ln in lines), lines
    js = run_events(proxy.event_log_path, "--format", "json", "--tail", "3")
    assert js.returncode == 0, js.stderr
    records = [json.loads(ln) for ln in js.stdout.strip().splitlines()]
    assert len(records) == 3 and all(isinstance(r, dict) for r in records)
    # A bad file is an error (exit 1), not a traceback.
    bad = proxy.event_log_path + ".bad"
    with open(bad, "wb") as f:
        f.write(b"not an event log at all" * 10)
    res = run_events(bad)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
