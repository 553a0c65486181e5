"""The slow path: run libpg_query on a text and classify every statement in it."""

from __future__ import annotations

import pglast
import pglast.parser

from pgdog_ev.sql.classify import classify
from pgdog_ev.sql.model import OTHER_ANALYSIS, OTHER_STATEMENT, Analysis
from pgdog_ev.sql.prefilter import mentions_session_functions


def parse_analysis(sql: str) -> Analysis:
    """Never raises for any input text: what the parser rejects is left to the server."""
    try:
        # Looked up on the module at call time so tests can prove the fast path never parses.
        raws = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        return Analysis((OTHER_STATEMENT,), str(exc))
    except (RecursionError, ValueError) as exc:
        # Trees deeper than Python's recursion limit while building nodes; text that cannot
        # be encoded to UTF-8 (lone surrogates).
        return Analysis((OTHER_STATEMENT,), f"{type(exc).__name__}: {exc}")
    if not raws:
        return OTHER_ANALYSIS
    hinted = mentions_session_functions(sql)
    return Analysis(tuple(classify(raw, sql, hinted) for raw in raws), None)
