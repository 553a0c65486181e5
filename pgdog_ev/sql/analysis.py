"""Find the statements in a query text that change or depend on session state.

In transaction mode many clients share one server connection, so the pooler must recognise
SET/RESET (to replay a client's settings on whichever server it gets, or answer them without
one), transaction control, and everything that leaves state on the server (LISTEN, temp
tables, session advisory locks, prepared statements, WITH HOLD cursors...) so that server can
be pinned or cleaned.

Parsing is too slow to run on every query, so ``analyze`` first runs a prefilter (see
prefilter.py) on the first keyword of each statement plus a search of the body for
session function names; ordinary statements are returned as OTHER without parsing or
touching the cache. Texts that need the parser are parsed once and cached (LRU, see cache.py).

A fast-path result is one OTHER standing for however many plain statements the text holds.

Measured with timeit (best of 5; CPython 3.11, pglast 8.8 = libpg_query 18, one core),
e.g. ``timeit.repeat(lambda: cache.analyze(sql), number=200_000)``:

    fast path, 66-char SELECT ................ 0.5 us
    fast path, 1.7 MB INSERT ................. 1.8 ms  (a lower-cased copy, two substring searches)
    cache hit, SET search_path TO a, b ....... 0.6 us
    parse miss, SET search_path TO a, b ...... 17 us
    parse miss, SELECT set_config(...) ....... 30 us
"""

from __future__ import annotations

from typing import Final

from pgdog_ev.sql.cache import DEFAULT_LIMIT, QueryCache
from pgdog_ev.sql.model import (
    OTHER_ANALYSIS,
    SESSION_KINDS,
    TRANSACTION_CONTROL_KINDS,
    Analysis,
    Kind,
    Statement,
)

__all__ = [
    "DEFAULT_LIMIT",
    "OTHER_ANALYSIS",
    "SESSION_KINDS",
    "TRANSACTION_CONTROL_KINDS",
    "Analysis",
    "Kind",
    "QueryCache",
    "Statement",
    "analyze",
    "default_cache",
]

_DEFAULT_CACHE: Final = QueryCache(DEFAULT_LIMIT)


def default_cache() -> QueryCache:
    """The process-wide cache behind ``analyze``; the config reload resizes it."""
    return _DEFAULT_CACHE


def analyze(sql: str) -> Analysis:
    return _DEFAULT_CACHE.analyze(sql)
