"""LRU cache of query analyses.

Applications send the same few texts over and over (ORMs, prepared statements, SET at
checkout), so each distinct text needing the parser is parsed once. The key is a 64-bit hash;
the text is stored alongside and compared on every hit, because returning another query's
analysis on a hash collision would make the pooler replay the wrong settings.

Texts the fast path already classifies never reach the LRU, so they neither evict useful
entries nor pay for hashing. The fast path's verdict is itself remembered for the few texts an
application repeats (a set lookup costs less than the prefilter's scans).
"""

from __future__ import annotations

import time
from typing import Final

from pgdog_ev.sql.model import OTHER_ANALYSIS, Analysis
from pgdog_ev.sql.parse import parse_analysis
from pgdog_ev.sql.prefilter import needs_parse
from pgdog_ev.sql.text_lru import DEFAULT_LIMIT, DEFAULT_MAX_ENTRY_CHARS, TextLRU, hash_text

# How many texts the prefilter found plain are remembered before the memory starts over, and
# the longest remembered (at most about a megabyte in all).
PLAIN_MEMO_LIMIT: Final = 1024
PLAIN_MEMO_MAX_CHARS: Final = 1024

__all__ = ["DEFAULT_LIMIT", "DEFAULT_MAX_ENTRY_CHARS", "QueryCache", "hash_text"]


class QueryCache:
    """Counters are cumulative statistics for SHOW commands; clear() keeps them."""

    def __init__(
        self, query_cache_limit: int = DEFAULT_LIMIT, max_entry_chars: int = DEFAULT_MAX_ENTRY_CHARS
    ) -> None:
        self._lru: TextLRU[Analysis] = TextLRU(query_cache_limit, max_entry_chars)
        # Texts needs_parse() said need no parsing (a pure function of the text).
        self._plain: set[str] = set()
        self.hits = 0
        self.misses = 0
        self.fast_path = 0
        self.parse_time_ns = 0

    @property
    def limit(self) -> int:
        return self._lru.limit

    @property
    def size(self) -> int:
        return self._lru.size

    def analyze(self, sql: str) -> Analysis:
        plain = self._plain
        if sql in plain:
            self.fast_path += 1
            return OTHER_ANALYSIS
        if not needs_parse(sql):
            self.fast_path += 1
            if len(sql) <= PLAIN_MEMO_MAX_CHARS:
                if len(plain) >= PLAIN_MEMO_LIMIT:
                    plain.clear()
                plain.add(sql)
            return OTHER_ANALYSIS
        lru = self._lru
        if not lru.keeps(sql):
            return self._parse(sql)
        key = hash_text(sql)
        analysis = lru.get(key, sql)
        if analysis is not None:
            self.hits += 1
            return analysis
        analysis = self._parse(sql)
        lru.put(key, sql, analysis)
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
        self._lru.resize(limit)

    def clear(self) -> None:
        self._lru.clear()
        self._plain.clear()

    def entries(self) -> list[tuple[str, int]]:
        """(text, hits) pairs, most recently used first."""
        return self._lru.items()
