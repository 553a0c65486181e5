"""Cleartext password check (AuthenticationCleartextPassword).

Users may have several valid passwords (rotation), so every candidate is
compared, without early exit, to avoid leaking which one matched or how many
exist through timing.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

__all__ = ["plain_check"]


def plain_check(expected_passwords: Sequence[str], response: bytes) -> bool:
    """True if ``response`` equals any expected password (constant-time)."""
    given = bytes(response)
    # PasswordMessage carries a C string; accept it with or without the NUL.
    if given.endswith(b"\x00"):
        given = given[:-1]
    matched = False
    for candidate in expected_passwords:
        ok = hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), given)
        matched = matched | ok
    return matched
