"""The Grafana dashboard and the Prometheus alert rules in ops/ only use metrics the proxy exports.

A renamed metric would otherwise leave a silently empty panel or an alert that can never fire.
The names are checked here against the list in pgdog_ev/metrics/names.py; the integration test
test_metrics.py checks them against a real scrape too.
"""

from __future__ import annotations

import json

import pytest

from pgdog_ev.metrics.names import exported_samples
from tests.harness.promql import (
    DASHBOARD,
    NAMESPACE,
    SYNTHETIC,
    dashboard_exprs,
    metric_names,
    referenced_names,
    rule_exprs,
    rules,
)


def test_every_referenced_metric_is_exported() -> None:
    names = referenced_names()
    unknown = sorted(names - exported_samples(NAMESPACE))
    assert not unknown, f"ops/ uses metrics the proxy does not export: {unknown}"


def test_dashboard_and_rules_cover_the_core_metrics() -> None:
    names = referenced_names()
    for core in ("clients_waiting", "servers_active", "pool_size", "transactions_total", "queries_total",
                 "checkout_wait_seconds_bucket", "checkout_timeouts_total", "pool_healthy", "maxwait_seconds",
                 "process_cpu_seconds_total", "process_resident_memory_bytes", "event_log_records_total"):
        assert NAMESPACE + core in names, core


def test_dashboard_shape() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert 36 <= doc["schemaVersion"] <= 41
    assert [i["name"] for i in doc["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert {"database", "user"} <= variables
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
    # Every per-pool panel follows the database and user selectors.
    for expr in dashboard_exprs():
        if any(n in expr for n in ("clients_waiting", "servers_", "transactions_total", "checkout_")):
            assert '$database' in expr and '$user' in expr, expr


def test_rules_shape() -> None:
    alerts = {r["alert"]: r for r in rules()}
    assert {"PgDogEvDown", "PgDogEvPoolSaturated", "PgDogEvClientsWaiting", "PgDogEvCheckoutTimeouts",
            "PgDogEvServerErrors", "PgDogEvPoolUnhealthy"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
    assert alerts["PgDogEvPoolSaturated"]["for"] == "5m"
    assert "0.9" in alerts["PgDogEvPoolSaturated"]["expr"]
    assert alerts["PgDogEvDown"]["expr"].startswith("up{")
    assert metric_names(alerts["PgDogEvDown"]["expr"]) <= SYNTHETIC


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, database) (rate(pgdog_x_bucket{a="b", c=~"$d"}[$__rate_interval]))', {"pgdog_x_bucket"}),
        ("a / on (instance) group_left (version) b offset 5m > bool 1e3", {"a", "b"}),
        ("label_values(pgdog_pool_size{database=~\"$database\"}, user)", {"pgdog_pool_size"}),
        ('count(m == 0) or vector(0) unless n{x="and or"}', {"m", "n"}),
        ("-sum without (shard) (rate(ns:metric_total[5m]))", {"ns:metric_total"}),
    ],
)
def test_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_rule_exprs_are_not_empty() -> None:
    assert all(metric_names(e) for e in rule_exprs())


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote = ""
    for ch in expr:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack and not quote


def test_expressions_are_balanced() -> None:
    """No PromQL parser here (promtool checks the rules where installed); catch broken brackets."""
    for expr in dashboard_exprs() + rule_exprs():
        assert _balanced(expr), expr
