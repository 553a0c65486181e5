"""Merging what several workers answer: admin SHOW tables into one, metrics families into one
scrape. The rows here are small and made by hand so every merged value can be checked."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import CollectorRegistry

from pgdog_ev.admin.merge import merge_show, merge_workers
from pgdog_ev.admin.resultset import Table, int8
from pgdog_ev.admin.show_pools import DATABASE_COLUMNS, LIST_COLUMNS, POOL_COLUMNS
from pgdog_ev.admin.show_sessions import CLIENT_COLUMNS, pick
from pgdog_ev.admin.show_stats import AVERAGES, KEY_COLUMNS, TOTALS, _avg_columns
from pgdog_ev.admin.show_workers import WORKER_COLUMNS
from pgdog_ev.metrics.exposition import render
from pgdog_ev.metrics.http import Request
from pgdog_ev.metrics.merge import MergedCollector, merge_families

KEY = ["app", "alice", "127.0.0.1", 5432, 0, "primary"]


def row(columns: list[tuple[str, int]], **values: Any) -> list[Any]:
    """A row with every column 0/False/None but the ones given."""
    defaults = {16: False, 25: None, 20: 0, 701: 0.0}
    out = [values.pop(name) if name in values else defaults[oid] for name, oid in columns]
    assert not values, f"unknown columns {values}"
    return out


def get(table: Table, r: int, name: str) -> Any:
    return table.rows[r][table.index(name)]


def pool(**values: Any) -> list[Any]:
    key = dict(zip(("database", "user", "addr", "port", "shard", "role"), KEY, strict=True))
    return row(POOL_COLUMNS, **{**key, **values})


def test_pools_one_row_per_pool_counts_summed_flags_combined() -> None:
    w0 = Table(list(POOL_COLUMNS), [pool(id=1, cl_waiting=2, sv_idle=1, sv_active=1, sv_total=2, cl_active=5,
                                          maxwait=1, maxwait_us=200, paused=False, healthy=True, online=True,
                                          pool_mode="transaction", errors=1)])
    w1 = Table(list(POOL_COLUMNS), [pool(id=9, cl_waiting=1, sv_idle=0, sv_active=2, sv_total=2, cl_active=3,
                                          maxwait=0, maxwait_us=900_000, paused=True, healthy=False, online=True,
                                          pool_mode="transaction", last_error="refused")])
    merged = merge_show("pools", [(1, w1), (0, w0)])  # the asking worker (1) first
    assert len(merged.rows) == 1 and merged.columns == POOL_COLUMNS  # nothing added to PgBouncer's columns
    assert get(merged, 0, "id") == 9  # the asking worker's id: the one its BAN [id] understands
    assert [get(merged, 0, c) for c in ("cl_waiting", "sv_idle", "sv_active", "sv_total", "cl_active", "errors")] \
        == [3, 1, 3, 4, 8, 1]
    assert (get(merged, 0, "maxwait"), get(merged, 0, "maxwait_us")) == (1, 200)  # the longest wait anywhere
    assert get(merged, 0, "paused") is True and get(merged, 0, "healthy") is False
    assert get(merged, 0, "online") is True and get(merged, 0, "last_error") == "refused"
    assert merged.encode()  # still valid protocol


def test_pools_only_in_one_worker_keep_their_row() -> None:
    other = ["app", "bob", "127.0.0.1", 5432, 0, "primary"]
    w0 = Table(list(POOL_COLUMNS), [pool(id=1, sv_total=1)])
    w1 = Table(list(POOL_COLUMNS), [pool(id=1, sv_total=2),
                                    row(POOL_COLUMNS, **dict(zip(("database", "user", "addr", "port", "shard",
                                                                  "role"), other, strict=True)), id=2, sv_total=4)])
    merged = merge_show("pools", [(0, w0), (1, w1)])
    assert [(get(merged, i, "user"), get(merged, i, "sv_total")) for i in range(2)] == [("alice", 3), ("bob", 4)]


def stats_row(**values: Any) -> list[Any]:
    columns = KEY_COLUMNS + [int8(f"total_{n}") for n in TOTALS] + _avg_columns("avg_")
    return row(columns, **dict(zip(("database", "user", "addr", "port", "shard", "role"), KEY, strict=True)),
               **values)


def test_stats_totals_add_rates_add_mean_times_are_weighted() -> None:
    columns = KEY_COLUMNS + [int8(f"total_{n}") for n in TOTALS] + _avg_columns("avg_")
    w0 = Table(columns, [stats_row(total_query_count=10, total_xact_time=500, avg_xact_count=3.0,
                                   avg_xact_time=100, avg_query_count=1.5, avg_query_time=10,
                                   avg_server_assignment_count=0.0, avg_wait_time=0)])
    w1 = Table(columns, [stats_row(total_query_count=5, total_xact_time=100, avg_xact_count=1.0,
                                   avg_xact_time=500, avg_query_count=0.0, avg_query_time=0,
                                   avg_server_assignment_count=2.0, avg_wait_time=40)])
    merged = merge_show("stats", [(0, w0), (1, w1)])
    assert get(merged, 0, "total_query_count") == 15 and get(merged, 0, "total_xact_time") == 600
    assert get(merged, 0, "avg_xact_count") == 4.0
    assert get(merged, 0, "avg_xact_time") == 200  # (3 * 100 + 1 * 500) / 4
    assert get(merged, 0, "avg_query_time") == 10  # the idle worker's 0 ms weighs nothing
    assert get(merged, 0, "avg_wait_time") == 40
    def averages(xacts: float, xact_time: int) -> Table:
        values = {"xact_count": xacts, "xact_time": xact_time}
        return Table(KEY_COLUMNS + _avg_columns(""), [KEY + [values.get(n, 0) for n in AVERAGES]])

    merged = merge_show("stats_averages", [(0, averages(1.0, 30)), (1, averages(3.0, 10))])
    assert (get(merged, 0, "xact_count"), get(merged, 0, "xact_time")) == (4.0, 15)


def test_databases_and_lists_add_the_workers_shares() -> None:
    entry = {"name": "app", "host": "127.0.0.1", "port": 5432, "database": "app", "shard": 0, "role": "primary",
             "pool_mode": "transaction"}
    w0 = Table(list(DATABASE_COLUMNS), [row(DATABASE_COLUMNS, **entry, pool_size=5, min_pool_size=1,
                                            max_connections=5, current_connections=2, max_client_connections=50,
                                            current_client_connections=3)])
    w1 = Table(list(DATABASE_COLUMNS), [row(DATABASE_COLUMNS, **entry, pool_size=5, min_pool_size=0,
                                            max_connections=5, current_connections=1, max_client_connections=50,
                                            current_client_connections=4, paused=True)])
    merged = merge_show("databases", [(0, w0), (1, w1)])
    assert [get(merged, 0, c) for c in ("pool_size", "min_pool_size", "max_connections", "current_connections",
                                        "max_client_connections", "current_client_connections", "paused")] \
        == [10, 1, 10, 3, 100, 7, True]
    lists = merge_show("lists", [(0, Table(list(LIST_COLUMNS), [[1, 2, 2, 3, 0, 1, 2, 1, 0]])),
                                 (1, Table(list(LIST_COLUMNS), [[1, 2, 2, 4, 1, 0, 1, 1, 1]]))])
    assert lists.rows == [[1, 2, 2, 7, 1, 1, 3, 2, 1]]


def client(cid: int, state: str) -> list[Any]:
    return row(CLIENT_COLUMNS, id=cid, user="alice", database="app", state=state)


def test_clients_are_listed_by_id_with_their_worker_appended() -> None:
    w0 = Table(list(CLIENT_COLUMNS), [client(2, "idle"), client(6, "active")])
    w1 = Table(list(CLIENT_COLUMNS), [client(3, "idle"), client(5, "waiting")])
    merged = merge_show("clients", [(1, w1), (0, w0)])
    assert merged.columns[:-1] == CLIENT_COLUMNS and merged.columns[-1] == ("worker", 20)
    assert [(get(merged, i, "id"), get(merged, i, "worker")) for i in range(4)] == [(2, 0), (3, 1), (5, 1), (6, 0)]
    picked = pick(merged, ("worker,", "state"))
    assert picked.rows == [[0, "idle"], [1, "idle"], [1, "waiting"], [0, "active"]]


def test_events_interleave_by_time_and_keep_the_last_n() -> None:
    columns = [("seq", 20), ("time", 25), ("machine", 25), ("id", 20), ("kind", 25), ("event", 25)]
    w0 = Table(columns, [[1, "2026-01-01T00:00:01.000000Z", "client", 2, "NOTE", ""],
                         [2, "2026-01-01T00:00:03.000000Z", "client", 2, "NOTE", ""]])
    w1 = Table(columns, [[1, "2026-01-01T00:00:02.000000Z", "client", 3, "NOTE", ""],
                         [2, None, "client", 3, "NOTE", ""]])
    merged = merge_show("events", [(0, w0), (1, w1)], ("3",))
    assert [(r[1], r[-1]) for r in merged.rows] == [
        ("2026-01-01T00:00:02.000000Z", 1), ("2026-01-01T00:00:03.000000Z", 0), (None, 1)]


def test_different_columns_are_a_mixed_daemon() -> None:
    with pytest.raises(ValueError):
        merge_show("pools", [(0, Table(list(POOL_COLUMNS), [])), (1, Table(list(POOL_COLUMNS[:-1]), []))])


def test_show_workers_has_a_row_for_a_worker_that_did_not_answer() -> None:
    up = Table(list(WORKER_COLUMNS), [[0, 111, "up", 4, 2, 1, 3, 1, 0, "2026-01-01 00:00:00.000 UTC"]])
    meta = {0: {"pid": 111, "state": "up", "restarts": 2}, 1: {"pid": 222, "state": "up", "restarts": 0},
            2: {"pid": None, "state": "down", "restarts": 5}}
    merged = merge_workers([(0, up)], meta, 3)
    names = [name for name, _ in WORKER_COLUMNS]
    rows = [dict(zip(names, r, strict=True)) for r in merged.rows]
    assert [(r["worker"], r["pid"], r["state"], r["restarts"]) for r in rows] == [
        (0, 111, "up", 2), (1, 222, "no answer", 0), (2, None, "down", 5)]
    assert rows[0]["clients"] == 4 and rows[1]["clients"] is None


# --- metrics -----------------------------------------------------------------------------------


def family(name: str, kind: str, *samples: tuple[str, dict[str, str], float]) -> dict[str, Any]:
    return {"name": name, "type": kind, "help": f"{name} help", "unit": "",
            "samples": [[n, labels, v] for n, labels, v in samples]}


A = {"user": "alice", "database": "app"}
B = {"user": "bob", "database": "app"}


def test_metric_families_are_summed_per_label_set() -> None:
    w0 = [family("queries", "counter", ("queries_total", A, 3.0), ("queries_total", B, 1.0)),
          family("checkout_wait_seconds", "histogram", ("checkout_wait_seconds_bucket", {**A, "le": "+Inf"}, 2.0),
                 ("checkout_wait_seconds_sum", A, 0.5), ("checkout_wait_seconds_count", A, 2.0))]
    w1 = [family("queries", "counter", ("queries_total", A, 5.0)),
          family("checkout_wait_seconds", "histogram", ("checkout_wait_seconds_bucket", {**A, "le": "+Inf"}, 1.0),
                 ("checkout_wait_seconds_sum", A, 0.25), ("checkout_wait_seconds_count", A, 1.0)),
          family("auth_failures", "counter", ("auth_failures_total", {}, 2.0))]
    merged = {f["name"]: {(s[0], tuple(sorted(s[1].items()))): s[2] for s in f["samples"]}
              for f in merge_families([w0, w1])}
    assert merged["queries"] == {("queries_total", tuple(sorted(A.items()))): 8.0,
                                 ("queries_total", tuple(sorted(B.items()))): 1.0}
    hist = merged["checkout_wait_seconds"]
    assert hist[("checkout_wait_seconds_count", tuple(sorted(A.items())))] == 3.0
    assert hist[("checkout_wait_seconds_sum", tuple(sorted(A.items())))] == 0.75
    assert merged["auth_failures"] == {("auth_failures_total", ()): 2.0}


def test_flags_and_worst_cases_are_not_summed() -> None:
    nan = float("nan")
    w0 = [family("pool_paused", "gauge", ("pool_paused", A, 0.0)), family("pool_healthy", "gauge",
                                                                          ("pool_healthy", A, 1.0)),
          family("maxwait_seconds", "gauge", ("maxwait_seconds", A, 0.2)),
          family("replica_lag_bytes", "gauge", ("replica_lag_bytes", A, nan)),
          family("build_info", "gauge", ("build_info", {"version": "1"}, 1.0)),
          family("process_start_time_seconds", "gauge", ("process_start_time_seconds", {}, 200.0))]
    w1 = [family("pool_paused", "gauge", ("pool_paused", A, 1.0)), family("pool_healthy", "gauge",
                                                                          ("pool_healthy", A, 0.0)),
          family("maxwait_seconds", "gauge", ("maxwait_seconds", A, 1.5)),
          family("replica_lag_bytes", "gauge", ("replica_lag_bytes", A, 42.0)),
          family("build_info", "gauge", ("build_info", {"version": "1"}, 1.0)),
          family("process_start_time_seconds", "gauge", ("process_start_time_seconds", {}, 100.0))]
    merged = {f["name"]: f["samples"][0][2] for f in merge_families([w0, w1])}
    assert merged == {"pool_paused": 1.0, "pool_healthy": 0.0, "maxwait_seconds": 1.5, "replica_lag_bytes": 42.0,
                      "build_info": 1.0, "process_start_time_seconds": 100.0}
    only_nan = merge_families([[family("replica_lag_bytes", "gauge", ("replica_lag_bytes", A, nan))]] * 2)
    assert math.isnan(only_nan[0]["samples"][0][2])


def test_merged_families_render_under_the_namespace() -> None:
    merged = merge_families([[family("queries", "counter", ("queries_total", A, 3.0))],
                             [family("queries", "counter", ("queries_total", A, 4.0)),
                              family("clients", "gauge", ("clients", {}, 2.0))]])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MergedCollector(merged, "pgdog_"))
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        response = render(registry, Request("GET", "/", {"accept": accept} if accept else {}))
        assert response.status == 200
        text = response.body.decode()
        assert 'pgdog_queries_total{database="app",user="alice"} 7.0' in text
        assert "pgdog_clients 2.0" in text
    samples = {s.name: s.value for f in parse_text(render(registry, Request("GET", "/", {})).body.decode())
               for s in f.samples}
    assert samples == {"pgdog_queries_total": 7.0, "pgdog_clients": 2.0}
