"""SCRAM-SHA-256 (RFC 5802 / RFC 7677), PostgreSQL flavour, sans-IO.

Both directions of the proxy need SCRAM: clients authenticate to us
(ScramServer) and we authenticate to PostgreSQL (ScramClient). Nothing here
touches sockets, clocks or OS randomness: the caller injects ``entropy`` so
the deterministic simulator can replay an exchange bit for bit.

PostgreSQL specifics reproduced here:
  * the user name inside client-first is ignored (the startup packet's user
    is authoritative); libpq sends it empty ("n=,");
  * server nonces are 18 random bytes, base64-encoded;
  * passwords are SASLprep'd with a raw-bytes fallback (see saslprep.py);
  * unknown users get a "doomed" exchange with a deterministic fake salt so
    the response does not reveal whether the role exists.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from pgdog_ev.auth.errors import AuthFailed, AuthProtocolError
from pgdog_ev.auth.saslprep import prepare_password

__all__ = [
    "CBIND_TYPE",
    "DEFAULT_ITERATIONS",
    "MECH_SCRAM_SHA_256",
    "MECH_SCRAM_SHA_256_PLUS",
    "Entropy",
    "ScramClient",
    "ScramServer",
    "ScramVerifier",
    "make_verifier",
    "salted_password",
    "verify_plain_password",
]

Entropy = Callable[[int], bytes]

MECH_SCRAM_SHA_256 = "SCRAM-SHA-256"
MECH_SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS"
CBIND_TYPE = "tls-server-end-point"
DEFAULT_ITERATIONS = 4096
NONCE_RAW_LEN = 18  # SCRAM_RAW_NONCE_LEN in PostgreSQL
SALT_LEN = 16  # SCRAM_DEFAULT_SALT_LEN in PostgreSQL
KEY_LEN = 32  # SHA-256 digest size
# A hostile or misconfigured server could ask for billions of PBKDF2 rounds
# and stall the pooler's event loop; refuse anything beyond this by default.
DEFAULT_MAX_ITERATIONS = 1_000_000

_PREFIX = "SCRAM-SHA-256"


# --------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: str, what: str) -> bytes:
    """Strict base64 decoding; any flaw is a protocol error, not a crash."""
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise AuthProtocolError(f"malformed SCRAM message (invalid base64 in {what})") from None


@functools.lru_cache(maxsize=1024)
def _salted_password_cached(prepared: bytes, salt: bytes, iterations: int) -> bytes:
    # PBKDF2 with 4096 rounds costs milliseconds; the pooler opens many
    # server connections with the same credentials, so memoise Hi().
    return hashlib.pbkdf2_hmac("sha256", prepared, salt, iterations, KEY_LEN)


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword := Hi(Normalize(password), salt, i), memoised."""
    if iterations < 1:
        raise ValueError("iterations must be positive")
    return _salted_password_cached(prepare_password(password), bytes(salt), iterations)


def _keys_from_salted(salted: bytes) -> tuple[bytes, bytes, bytes]:
    client_key = _hmac(salted, b"Client Key")
    return client_key, _h(client_key), _hmac(salted, b"Server Key")


def _entropy_bytes(entropy: Entropy, n: int) -> bytes:
    data = entropy(n)
    if not isinstance(data, bytes | bytearray) or len(data) != n:
        raise ValueError(f"entropy source must return exactly {n} bytes")
    return bytes(data)


def _make_nonce(entropy: Entropy) -> str:
    return _b64(_entropy_bytes(entropy, NONCE_RAW_LEN))


def _is_printable(value: str) -> bool:
    # RFC 5802: printable = %x21-2B / %x2D-7E  (ASCII graphic minus ",")
    return all(0x21 <= ord(c) <= 0x7E and c != "," for c in value)


def _check_nonce(nonce: str) -> str:
    if not nonce or not _is_printable(nonce):
        raise ValueError("nonce must be non-empty printable ASCII without ','")
    return nonce


