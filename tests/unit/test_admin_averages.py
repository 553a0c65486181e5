"""SHOW STATS averages: rates per second and mean times over the last stats_period."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pgdog_ev.admin.averages import StatsWindow
from state.pool import PoolStats


def _pool(pid: int, stats: PoolStats) -> SimpleNamespace:
    return SimpleNamespace(id=pid, stats=stats)


def test_no_averages_before_two_readings() -> None:
    window = StatsWindow()
    stats = PoolStats(xact_count=10)
    window.tick(0.0, [_pool(1, stats)])  # type: ignore[list-item]
    assert window.get(1)["xact_count"] == 0.0


def test_rates_and_means_come_from_the_last_period_only() -> None:
    window = StatsWindow()
    stats = PoolStats()
    pool = _pool(1, stats)
    window.tick(0.0, [pool])  # type: ignore[list-item]
    stats.xact_count, stats.xact_time = 30, 0.3  # 30 transactions of 10 ms
    stats.query_count, stats.query_time = 60, 0.12
    stats.received, stats.sent = 3000, 9000
    stats.observe_wait(0.002)
    stats.observe_wait(0.004)
    window.tick(2.0, [pool])  # type: ignore[list-item]
    avg = window.get(1)
    assert avg["xact_count"] == pytest.approx(15.0)
    assert avg["query_count"] == pytest.approx(30.0)
    assert avg["received"] == pytest.approx(1500.0) and avg["sent"] == pytest.approx(4500.0)
    assert avg["xact_time"] == pytest.approx(10_000.0)  # µs per transaction
    assert avg["query_time"] == pytest.approx(2_000.0)
    assert avg["wait_time"] == pytest.approx(3_000.0)  # µs per checkout
    # A quiet period brings rates back to zero; earlier traffic does not linger.
    window.tick(4.0, [pool])  # type: ignore[list-item]
    assert window.get(1)["xact_count"] == 0.0 and window.get(1)["xact_time"] == 0.0


def test_pools_that_disappear_are_forgotten() -> None:
    window = StatsWindow()
    window.tick(0.0, [_pool(1, PoolStats())])  # type: ignore[list-item]
    window.tick(1.0, [_pool(1, PoolStats(xact_count=5))])  # type: ignore[list-item]
    assert window.get(1)["xact_count"] == 5.0
    window.tick(2.0, [])
    assert window.get(1)["xact_count"] == 0.0


def test_wait_histogram_buckets() -> None:
    stats = PoolStats()
    for waited in (0.0, 0.0004, 0.003, 0.2, 7.0):
        stats.observe_wait(waited)
    assert stats.checkouts == 5 and stats.max_wait == 7.0
    assert sum(stats.wait_buckets) == 5
    assert stats.wait_buckets[0] == 2 and stats.wait_buckets[-1] == 1
