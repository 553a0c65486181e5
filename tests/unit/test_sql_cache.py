"""QueryCache: LRU behaviour, counters, resizing, and safety against hash collisions."""

from __future__ import annotations

import pglast
import pytest

from pgdog_ev.sql.analysis import Kind, QueryCache, Statement, analyze, default_cache
from pgdog_ev.sql.model import Analysis
from pgdog_ev.sql.text_lru import TextLRU


def counting_parser(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = pglast.parse_sql

    def parse(sql: str) -> object:
        calls.append(sql)
        return real(sql)

    monkeypatch.setattr(pglast, "parse_sql", parse)
    return calls


def test_hit_returns_same_analysis_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_parser(monkeypatch)
    cache = QueryCache()
    first = cache.analyze("SET a = 1")
    second = cache.analyze("SET a = 1")
    assert first is second
    assert calls == ["SET a = 1"]
    assert (cache.hits, cache.misses, cache.size) == (1, 1, 1)
    assert cache.entries() == [("SET a = 1", 1)]


def test_lru_eviction_keeps_recently_used() -> None:
    cache = QueryCache(2)
    cache.analyze("SET a = 1")
    cache.analyze("SET b = 1")
    cache.analyze("SET a = 1")  # a is now the most recently used
    cache.analyze("SET c = 1")  # evicts b
    assert [text for text, _ in cache.entries()] == ["SET c = 1", "SET a = 1"]
    assert cache.size == 2
    misses = cache.misses
    cache.analyze("SET b = 1")
    assert cache.misses == misses + 1


def test_resize_evicts_oldest_and_grows() -> None:
    cache = QueryCache(5)
    for name in "abcde":
        cache.analyze(f"SET {name} = 1")
    cache.resize(2)
    assert cache.limit == 2
    assert [text for text, _ in cache.entries()] == ["SET e = 1", "SET d = 1"]
    cache.resize(10)
    for name in "fgh":
        cache.analyze(f"SET {name} = 1")
    assert cache.size == 5
    with pytest.raises(ValueError):
        cache.resize(-1)
    with pytest.raises(ValueError):
        QueryCache(-1)


def test_zero_limit_disables_caching_but_still_analyzes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_parser(monkeypatch)
    cache = QueryCache(0)
    for _ in range(3):
        assert cache.analyze("SET a = 1").statements == (Statement(Kind.SET, "a", "1"),)
    assert len(calls) == 3
    assert (cache.hits, cache.misses, cache.size) == (0, 3, 0)
    cache = QueryCache(3)
    cache.analyze("SET a = 1")
    cache.resize(0)
    assert cache.size == 0
    cache.analyze("SET a = 1")
    assert cache.size == 0


def test_clear_keeps_counters() -> None:
    cache = QueryCache()
    cache.analyze("SET a = 1")
    cache.analyze("SET a = 1")
    cache.clear()
    assert cache.size == 0 and cache.entries() == []
    assert (cache.hits, cache.misses) == (1, 1)
    cache.analyze("SET a = 1")
    assert cache.misses == 2


def test_hash_collision_never_returns_another_querys_analysis() -> None:
    """Two texts under one 64-bit key: the stored text decides, and the newer takes the slot.
    The key is forced at the LRU, where the check lives: compiled, the cache calls the hash
    function directly and a monkeypatched one would go unseen."""
    lru: TextLRU[Analysis] = TextLRU(10)
    a, b = analyze("SET a = 1"), analyze("SET b = 2")
    lru.put(42, "SET a = 1", a)
    assert lru.get(42, "SET b = 2") is None
    lru.put(42, "SET b = 2", b)
    assert lru.get(42, "SET a = 1") is None
    assert lru.get(42, "SET b = 2") is b
    assert lru.size == 1 and lru.items() == [("SET b = 2", 1)]


def test_texts_over_the_entry_size_are_analyzed_but_not_stored() -> None:
    cache = QueryCache(10, max_entry_chars=20)
    long_set = "SET a = '" + "x" * 30 + "'"
    assert cache.analyze(long_set).statements[0].value == "x" * 30
    assert cache.size == 0 and cache.misses == 1
    cache.analyze("SET a = 1")
    assert cache.size == 1


def test_hit_counts_per_entry() -> None:
    cache = QueryCache()
    for _ in range(3):
        cache.analyze("SET a = 1")
    cache.analyze("BEGIN")
    assert cache.entries() == [("BEGIN", 0), ("SET a = 1", 2)]


def test_module_level_analyze_uses_the_default_cache() -> None:
    cache = default_cache()
    before = cache.hits + cache.misses
    analyze("SET pgdog_test.module_level = 1")
    analyze("SET pgdog_test.module_level = 1")
    assert cache.hits + cache.misses == before + 2
    assert ("SET pgdog_test.module_level = 1", 1) in cache.entries()
