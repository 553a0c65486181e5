"""The exception a target raises when an oracle (not the code under test) finds a wrong answer.

A plain ``assert`` would vanish under ``python -O``; a distinct type also tells a reader of a
crash report that the code returned something wrong rather than raising something unexpected.
"""

from __future__ import annotations


class OracleFailure(AssertionError):
    """Two ways of computing the same answer disagreed, or an invariant does not hold."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise OracleFailure(message)
