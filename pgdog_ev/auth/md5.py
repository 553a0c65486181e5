"""PostgreSQL MD5 password authentication (deprecated, still widely deployed).

Wire response = "md5" + hex(md5(hex(md5(password || user)) || salt)), exactly
as libpq's pg_md5_encrypt() computes it. The inner hash is what PostgreSQL
stores in pg_authid, so a proxy holding only that stored value can still
verify clients (and authenticate to servers) without the plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import string

__all__ = ["md5_check", "md5_check_stored", "md5_hash", "md5_hash_from_stored", "md5_stored"]

_HEX = frozenset(string.hexdigits.lower())


def _strip_nul(response: bytes) -> bytes:
    # PasswordMessage carries a C string; tolerate the terminator so callers
    # can pass either the raw field or the already-stripped value.
    return response[:-1] if response.endswith(b"\x00") else response


def md5_stored(user: str, password: str) -> str:
    """The pg_authid form: "md5" + hex(md5(password || user))."""
    return "md5" + hashlib.md5((password + user).encode("utf-8")).hexdigest()


def md5_hash_from_stored(stored: str, salt: bytes) -> bytes:
    """Salted wire response computed from a stored "md5..." hash."""
    if not _is_md5_stored(stored):
        raise ValueError("not an MD5 password hash")
    return b"md5" + hashlib.md5(stored[3:].encode("ascii") + bytes(salt)).hexdigest().encode("ascii")


def md5_hash(user: str, password: str, salt: bytes) -> bytes:
    """Response for AuthenticationMD5Password, as libpq computes it."""
    return md5_hash_from_stored(md5_stored(user, password), salt)


def _is_md5_stored(stored: str) -> bool:
    return (
        isinstance(stored, str)
        and len(stored) == 35
        and stored.startswith("md5")
        and all(c in _HEX for c in stored[3:])
    )


def md5_check(user: str, password: str, salt: bytes, response: bytes) -> bool:
    """Constant-time check of a client's MD5 response against a plaintext."""
    return hmac.compare_digest(md5_hash(user, password, salt), _strip_nul(bytes(response)))


def md5_check_stored(stored: str, salt: bytes, response: bytes) -> bool:
    """Constant-time check against a stored "md5..." hash.

    A malformed ``stored`` value yields False rather than an exception so a
    bad config entry behaves like a wrong password instead of crashing the
    connection handler; config validation should reject it earlier.
    """
    if not _is_md5_stored(stored):
        return False
    return hmac.compare_digest(md5_hash_from_stored(stored, salt), _strip_nul(bytes(response)))
