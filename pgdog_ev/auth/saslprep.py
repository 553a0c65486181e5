"""SASLprep (RFC 4013) the way PostgreSQL applies it to SCRAM passwords.

PostgreSQL does not reject passwords that fail SASLprep: it silently falls
back to the raw bytes (src/common/saslprep.c + scram-common.c). A proxy that
computes SCRAM secrets must reproduce that exact fallback, otherwise users
with "odd" passwords could log in to PostgreSQL directly but not through us.
"""

from __future__ import annotations

import stringprep
import unicodedata

__all__ = ["SASLprepError", "prepare_password", "saslprep"]


class SASLprepError(ValueError):
    """The string cannot be prepared (prohibited char, bidi rule, empty)."""


def _is_prohibited(ch: str) -> bool:
    # RFC 4013 section 2.3 plus unassigned code points (A.1): PostgreSQL
    # treats passwords as "stored strings", for which unassigned code points
    # are prohibited.
    return (
        stringprep.in_table_c12(ch)
        or stringprep.in_table_c21_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
        or stringprep.in_table_a1(ch)
    )


def saslprep(s: str) -> str:
    """Prepare ``s`` strictly per RFC 4013; raise SASLprepError on failure.

    Strict here means no ASCII shortcut: a control character such as BEL is
    rejected even though PostgreSQL would accept it via its ASCII fast path
    (the end result for passwords is identical; see prepare_password).
    """
    # 1) Map: non-ASCII spaces -> SPACE, "commonly mapped to nothing" -> "".
    mapped = []
    for ch in s:
        if stringprep.in_table_c12(ch):
            mapped.append(" ")
        elif stringprep.in_table_b1(ch):
            continue
        else:
            mapped.append(ch)
    # PostgreSQL refuses a password that maps to nothing (a non-empty input
    # must not silently become the empty password).
    if s and not mapped:
        raise SASLprepError("string is empty after mapping")
    # 2) Normalize with NFKC. PostgreSQL uses its current Unicode tables for
    # this step, so we use the interpreter's rather than ucd_3_2_0.
    out = unicodedata.normalize("NFKC", "".join(mapped))
    # 3) Prohibit.
    for ch in out:
        if _is_prohibited(ch):
            raise SASLprepError("prohibited character")
    # 4) Bidi (RFC 3454 section 6).
    has_randal = any(stringprep.in_table_d1(ch) for ch in out)
    if has_randal:
        if any(stringprep.in_table_d2(ch) for ch in out):
            raise SASLprepError("mixed bidirectional text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise SASLprepError("bidirectional text must start and end with RandALCat")
    return out


def _raw_bytes(password: str) -> bytes:
    # Passwords that arrived as non-UTF-8 bytes may have been decoded with
    # surrogateescape; give PostgreSQL's "raw bytes" back in that case.
    try:
        return password.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return password.encode("utf-8", "surrogatepass")


def prepare_password(password: str) -> bytes:
    """Bytes PostgreSQL feeds into PBKDF2 for ``password``.

    SASLprep'd UTF-8 when preparation succeeds, otherwise the raw bytes, as
    pg_saslprep()'s callers do. ASCII input is returned unchanged, matching
    PostgreSQL's fast path (it never runs the prohibition check on ASCII).
    """
    if password.isascii():
        return password.encode("ascii")
    try:
        return saslprep(password).encode("utf-8")
    except (SASLprepError, UnicodeEncodeError):
        return _raw_bytes(password)
