"""What an input capture keeps out of its file: secrets in the configuration and passwords on
the wire.

Configuration: every value of a key named ``password``, ``passwords``, ``password_hash`` or
``server_password`` (in any table of pgdog.toml or users.toml, ``[admin]`` included) is replaced by
a marker, and so are ``PGDOG_ADMIN_PASSWORD`` and the password part of ``PGDOG_DATABASE_URL_N``.
Markers keep what the proxy's behaviour depends on without the secret: a plain password becomes
``<redacted:N>`` (equal markers for equal values, so deduplication works the same), a SCRAM
verifier becomes a well-formed verifier with the same iteration count and zero keys, an MD5 hash
``md5`` and 32 zeros. The configuration digest treats secrets as "set / not set", so it is the
same for the redacted files. The texts are re-serialized from the parsed TOML, so comments (which
can hold secrets too) and formatting are not kept.

Wire: :class:`PasswordScanner` follows a client's stream through the startup packets and the
authentication exchange and reports where PasswordMessage bodies are, so the recorder can mask
them (every byte but NUL becomes ``*``, same length). Cleartext and MD5 responses are masked; SCRAM
messages are kept: the client proof is not the password and re-execution needs it to log the
client in again (it still allows an offline guess at a weak password, like any sniffed SCRAM
exchange: the file is created 0600).
"""

from __future__ import annotations

import base64
import datetime
import math
import re
import tomllib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pgdog_ev.capture.format import Span

__all__ = [
    "SECRET_KEYS",
    "Markers",
    "PasswordScanner",
    "dump_toml",
    "has_markers",
    "is_marker",
    "mask",
    "redact_doc",
    "redact_env",
    "redact_toml_text",
]

SECRET_KEYS = frozenset({"password", "passwords", "password_hash", "server_password"})
_SCRAM_PREFIX = "SCRAM-SHA-256$"
_ZERO_SALT = base64.b64encode(bytes(16)).decode("ascii")
_ZERO_KEY = base64.b64encode(bytes(32)).decode("ascii")
_MD5_MARKER = "md5" + "0" * 32


class Markers:
    """Hands out markers; one instance per capture so equal secrets get equal markers."""

    def __init__(self) -> None:
        self.plain: dict[str, str] = {}
        self.count = 0

    def secret(self, key: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.secret(key, v) for v in value]
        if not isinstance(value, str):
            return value
        self.count += 1
        if key == "password_hash":
            if value.startswith(_SCRAM_PREFIX):
                iterations = value[len(_SCRAM_PREFIX) :].split(":", 1)[0]
                if not (iterations.isascii() and iterations.isdigit()):
                    iterations = "4096"
                return f"{_SCRAM_PREFIX}{iterations}:{_ZERO_SALT}${_ZERO_KEY}:{_ZERO_KEY}"
            if value.startswith("md5"):
                return _MD5_MARKER
        return self.plain.setdefault(value, f"<redacted:{len(self.plain) + 1}>")


def has_markers(text: str | None) -> bool:
    """Whether a redacted text still holds markers (its secrets are not known)."""
    return text is not None and ("<redacted:" in text or _ZERO_KEY in text or _MD5_MARKER in text)


def is_marker(value: Any) -> bool:
    """Whether a secret's value is a marker (a list of passwords: whether all are)."""
    if isinstance(value, list):
        return bool(value) and all(is_marker(v) for v in value)
    return isinstance(value, str) and (value.startswith("<redacted:") or value == _MD5_MARKER
                                       or (value.startswith(_SCRAM_PREFIX) and value.endswith(f"${_ZERO_KEY}:{_ZERO_KEY}")))


