"""Server-side authentication of the fake backends: trust, cleartext, MD5 and SCRAM-SHA-256.

The exchanges reuse the project's own sans-IO code (pgdog_ev.auth), so the
proxy's client side is tested against the same bytes a PostgreSQL server
would send; salts and nonces come from an injected entropy source, so a
seeded run replays the same exchange.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pgdog_ev.auth.errors import AuthFailed, AuthProtocolError
from pgdog_ev.auth.md5 import md5_check
from pgdog_ev.auth.plain import plain_check
from pgdog_ev.auth.scram import MECH_SCRAM_SHA_256, ScramServer, ScramVerifier
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation

TRUST = "trust"
PASSWORD = "password"
MD5 = "md5"
SCRAM = "scram-sha-256"
METHODS = (TRUST, PASSWORD, MD5, SCRAM)

Entropy = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class UserAuth:
    """How one role logs in (``method`` is a pg_hba.conf method name) and its password."""

    method: str = TRUST
    password: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown auth method {self.method!r}; expected one of {METHODS}")


@dataclass
class AuthSpec:
    """The server's roles. Users not listed log in with ``default`` (None: the role does not exist)."""

    users: Mapping[str, UserAuth] = field(default_factory=dict)
    default: UserAuth | None = field(default_factory=UserAuth)
    scram_iterations: int = 4096
    _verifiers: dict[tuple[str, str], ScramVerifier] = field(default_factory=dict, repr=False)

    @classmethod
    def single(cls, user: str, password: str, method: str = SCRAM) -> AuthSpec:
        """One role with a password; every other user is refused."""
        return cls(users={user: UserAuth(method, password)}, default=None)

    def lookup(self, user: str) -> UserAuth | None:
        return self.users.get(user, self.default)

    def verifier(self, user: str, password: str) -> ScramVerifier:
        """The stored SCRAM secret of a role: a fixed salt per user, like a real pg_authid entry."""
        key = (user, password)
        found = self._verifiers.get(key)
        if found is None:
            salt = hashlib.sha256(b"fakepg salt:" + user.encode()).digest()[:16]
            found = self._verifiers[key] = ScramVerifier.from_password(password, salt, self.scram_iterations)
        return found


class Authenticator:
    """One login exchange. ``start()`` returns the first message; ``step()`` consumes each 'p' message.

    ``step`` returns the bytes to send and whether the login succeeded; it
    raises AuthFailed (wrong password, 28P01) or ProtocolViolation (08P01).
    """

    def __init__(self, spec: AuthSpec, user: str, role: UserAuth, entropy: Entropy) -> None:
        self.spec = spec
        self.user = user
        self.role = role
        self.entropy = entropy
        self._salt = b""
        self._scram: ScramServer | None = None
        self._stage = 0

    def start(self) -> tuple[bytes, bool]:
        method = self.role.method
        if method == TRUST:
            return b"", True
        if method == PASSWORD:
            return be.authentication_cleartext(), False
        if method == MD5:
            self._salt = self.entropy(4)
            return be.authentication_md5(self._salt), False
        self._scram = ScramServer(self.spec.verifier(self.user, self.role.password), self.entropy)
        return be.authentication_sasl(self._scram.mechanisms()), False

    def step(self, body: bytes) -> tuple[bytes, bool]:
        method = self.role.method
        if method == PASSWORD:
            if not plain_check([self.role.password], fe.parse_password(body)):
                raise AuthFailed("password authentication failed")
            return b"", True
        if method == MD5:
            if not md5_check(self.user, self.role.password, self._salt, fe.parse_password(body)):
                raise AuthFailed("password authentication failed")
            return b"", True
        scram = self._scram
        if scram is None:
            raise ProtocolViolation("unexpected password message")
        try:
            if self._stage == 0:
                self._stage = 1
                mechanism, data = fe.parse_sasl_initial_response(body)
                if mechanism != MECH_SCRAM_SHA_256:
                    raise ProtocolViolation("client selected an invalid SASL authentication mechanism")
                return be.authentication_sasl_continue(scram.client_first(data or b"", mechanism)), False
            final = scram.client_final(fe.parse_sasl_response(body))
        except AuthProtocolError as exc:
            raise ProtocolViolation(str(exc)) from None
        return be.authentication_sasl_final(final), True
