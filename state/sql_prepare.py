"""SQL-level PREPARE / EXECUTE under proxy-global names (prepared_statements = "full").

Only a Query holding one such statement, written plainly, is rewritten; anything
else (a comment before the keyword, EXECUTE inside CREATE TABLE AS) is left to
the server, and a PREPARE that reaches a server pins its client there.
"""

from __future__ import annotations

import re

_NAME = r'("(?:[^"]|"")+"|[^\s("]+)'
_PREPARE = re.compile(r"\s*PREPARE\s+" + _NAME + r"\s*(.*?)[\s;]*\Z", re.S | re.I)
_EXECUTE = re.compile(r"(\s*EXECUTE\s+)" + _NAME, re.I)


def prepare_rest(sql: str) -> str | None:
    """What follows the name in ``PREPARE name [(types)] AS statement``, or None."""
    m = _PREPARE.match(sql)
    if m is None or not m.group(2):
        return None
    return m.group(2)


def rewrite_execute(sql: str, global_name: str) -> str | None:
    """``EXECUTE name(args)`` with the statement's global name instead, or None."""
    m = _EXECUTE.match(sql)
    if m is None:
        return None
    return sql[: m.start(2)] + global_name + sql[m.end(2) :]
