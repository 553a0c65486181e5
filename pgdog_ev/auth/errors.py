"""Authentication error types.

Messages carried by these exceptions are meant to be relayed to the client in
an ErrorResponse, so they must never contain passwords, proofs or any other
secret material; callers may append the user name themselves.
"""

from __future__ import annotations

__all__ = ["AuthFailed", "AuthProtocolError"]


class AuthFailed(Exception):
    """The peer did not prove knowledge of the password (or was refused).

    Kept as a single type so the frontend code can map every authentication
    problem to SQLSTATE 28P01/08P01 without knowing which mechanism ran.
    """


class AuthProtocolError(AuthFailed):
    """The peer sent a malformed or out-of-order authentication message.

    Subclasses AuthFailed so a caller that only cares "did auth succeed" can
    catch one type, while callers that want SQLSTATE 08P01 (protocol
    violation) instead of 28P01 can distinguish it.
    """
