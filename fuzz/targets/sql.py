"""Query texts through the pooler's SQL analysis and the read/write router.

Input: the text of a Query or Parse message (UTF-8, NULs dropped: a C string cannot hold one).

Oracles, for ``sql_analyze``: the analysis never raises, even for text pglast rejects or cannot
take; the cached answer equals the uncached one and a second lookup (a cache hit); the
prefilter is sound (when it skips the parser, the parser finds only OTHER statements); a parse
error is reported as a single OTHER. For ``sql_route``: the router never raises; its cached
answer equals the stages run by hand (fast path, else parser) and a second lookup; wherever
the fast path answers, the parser agrees on read/write unless the grammar rejects the text (the
documented gap: the server rejects such text wherever it runs).

Both also stretch the text (its first and last characters repeated, the whole text repeated, to
some 20,000 characters) through the regex stages that run before any parse, on every query:
each must finish well under a second. Regular expressions that backtrack turn a short Query into
a stalled event loop (fuzz/corpus notes two such bugs), and inputs of a few kilobytes are too
short to show quadratic time by themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fuzz.oracle import check
from fuzz.source import ByteSource
from pgdog_ev.sql.analysis import QueryCache
from pgdog_ev.sql.model import Analysis, Kind, Statement
from pgdog_ev.sql.parse import parse_analysis
from pgdog_ev.sql.prefilter import mentions_session_functions, needs_parse
from pgdog_ev.sql.route import Route, RouteCache, route_fast, route_lexical, route_prefilter, route_slow

_ANALYSES = QueryCache(256)
_ROUTES = RouteCache(256)
STRETCH = 20_000
SLOW_SECONDS = 1.0


def _stretched(text: str) -> list[str]:
    if not text:
        return []
    return [text[0] * STRETCH + text, text + text[-1] * STRETCH, text * (STRETCH // len(text) + 1)]


def check_linear(text: str, stages: tuple[Callable[[str], object], ...]) -> None:
    for long_text in _stretched(text):
        for stage in stages:
            for _attempt in range(2):  # a second try, in case the machine was busy
                started = time.perf_counter()
                stage(long_text)
                took = time.perf_counter() - started
                if took < SLOW_SECONDS:
                    break
            else:
                raise AssertionError(f"{stage.__name__} took {took:.1f} s on {len(long_text)} characters "
                                     f"stretched from {text[:40]!r}")


def sql_analyze(data: bytes) -> None:
    text = ByteSource(data).text()
    uncached = parse_analysis(text)
    check(isinstance(uncached, Analysis) and uncached.statements, "parse_analysis gave no statements")
    if uncached.error is not None:
        check(uncached.statements == (Statement(Kind.OTHER),), "a parse error with statements other than OTHER")
    fresh = QueryCache(0).analyze(text)
    first = _ANALYSES.analyze(text)
    second = _ANALYSES.analyze(text)
    check(first == second == fresh, "the cached analysis differs from a fresh one")
    if needs_parse(text):
        check(fresh == uncached, "the cache's answer differs from the parser's")
    else:
        kinds = {s.kind for s in uncached.statements}
        check(kinds <= {Kind.OTHER}, f"the prefilter skipped a text the parser finds {kinds}")
    check_linear(text, (needs_parse, mentions_session_functions))


def sql_route(data: bytes) -> None:
    text = ByteSource(data).text()
    fast = route_fast(text)
    slow = route_slow(text)
    check(isinstance(slow, Route), "route_slow gave no Route")
    by_hand = fast if fast is not None else slow
    first = _ROUTES.route(text)
    second = _ROUTES.route(text)
    uncached = RouteCache(0).route(text)
    check(first == second == uncached == by_hand, f"router answers differ: {first} {second} {uncached} {by_hand}")
    if fast is not None and fast.write != slow.write:
        check(slow.reason == "unparsable", f"fast path {fast} and parser {slow} disagree")
    check_linear(text, (route_prefilter, route_lexical))
