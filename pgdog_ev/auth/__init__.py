"""Sans-IO authentication mechanisms (SCRAM-SHA-256, MD5, cleartext).

No sockets, clocks or OS randomness: callers inject entropy so the
deterministic simulator can reproduce every exchange.
"""

from __future__ import annotations

from pgdog_ev.auth.errors import AuthFailed, AuthProtocolError
from pgdog_ev.auth.md5 import md5_check, md5_check_stored, md5_hash, md5_hash_from_stored, md5_stored
from pgdog_ev.auth.plain import plain_check
from pgdog_ev.auth.saslprep import SASLprepError, prepare_password, saslprep
from pgdog_ev.auth.scram import (
    MECH_SCRAM_SHA_256,
    MECH_SCRAM_SHA_256_PLUS,
    Entropy,
    ScramClient,
    ScramServer,
    ScramVerifier,
    make_verifier,
    salted_password,
    verify_plain_password,
)

__all__ = [
    "MECH_SCRAM_SHA_256",
    "MECH_SCRAM_SHA_256_PLUS",
    "AuthFailed",
    "AuthProtocolError",
    "Entropy",
    "SASLprepError",
    "ScramClient",
    "ScramServer",
    "ScramVerifier",
    "make_verifier",
    "md5_check",
    "md5_check_stored",
    "md5_hash",
    "md5_hash_from_stored",
    "md5_stored",
    "plain_check",
    "prepare_password",
    "salted_password",
    "saslprep",
    "verify_plain_password",
]