def redact_doc(doc: Any, markers: Markers | None = None) -> tuple[Any, int]:
    """A copy of a parsed TOML document with every secret value replaced; (copy, values replaced)."""
    markers = markers if markers is not None else Markers()
    before = markers.count

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (markers.secret(k, v) if k in SECRET_KEYS else walk(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    redacted = walk(doc)
    return redacted, markers.count - before


# --- a canonical TOML writer -----------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _string(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, datetime.datetime | datetime.date | datetime.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write a {type(v).__name__} as TOML")


def dump_toml(doc: Mapping[str, Any]) -> str:
    """TOML text that parses back to ``doc``: tables as ``[t]``, lists of tables as ``[[t]]``,
    everything nested deeper inline."""
    head: list[str] = []
    body: list[str] = []
    for key, val in doc.items():
        if isinstance(val, dict):
            body.append(f"[{_key(key)}]")
            body += [f"{_key(k)} = {_value(v)}" for k, v in val.items()]
            body.append("")
        elif isinstance(val, list) and val and all(isinstance(x, dict) for x in val):
            for item in val:
                body.append(f"[[{_key(key)}]]")
                body += [f"{_key(k)} = {_value(v)}" for k, v in item.items()]
                body.append("")
        else:
            head.append(f"{_key(key)} = {_value(val)}")
    return "\n".join(head + ([""] if head and body else []) + body).rstrip("\n") + "\n"


def redact_toml_text(text: str, markers: Markers | None = None) -> tuple[str | None, int]:
    """(redacted text, values replaced); (None, 0) when the text is not TOML we can rewrite."""
    try:
        doc = tomllib.loads(text)
        redacted, count = redact_doc(doc, markers)
        out = dump_toml(redacted)
        if tomllib.loads(out) != redacted:
            return None, 0
    except (tomllib.TOMLDecodeError, TypeError, ValueError, RecursionError):
        return None, 0
    return out, count


def redact_env(env: Mapping[str, str], markers: Markers | None = None) -> tuple[dict[str, str], int]:
    """The variables the configuration loader reads, with secrets replaced."""
    markers = markers if markers is not None else Markers()
    before = markers.count
    out: dict[str, str] = {}
    for name in sorted(env):
        if not (name.startswith("PGDOG_") or name in ("RUST_LOG", "USER")):
            continue
        value = env[name]
        if name == "PGDOG_ADMIN_PASSWORD":
            value = markers.secret("password", value)
        elif name.startswith("PGDOG_DATABASE_URL_"):
            value = _redact_url(value, markers)
        out[name] = value
    return out, markers.count - before


def _redact_url(url: str, markers: Markers) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        markers.count += 1
        return "<redacted url>"
    if password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}:{markers.secret('password', password)}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# --- passwords on the wire ------------------------------------------------------------------

_MASK = bytes([0] + [0x2A] * 255)  # bytes.translate table: NUL stays, everything else -> "*"
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_MAX_STARTUP = 10000  # as PostgreSQL: a longer startup packet is refused


def mask(data: bytes | bytearray | memoryview) -> bytes:
    return bytes(data).translate(_MASK)


class PasswordScanner:
    """Where PasswordMessage bodies are in one client's stream, fed chunk by chunk.

    Startup packets (SSLRequest, GSSENCRequest, then the StartupMessage) have no type byte; after
    the StartupMessage every message has one. ``redact`` says whether PasswordMessage bodies are
    masked (False for SCRAM). A stream the scanner cannot follow (a startup length PostgreSQL would
    refuse) is one the session refuses before any password, so scanning just stops.
    """

    __slots__ = ("_body_len", "_body_pos", "_head", "_mask", "_remaining", "_startup", "dead", "redact")

    def __init__(self, redact: bool = True) -> None:
        self.redact = redact
        self.dead = False
        self._startup = True
        self._head = bytearray()
        self._remaining = 0
        self._mask = False
        self._body_pos = 0
        self._body_len = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Span]:
        spans: list[Span] = []
        if self.dead:
            return spans
        n = len(data)
        i = 0
        while i < n:
            if self._remaining:
                take = min(self._remaining, n - i)
                if self._mask:
                    spans.append(Span(i, take, self._body_pos, self._body_len))
                self._body_pos += take
                self._remaining -= take
                i += take
                continue
            need = 8 if self._startup else 5
            take = min(need - len(self._head), n - i)
            self._head += data[i : i + take]
            i += take
            if len(self._head) < need:
                break
            head = self._head
            if self._startup:
                length = int.from_bytes(head[0:4], "big")
                code = int.from_bytes(head[4:8], "big")
                if length < 8 or length > _MAX_STARTUP:
                    self.dead = True
                    return spans
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    self._startup = False
                self._start_body(length - 8, False)
            else:
                length = int.from_bytes(head[1:5], "big")
                if length < 4:
                    self.dead = True
                    return spans
                self._start_body(length - 4, head[0] == 0x70 and self.redact)  # 'p'
            head.clear()
        return spans

    def _start_body(self, size: int, masked: bool) -> None:
        self._remaining = size
        self._mask = masked and size > 0
        self._body_pos = 0
        self._body_len = size
