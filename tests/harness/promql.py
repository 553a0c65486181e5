"""The PromQL expressions shipped in ops/ (Grafana dashboard, Prometheus rules) and the metric
names they use, so tests can check each name against what the proxy exports.

Not a PromQL parser: string literals, label matchers, grouping clauses, ranges and Grafana
variables are cut away first; what remains that looks like an identifier and is neither a
function call nor a keyword is a metric name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

OPS = Path(__file__).resolve().parents[2] / "ops"
DASHBOARD = OPS / "grafana" / "pgdog-ev.json"
RULES = OPS / "prometheus" / "pgdog-ev.rules.yml"
#: The namespace the dashboard and the rules are written for.
NAMESPACE = "pgdog_"
#: Series Prometheus makes itself for every target; no exporter sends them.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "offset", "inf", "nan", "atan2",
})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_LABEL_VALUES = re.compile(r"label_values\(\s*([^,()]*)\s*,\s*\w+\s*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by one PromQL expression (or Grafana variable query)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _LABEL_VALUES.sub(r"\1", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _VARIABLE.sub("", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    """Every panel target's expr and every templating variable's query."""
    doc = json.loads(path.read_text())
    exprs = [t["expr"] for t in _walk(doc.get("panels", [])) if isinstance(t.get("expr"), str)]
    for var in doc.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if isinstance(query, str) and query:
            exprs.append(query)
    return exprs


def rules(path: Path = RULES) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def rule_exprs(path: Path = RULES) -> list[str]:
    return [str(rule["expr"]) for rule in rules(path)]


def referenced_names() -> set[str]:
    """Metric names the shipped dashboard and rules use, Prometheus' own series excluded."""
    names = set()
    for expr in dashboard_exprs() + rule_exprs():
        names |= metric_names(expr)
    return names - SYNTHETIC