def _decode_message(data: bytes, what: str) -> str:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AuthProtocolError(f"malformed SCRAM message ({what} is not bytes)")
    raw = bytes(data)
    if b"\x00" in raw:
        raise AuthProtocolError(f"malformed SCRAM message (NUL byte in {what})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthProtocolError(f"malformed SCRAM message (invalid UTF-8 in {what})") from None


class _Reader:
    """Sequential attribute reader enforcing RFC 5802 attribute order."""

    def __init__(self, text: str, what: str) -> None:
        self._parts = text.split(",")
        self._pos = 0
        self._what = what

    def error(self, detail: str) -> AuthProtocolError:
        return AuthProtocolError(f"malformed SCRAM message ({self._what}: {detail})")

    def at_end(self) -> bool:
        return self._pos >= len(self._parts)

    def peek_name(self) -> str | None:
        if self.at_end():
            return None
        part = self._parts[self._pos]
        if len(part) >= 2 and part[1] == "=":
            return part[0]
        return None

    def raw(self) -> str:
        """Next comma-separated field, uninterpreted."""
        if self.at_end():
            raise self.error("unexpected end of message")
        part = self._parts[self._pos]
        self._pos += 1
        return part

    def attr(self, name: str) -> str:
        if self.at_end():
            raise self.error(f"attribute '{name}' expected")
        part = self._parts[self._pos]
        if len(part) < 2 or part[0] != name or part[1] != "=":
            raise self.error(f"attribute '{name}' expected")
        self._pos += 1
        return part[2:]

    def any_attr(self) -> tuple[str, str]:
        """An extension attribute: ALPHA "=" value."""
        if self.at_end():
            raise self.error("unexpected end of message")
        part = self._parts[self._pos]
        if len(part) < 2 or not ("a" <= part[0] <= "z" or "A" <= part[0] <= "Z") or part[1] != "=":
            raise self.error("attribute expected")
        self._pos += 1
        return part[0], part[2:]


# --------------------------------------------------------------------------
# stored secret
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScramVerifier:
    """What PostgreSQL stores in pg_authid.rolpassword for SCRAM roles.

    Holding only StoredKey/ServerKey lets the proxy authenticate clients
    without knowing their plaintext password (same as PostgreSQL does).
    """

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def to_string(self) -> str:
        return (
            f"{_PREFIX}${self.iterations}:{_b64(self.salt)}${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )

    @classmethod
    def parse(cls, s: str) -> ScramVerifier:
        """Parse PostgreSQL's text format; ValueError on anything malformed."""
        if not isinstance(s, str):
            raise ValueError("SCRAM verifier must be a string")
        parts = s.split("$")
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise ValueError("not a SCRAM-SHA-256 verifier")
        iter_salt = parts[1].split(":")
        keys = parts[2].split(":")
        if len(iter_salt) != 2 or len(keys) != 2:
            raise ValueError("malformed SCRAM verifier")
        iter_s, salt_s = iter_salt
        if not iter_s.isascii() or not iter_s.isdigit():
            raise ValueError("malformed SCRAM verifier iteration count")
        iterations = int(iter_s)
        if iterations < 1:
            raise ValueError("SCRAM verifier iteration count must be positive")
        try:
            salt = base64.b64decode(salt_s.encode("ascii"), validate=True)
            stored_key = base64.b64decode(keys[0].encode("ascii"), validate=True)
            server_key = base64.b64decode(keys[1].encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValueError("malformed base64 in SCRAM verifier") from None
        if not salt:
            raise ValueError("empty salt in SCRAM verifier")
        if len(stored_key) != KEY_LEN or len(server_key) != KEY_LEN:
            raise ValueError("SCRAM verifier keys have the wrong length")
        return cls(iterations, salt, stored_key, server_key)

    @classmethod
    def from_password(cls, password: str, salt: bytes, iterations: int = DEFAULT_ITERATIONS) -> ScramVerifier:
        _, stored_key, server_key = _keys_from_salted(salted_password(password, salt, iterations))
        return cls(iterations, bytes(salt), stored_key, server_key)


def make_verifier(password: str, entropy: Entropy, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Produce a rolpassword-compatible secret (used by ``pgdog-ev hash``)."""
    salt = _entropy_bytes(entropy, SALT_LEN)
    return ScramVerifier.from_password(password, salt, iterations).to_string()


def verify_plain_password(password: str, verifier: ScramVerifier) -> bool:
    """Check a cleartext password against a SCRAM secret.

    Needed when a client uses password (cleartext) auth but only a SCRAM
    secret is configured, mirroring scram_verify_plain_password() in PG.
    """
    salted = salted_password(password, verifier.salt, verifier.iterations)
    _, stored_key, server_key = _keys_from_salted(salted)
    ok_stored = hmac.compare_digest(stored_key, verifier.stored_key)
    ok_server = hmac.compare_digest(server_key, verifier.server_key)
    return ok_stored and ok_server


# --------------------------------------------------------------------------
# server side (client -> proxy)
# --------------------------------------------------------------------------

_S_INIT, _S_FIRST, _S_DONE, _S_FAILED = range(4)


class ScramServer:
    """Server half of one SCRAM exchange; one instance per authentication.

    Any exception leaves the instance in a failed state: SCRAM has no retry,
    the connection must be closed after the ErrorResponse.
    """

    def __init__(
        self,
        verifier: ScramVerifier,
        entropy: Entropy,
        channel_binding: bytes | None = None,
        *,
        nonce: str | None = None,
    ) -> None:
        """``nonce`` overrides the generated server nonce (test vectors only)."""
        self._verifier = verifier
        self._entropy = entropy
        self._cbind_data = None if channel_binding is None else bytes(channel_binding)
        self._fixed_nonce = None if nonce is None else _check_nonce(nonce)
        self._doomed = False
        self._state = _S_INIT
        self._gs2_header = ""
        self._cbind_flag = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._client_key: bytes | None = None

    @classmethod
    def for_unknown_user(cls, username_salt_seed: bytes, entropy: Entropy) -> ScramServer:
        """A doomed exchange indistinguishable (to the client) from a real one.

        The salt is sha256(seed)[:16] so repeated attempts for the same
        unknown name see a stable salt, as with a real role. The seed should
        include a per-installation secret plus the user name (PG uses
        mock_auth_nonce || username) so the fake salt is not predictable.
        """
        seed = bytes(username_salt_seed)
        salt = _h(seed)[:SALT_LEN]
        fake = ScramVerifier(
            iterations=DEFAULT_ITERATIONS,
            salt=salt,
            stored_key=_h(b"pgdog-ev mock stored key" + seed),
            server_key=_h(b"pgdog-ev mock server key" + seed),
        )
        server = cls(fake, entropy)
        server._doomed = True
        return server

    def mechanisms(self) -> list[str]:
        """SASL mechanisms for AuthenticationSASL, PLUS first like PostgreSQL."""
        if self._cbind_data is not None:
            return [MECH_SCRAM_SHA_256_PLUS, MECH_SCRAM_SHA_256]
        return [MECH_SCRAM_SHA_256]

    @property
    def authenticated(self) -> bool:
        return self._state == _S_DONE

    @property
    def client_key(self) -> bytes | None:
        """ClientKey recovered from a valid proof (for SCRAM passthrough)."""
        return self._client_key

    def _fail(self, exc: AuthFailed) -> AuthFailed:
        self._state = _S_FAILED
        return exc

    def client_first(self, data: bytes, mechanism: str | None = None) -> bytes:
        """Consume SASLInitialResponse data, return server-first-message.

        ``mechanism`` is the name from SASLInitialResponse; when given it is
        cross-checked against the gs2 channel-binding flag (as PG does).
        """
        if self._state != _S_INIT:
            raise self._fail(AuthProtocolError("unexpected SCRAM client-first-message"))
        try:
            out = self._client_first(data, mechanism)
        except AuthFailed as exc:
            raise self._fail(exc) from None
        self._state = _S_FIRST
        return out

    def _client_first(self, data: bytes, mechanism: str | None) -> bytes:
        text = _decode_message(data, "client-first-message")
        r = _Reader(text, "client-first-message")

        if mechanism is not None and mechanism not in self.mechanisms():
            raise AuthProtocolError("client selected an invalid SASL authentication mechanism")

        # gs2-cbind-flag
        flag = r.raw()
        if flag == "n":
            cbind_flag = "n"
        elif flag == "y":
            # Client supports channel binding but thinks we don't. If we did
            # offer PLUS, somebody stripped it: possible downgrade attack.
            if self._cbind_data is not None:
                raise AuthFailed("SCRAM channel binding negotiation error")
            cbind_flag = "y"
        elif flag.startswith("p="):
            if self._cbind_data is None:
                raise AuthProtocolError("client requested SCRAM channel binding, but it is not offered")
            if flag[2:] != CBIND_TYPE:
                raise AuthProtocolError("unsupported SCRAM channel-binding type")
            cbind_flag = "p"
        else:
            raise AuthProtocolError("malformed SCRAM message (unexpected channel-binding flag)")

        if mechanism == MECH_SCRAM_SHA_256_PLUS and cbind_flag != "p":
            raise AuthProtocolError("channel binding is required by SCRAM-SHA-256-PLUS")
        if mechanism == MECH_SCRAM_SHA_256 and cbind_flag == "p":
            raise AuthProtocolError("channel binding was requested but SCRAM-SHA-256 was selected")

        authzid = r.raw()
        if authzid != "":
            if authzid.startswith("a="):
                raise AuthProtocolError("client uses authorization identity, which is not supported")
            raise AuthProtocolError("malformed SCRAM message (unexpected attribute in gs2 header)")

        gs2_header = text[: len(flag) + 1 + len(authzid) + 1]
        bare = text[len(gs2_header) :]

        if r.peek_name() == "m":
            raise AuthProtocolError("client requires an unsupported SCRAM extension")
        # The user name is deliberately ignored (PostgreSQL uses the startup
        # packet's user); we do not even validate its saslname escaping,
        # because PostgreSQL accepts whatever clients put there.
        r.attr("n")
        client_nonce = r.attr("r")
        if not client_nonce or not _is_printable(client_nonce):
            raise AuthProtocolError("malformed SCRAM message (invalid client nonce)")
        while not r.at_end():
            r.any_attr()  # extensions: ignored, as PostgreSQL does

        server_nonce = self._fixed_nonce if self._fixed_nonce is not None else _make_nonce(self._entropy)
        self._cbind_flag = cbind_flag
        self._gs2_header = gs2_header
        self._client_first_bare = bare
        self._nonce = client_nonce + server_nonce
        self._server_first = f"r={self._nonce},s={_b64(self._verifier.salt)},i={self._verifier.iterations}"
        return self._server_first.encode("ascii")

    def client_final(self, data: bytes) -> bytes:
        """Verify client-final-message; return server-final-message ("v=...")."""
        if self._state != _S_FIRST:
            raise self._fail(AuthProtocolError("unexpected SCRAM client-final-message"))
        try:
            out = self._client_final(data)
        except AuthFailed as exc:
            raise self._fail(exc) from None
        self._state = _S_DONE
        return out

    def _client_final(self, data: bytes) -> bytes:
        text = _decode_message(data, "client-final-message")
        r = _Reader(text, "client-final-message")

        cbind_input = _b64decode(r.attr("c"), "channel binding")
        expected = self._gs2_header.encode("utf-8")
        if self._cbind_flag == "p":
            assert self._cbind_data is not None
            expected += self._cbind_data
        if not hmac.compare_digest(cbind_input, expected):
            if self._cbind_flag == "p":
                raise AuthFailed("SCRAM channel binding check failed")
            raise AuthProtocolError("unexpected SCRAM channel-binding attribute in client-final-message")

        nonce = r.attr("r")
        if not hmac.compare_digest(nonce.encode("utf-8"), self._nonce.encode("ascii")):
            raise AuthProtocolError("malformed SCRAM message (nonce does not match)")

        # Extensions may appear before the proof; the proof must be last.
        while r.peek_name() not in ("p", None):
            r.any_attr()
        proof_b64 = r.attr("p")
        if not r.at_end():
            raise AuthProtocolError("malformed SCRAM message (garbage at end of client-final-message)")
        proof = _b64decode(proof_b64, "proof")
        if len(proof) != KEY_LEN:
            raise AuthProtocolError("malformed SCRAM message (malformed proof in client-final-message)")

        without_proof = text[: len(text) - len(proof_b64) - len(",p=")]
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof)).encode("utf-8")

        client_signature = _hmac(self._verifier.stored_key, auth_message)
        client_key = _xor(proof, client_signature)
        proof_ok = hmac.compare_digest(_h(client_key), self._verifier.stored_key)
        if not proof_ok or self._doomed:
            raise AuthFailed("password authentication failed")
        self._client_key = client_key
        server_signature = _hmac(self._verifier.server_key, auth_message)
        return f"v={_b64(server_signature)}".encode("ascii")


# --------------------------------------------------------------------------
# client side (proxy -> PostgreSQL)
# --------------------------------------------------------------------------

_C_INIT, _C_FIRST_SENT, _C_FINAL_SENT, _C_DONE, _C_FAILED = range(5)


class ScramClient:
    """Client half of one SCRAM exchange toward a real PostgreSQL server."""

    def __init__(
        self,
        password: str,
        entropy: Entropy,
        channel_binding: bytes | None = None,
        *,
        username: str = "",
        nonce: str | None = None,
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
    ) -> None:
        """``username``/``nonce`` exist only to reproduce RFC test vectors;
        PostgreSQL ignores the SCRAM user name, so leave it empty."""
        self._password = password
        self._entropy = entropy
        self._cbind_data = None if channel_binding is None else bytes(channel_binding)
        self._username = username
        self._fixed_nonce = None if nonce is None else _check_nonce(nonce)
        self._max_iterations = max_iterations
        self._state = _C_INIT
        self._client_nonce = ""
        self._client_first_bare = ""
        self._server_signature = b""

    @property
    def mechanism(self) -> str:
        """Mechanism name to put in SASLInitialResponse."""
        return MECH_SCRAM_SHA_256_PLUS if self._cbind_data is not None else MECH_SCRAM_SHA_256

    @property
    def authenticated(self) -> bool:
        return self._state == _C_DONE

    def _gs2_header(self) -> str:
        return f"p={CBIND_TYPE},," if self._cbind_data is not None else "n,,"

    def _fail(self, exc: AuthFailed) -> AuthFailed:
        self._state = _C_FAILED
        return exc

    def client_first(self) -> bytes:
        if self._state != _C_INIT:
            raise self._fail(AuthProtocolError("SCRAM client-first-message already sent"))
        self._client_nonce = (
            self._fixed_nonce if self._fixed_nonce is not None else _make_nonce(self._entropy)
        )
        user = self._username.replace("=", "=3D").replace(",", "=2C")
        self._client_first_bare = f"n={user},r={self._client_nonce}"
        self._state = _C_FIRST_SENT
        return (self._gs2_header() + self._client_first_bare).encode("utf-8")

    def server_first(self, data: bytes) -> bytes:
        """Consume server-first-message, return client-final-message."""
        if self._state != _C_FIRST_SENT:
            raise self._fail(AuthProtocolError("unexpected SCRAM server-first-message"))
        try:
            out = self._server_first(data)
        except AuthFailed as exc:
            raise self._fail(exc) from None
        self._state = _C_FINAL_SENT
        return out

    def _server_first(self, data: bytes) -> bytes:
        text = _decode_message(data, "server-first-message")
        r = _Reader(text, "server-first-message")
        if r.peek_name() == "m":
            raise AuthProtocolError("server requires an unsupported SCRAM extension")
        nonce = r.attr("r")
        if (
            len(nonce) <= len(self._client_nonce)
            or not nonce.startswith(self._client_nonce)
            or not _is_printable(nonce)
        ):
            raise AuthProtocolError("invalid SCRAM response (nonce mismatch)")
        salt = _b64decode(r.attr("s"), "salt")
        if not salt:
            raise AuthProtocolError("malformed SCRAM message (empty salt)")
        iter_s = r.attr("i")
        if not iter_s.isascii() or not iter_s.isdigit() or len(iter_s) > 10:
            raise AuthProtocolError("malformed SCRAM message (invalid iteration count)")
        iterations = int(iter_s)
        if iterations < 1:
            raise AuthProtocolError("malformed SCRAM message (invalid iteration count)")
        if iterations > self._max_iterations:
            raise AuthProtocolError("SCRAM iteration count requested by server is too large")
        while not r.at_end():
            r.any_attr()

        cbind_input = self._gs2_header().encode("ascii")
        if self._cbind_data is not None:
            cbind_input += self._cbind_data
        without_proof = f"c={_b64(cbind_input)},r={nonce}"
        auth_message = ",".join((self._client_first_bare, text, without_proof)).encode("utf-8")

        salted = salted_password(self._password, salt, iterations)
        client_key, stored_key, server_key = _keys_from_salted(salted)
        proof = _xor(client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(server_key, auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def server_final(self, data: bytes) -> None:
        """Verify the server's signature; the server must prove itself too."""
        if self._state != _C_FINAL_SENT:
            raise self._fail(AuthProtocolError("unexpected SCRAM server-final-message"))
        try:
            self._server_final(data)
        except AuthFailed as exc:
            raise self._fail(exc) from None
        self._state = _C_DONE

    def _server_final(self, data: bytes) -> None:
        text = _decode_message(data, "server-final-message")
        r = _Reader(text, "server-final-message")
        if r.peek_name() == "e":
            # The server's error string is relayed verbatim; it never holds
            # secrets (RFC 5802 server-error-value is a fixed vocabulary).
            raise AuthFailed(f"error received from server in SCRAM exchange: {r.attr('e')}")
        signature = _b64decode(r.attr("v"), "server signature")
        while not r.at_end():
            r.any_attr()
        if len(signature) != KEY_LEN:
            raise AuthProtocolError("malformed SCRAM message (malformed server signature)")
        if not hmac.compare_digest(signature, self._server_signature):
            raise AuthFailed("incorrect server signature")
