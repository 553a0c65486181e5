"""One metrics endpoint for a daemon with several worker processes (``[general] workers``).

The supervisor binds ``openmetrics_port`` once and, at each scrape, asks every worker for its
samples (the families its own collector yields, as plain data over the private channel), adds
its own (process figures, restarts) and merges them per family and label set:

* counters, histograms and most gauges are summed: transactions of the daemon, its server
  connections, its clients, its resident memory and CPU time are the workers' together;
* flags and worst cases take the maximum (a pool paused or banned in any worker, the longest
  wait, the largest replication lag, the highest descriptor limit), and ``pool_healthy`` and the
  start time the minimum (healthy only if healthy everywhere; started when the first one did).

NaN ("unknown", e.g. replication lag without a monitor) never hides a number from another worker.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

#: Families (names without namespace) merged by maximum, and by minimum; every other one is summed.
MAX_FAMILIES = frozenset({
    "build_info", "pool_paused", "pool_maintenance", "pool_banned", "pool_primary", "maxwait_seconds",
    "replica_lag_bytes", "replica_lag_seconds", "event_log_failed", "process_max_fds",
})
MIN_FAMILIES = frozenset({"pool_healthy", "process_start_time_seconds"})

Family = dict[str, Any]


def families_to_json(families: Iterable[Metric]) -> list[Family]:
    """A collector's families as data the workers' channel carries (JSON keeps NaN)."""
    return [
        {"name": f.name, "type": f.type, "help": f.documentation, "unit": f.unit,
         "samples": [[s.name, dict(s.labels), s.value] for s in f.samples]}
        for f in families
    ]


def _combine(family: str, old: float, new: float) -> float:
    if math.isnan(old):
        return new
    if math.isnan(new):
        return old
    if family in MAX_FAMILIES:
        return max(old, new)
    if family in MIN_FAMILIES:
        return min(old, new)
    return old + new


def merge_families(sources: Sequence[Sequence[Family]]) -> list[Family]:
    """The families of every source, their samples combined per (sample name, labels)."""
    merged: dict[str, Family] = {}
    samples: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]] = {}
    for source in sources:
        for family in source:
            name = family["name"]
            if name not in merged:
                merged[name] = {k: family[k] for k in ("name", "type", "help", "unit")}
                samples[name] = {}
            into = samples[name]
            for sample_name, labels, value in family["samples"]:
                key = (sample_name, tuple(sorted(labels.items())))
                found = into.get(key)
                if found is None:
                    into[key] = [sample_name, dict(labels), float(value)]
                else:
                    found[2] = _combine(name, found[2], float(value))
    for name, family in merged.items():
        family["samples"] = list(samples[name].values())
    return list(merged.values())


class MergedCollector(Collector):
    """Yields merged families as prometheus_client Metrics, names prefixed by the namespace."""

    def __init__(self, families: Sequence[Family], prefix: str = "") -> None:
        self.families = families
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        prefix = self.prefix
        for family in self.families:
            metric = Metric(prefix + family["name"], family["help"], family["type"], family["unit"])
            for sample_name, labels, value in family["samples"]:
                metric.add_sample(prefix + sample_name, labels, value)
            yield metric
