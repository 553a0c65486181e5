"""Micro-benchmark of the read/write router (pgdog_ev/sql/route.py); not a test.

Run from the repository root: ``python bench/route_bench.py``. Prints microseconds per call,
best of 5 timeit repeats, for each path, then the unique-literal storm, with and without
fast-path answers in the LRU (the choice the module docstring explains).
"""

from __future__ import annotations

import random
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgdog_ev.sql.route import RouteCache, route_fast

# A locking clause inside a CTE: the lexer leaves this one to the parser.
WITH_SLOW = (
    "WITH x AS (SELECT id FROM jobs WHERE state = 'ready' LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "UPDATE jobs SET state = 'running' FROM x WHERE jobs.id = x.id"
)
CASES: list[tuple[str, str]] = [
    ("cache hit, WITH (... FOR UPDATE) UPDATE (parser-only text)", WITH_SLOW),
    ("fast path (lexer), WITH x AS (UPDATE ...) SELECT",
     "WITH moved AS (UPDATE accounts SET balance = balance - 10 WHERE id = 7 RETURNING id) SELECT * FROM moved"),
    ("fast path, SELECT with string literal and 3 params",
     "SELECT id, name FROM users WHERE name = 'bob' AND org = $1 AND kind = $2 LIMIT $3"),
    ("fast path, SELECT ... FOR UPDATE (token walk)",
     "SELECT * FROM jobs WHERE state = 'ready' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"),
    ("fast path, INSERT INTO ... VALUES (...)", "INSERT INTO t (a, b) VALUES (1, 'x')"),
    ("fast path, SET", "SET search_path TO app, public"),
    ("fast path, SHOW", "SHOW transaction_isolation"),
    ("fast path, /* pgdog_role: replica */ SELECT", "/* pgdog_role: replica */ SELECT * FROM t WHERE id = 1"),
]  # fmt: skip


def per_call(func: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=5)) / number * 1e6


def main() -> None:
    cache = RouteCache()
    for label, sql in CASES:
        cache.route(sql)  # warm: the slow-path text enters the LRU
        print(f"{label:.<58} {per_call(lambda sql=sql: cache.route(sql), 100_000):6.2f} us")

    unique = [f"SELECT * FROM t WHERE id = {n}" for n in random.Random(1).sample(range(10**9), 100_000)]
    it = iter(unique * 6)
    print(f"{'fast path, SELECT ... WHERE id = <unique int>':.<58} "
          f"{per_call(lambda: cache.route(next(it)), 100_000):6.2f} us")  # fmt: skip

    miss = RouteCache(0)
    print(f"{'slow path, WITH (... FOR UPDATE) UPDATE (parse miss)':.<58} "
          f"{per_call(lambda: miss.route(WITH_SLOW), 2_000):6.2f} us")  # fmt: skip
    print(f"{'route_fast giving up on the same text':.<58} "
          f"{per_call(lambda: route_fast(WITH_SLOW), 100_000):6.2f} us")  # fmt: skip

    # The storm: a working set of 1,000 texts that need the parser, each asked once per ten
    # unique-literal SELECTs, through a cache of 1,000 entries.
    working = [WITH_SLOW.replace("jobs", f"jobs{n}") for n in range(1000)]
    stream: list[str] = []
    storm = iter(unique)
    for _round in range(9):
        for text in working:
            stream.append(text)
            stream.extend(next(storm) for _ in range(10))
    for cache_fast in (False, True):
        storm_cache = RouteCache(1000, cache_fast_path=cache_fast)
        for text in working:
            storm_cache.route(text)
        parses_before = storm_cache.misses
        started = time.perf_counter()
        for text in stream:
            storm_cache.route(text)
        elapsed = time.perf_counter() - started
        print(f"storm, fast-path answers {'cached' if cache_fast else 'not cached'}: "
              f"{elapsed / len(stream) * 1e6:.2f} us/query, parser runs "
              f"{storm_cache.misses - parses_before} for {len(working) * 9} working-set queries")  # fmt: skip


if __name__ == "__main__":
    main()
