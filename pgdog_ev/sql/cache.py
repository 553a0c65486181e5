"""LRU cache of query analyses.

Applications send the same few texts over and over (ORMs, prepared statements, SET at
checkout), so each distinct text needing the parser is parsed once. The key is a 64-bit hash;
the text is stored alongside and compared on every hit, because returning another query's
analysis on a hash collision would make the pooler replay the wrong settings.

Texts the fast path already classifies never reach the LRU, so they neither evict useful
entries nor pay for hashing.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import xxhash

from pgdog_ev.sql.model import OTHER_ANALYSIS, Analysis
from pgdog_ev.sql.parse import parse_analysis
from pgdog_ev.sql.prefilter import needs_parse

DEFAULT_LIMIT = 1000
# Longer texts are analyzed but not kept: a thousand megabyte-sized INSERTs that happen to
# mention "_config" must not pin a gigabyte of memory.
DEFAULT_MAX_ENTRY_CHARS = 64 * 1024


def hash_text(sql: str) -> int:
    # surrogatepass: decoded wire bytes may hold lone surrogates; hashing must not fail on them.
    return xxhash.xxh3_64_intdigest(sql.encode("utf-8", "surrogatepass"))


class _Entry:
    __slots__ = ("analysis", "hits", "text")

    def __init__(self, text: str, analysis: Analysis) -> None:
        self.text = text
        self.analysis = analysis
        self.hits = 0


class QueryCache:
    """Counters are cumulative statistics for SHOW commands; clear() keeps them."""

    def __init__(
        self, query_cache_limit: int = DEFAULT_LIMIT, max_entry_chars: int = DEFAULT_MAX_ENTRY_CHARS
    ) -> None:
        if query_cache_limit < 0:
            raise ValueError("query_cache_limit must be >= 0")
        self._limit = query_cache_limit
        self._max_entry_chars = max_entry_chars
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.fast_path = 0
        self.parse_time_ns = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def size(self) -> int:
        return len(self._entries)

    def analyze(self, sql: str) -> Analysis:
        if not needs_parse(sql):
            self.fast_path += 1
            return OTHER_ANALYSIS
        if self._limit == 0 or len(sql) > self._max_entry_chars:
            return self._parse(sql)
        key = hash_text(sql)
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and entry.text == sql:
            entries.move_to_end(key)
            entry.hits += 1
            self.hits += 1
            return entry.analysis
        analysis = self._parse(sql)
        # On a collision the newer text takes the slot: both cannot be kept under one key.
        entries[key] = _Entry(sql, analysis)
        entries.move_to_end(key)
        if len(entries) > self._limit:
            entries.popitem(last=False)
        return analysis

    def _parse(self, sql: str) -> Analysis:
        self.misses += 1
        started = time.perf_counter_ns()
        try:
            return parse_analysis(sql)
        finally:
            self.parse_time_ns += time.perf_counter_ns() - started

    def resize(self, limit: int) -> None:
        """Apply a reloaded query_cache_limit, evicting least recently used entries."""
        if limit < 0:
            raise ValueError("query_cache_limit must be >= 0")
        self._limit = limit
        while len(self._entries) > limit:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def entries(self) -> list[tuple[str, int]]:
        """(text, hits) pairs, most recently used first."""
        return [(entry.text, entry.hits) for entry in reversed(self._entries.values())]
