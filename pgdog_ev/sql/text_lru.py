"""An LRU keyed by query text, shared by the SQL analysis cache and the routing cache.

The key is the text's 64-bit xxh3 hash; the text is stored alongside and compared on every hit,
because another query's answer on a hash collision could replay the wrong settings or send a
write to a replica. On a collision the newer text takes the slot: both cannot be kept under one
key. Per-entry hit counts feed SHOW QUERY_CACHE.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

import xxhash

V = TypeVar("V")

DEFAULT_LIMIT = 1000
# Longer texts are answered but not kept: a thousand megabyte-sized INSERTs must not pin a
# gigabyte of memory.
DEFAULT_MAX_ENTRY_CHARS = 64 * 1024


def hash_text(sql: str) -> int:
    # surrogatepass: decoded wire bytes may hold lone surrogates; hashing must not fail on them.
    return xxhash.xxh3_64_intdigest(sql.encode("utf-8", "surrogatepass"))


class _Entry(Generic[V]):
    __slots__ = ("hits", "text", "value")

    def __init__(self, text: str, value: V) -> None:
        self.text = text
        self.value = value
        self.hits = 0


class TextLRU(Generic[V]):
    def __init__(self, limit: int = DEFAULT_LIMIT, max_entry_chars: int = DEFAULT_MAX_ENTRY_CHARS) -> None:
        if limit < 0:
            raise ValueError("query_cache_limit must be >= 0")
        self._limit = limit
        self._max_entry_chars = max_entry_chars
        self._entries: OrderedDict[int, _Entry[V]] = OrderedDict()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def size(self) -> int:
        return len(self._entries)

    def keeps(self, sql: str) -> bool:
        """Whether ``sql`` may be cached at all (caching on, text not too long)."""
        return self._limit != 0 and len(sql) <= self._max_entry_chars

    def get(self, key: int, sql: str) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and entry.text == sql:
            self._entries.move_to_end(key)
            entry.hits += 1
            return entry.value
        return None

    def put(self, key: int, sql: str, value: V) -> None:
        entries = self._entries
        entries[key] = _Entry(sql, value)
        entries.move_to_end(key)
        if len(entries) > self._limit:
            entries.popitem(last=False)

    def resize(self, limit: int) -> None:
        """Apply a reloaded query_cache_limit, evicting least recently used entries."""
        if limit < 0:
            raise ValueError("query_cache_limit must be >= 0")
        self._limit = limit
        while len(self._entries) > limit:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def items(self) -> list[tuple[str, int]]:
        """(text, hits) pairs, most recently used first."""
        return [(entry.text, entry.hits) for entry in reversed(self._entries.values())]
