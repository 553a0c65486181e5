"""The untyped first packet of a connection: StartupMessage and its special-code cousins.

These packets have no type byte, so they need their own length check and
dispatch on the 4-byte code that follows the length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ._codec import U32, Buffer, as_bytes, cstr
from .errors import (
    FEATURE_NOT_SUPPORTED,
    INVALID_AUTHORIZATION,
    SYNTAX_ERROR,
    ProtocolViolation,
)

PROTOCOL_3_0 = 196608
PROTOCOL_3_2 = 196610
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
# Same cap as PostgreSQL's MAX_STARTUP_PACKET_LENGTH: the length is checked
# before any buffer is allocated, so a hostile client cannot make us reserve memory.
MAX_STARTUP_PACKET = 10000

PROTOCOL_OPTION_PREFIX = "_pq_."
MIN_CANCEL_SECRET = 4
MAX_CANCEL_SECRET = 256

_LENGTH_CODE = struct.Struct("!II")


@dataclass(frozen=True, slots=True)
class StartupMessage:
    version: int
    params: dict[str, str]
    # ``_pq_.*`` names: kept apart so the proxy can list them as unsupported in
    # NegotiateProtocolVersion instead of forwarding them as GUCs.
    protocol_options: tuple[str, ...] = ()

    @property
    def major(self) -> int:
        return self.version >> 16

    @property
    def minor(self) -> int:
        return self.version & 0xFFFF

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def database(self) -> str:
        # PostgreSQL falls back to the user name when database is absent or empty.
        return self.params.get("database") or self.user

    @property
    def options(self) -> str:
        return self.params.get("options", "")


@dataclass(frozen=True, slots=True)
class SSLRequest:
    pass


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True, slots=True)
class CancelRequest:
    pid: int
    # 4 bytes under protocol 3.0; protocol 3.2 allows up to 256.
    secret: bytes = field(repr=False)


StartupPacket = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def _bad_length() -> ProtocolViolation:
    return ProtocolViolation("invalid length of startup packet")


def startup_length(buf: Buffer) -> int | None:
    """Declared total length of the pending startup packet, or None until 4 bytes arrived."""
    if len(buf) < 4:
        return None
    length = int.from_bytes(buf[:4], "big")
    if length < 8 or length > MAX_STARTUP_PACKET:
        raise _bad_length()
    return length


def parse_startup(packet: Buffer) -> StartupPacket:
    """Parse one complete startup-phase packet, including its 4-byte length prefix."""
    data = as_bytes(packet)
    if len(data) < 8:
        raise _bad_length()
    length, code = _LENGTH_CODE.unpack_from(data, 0)
    if length != len(data) or length > MAX_STARTUP_PACKET:
        raise _bad_length()

    if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
        if length != 8:
            raise _bad_length()
        return SSLRequest() if code == SSL_REQUEST_CODE else GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        secret_len = length - 12
        if secret_len < MIN_CANCEL_SECRET or secret_len > MAX_CANCEL_SECRET:
            raise ProtocolViolation("invalid length of cancel request packet")
        return CancelRequest(U32.unpack_from(data, 8)[0], data[12:])

    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise ProtocolViolation(
            f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2",
            FEATURE_NOT_SUPPORTED,
        )
    params, options = _parse_params(data)
    if not params.get("user"):
        raise ProtocolViolation("no PostgreSQL user name specified in startup packet", INVALID_AUTHORIZATION)
    return StartupMessage(code, params, options)


def _parse_params(data: bytes) -> tuple[dict[str, str], tuple[str, ...]]:
    end = len(data)
    # Layout: (name NUL value NUL)* NUL -- so the last two bytes are NULs
    # unless the list is empty, in which case the terminator is alone.
    if end == 8 or data[end - 1] != 0 or (end > 9 and data[end - 2] != 0):
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    params: dict[str, str] = {}
    options: list[str] = []
    if end == 9:
        return params, ()
    try:
        text = data[8 : end - 2].decode()
    except UnicodeDecodeError:
        raise ProtocolViolation('invalid byte sequence for encoding "UTF8" in startup packet') from None
    items = text.split("\0")
    # An odd count means a name without a value (or an empty name in the middle).
    if len(items) % 2:
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    for i in range(0, len(items), 2):
        name = items[i]
        if not name:
            raise ProtocolViolation("invalid startup packet layout: empty parameter name")
        if name.startswith(PROTOCOL_OPTION_PREFIX):
            if name in options:
                raise ProtocolViolation(f'duplicate startup parameter "{name}"')
            options.append(name)
            continue
        if name in params:
            raise ProtocolViolation(f'duplicate startup parameter "{name}"')
        params[name] = items[i + 1]
    return params, tuple(options)


def build_startup(params: dict[str, str], version: int = PROTOCOL_3_0) -> bytes:
    parts = [b"", U32.pack(version)]
    for name, value in params.items():
        if not name:
            raise ValueError("startup parameter names cannot be empty")
        parts.append(cstr(name))
        parts.append(cstr(value))
    parts.append(b"\0")
    size = sum(len(p) for p in parts) + 4
    parts[0] = U32.pack(size)
    return b"".join(parts)


_SSL_REQUEST = _LENGTH_CODE.pack(8, SSL_REQUEST_CODE)
_GSSENC_REQUEST = _LENGTH_CODE.pack(8, GSSENC_REQUEST_CODE)


def build_ssl_request() -> bytes:
    return _SSL_REQUEST


def build_gssenc_request() -> bytes:
    return _GSSENC_REQUEST


def build_cancel_request(pid: int, secret: bytes) -> bytes:
    if not MIN_CANCEL_SECRET <= len(secret) <= MAX_CANCEL_SECRET:
        raise ValueError("cancel secret must be 4 to 256 bytes")
    return _LENGTH_CODE.pack(12 + len(secret), CANCEL_REQUEST_CODE) + U32.pack(pid) + bytes(secret)


_SPACE = frozenset(" \t\n\v\f\r")


def split_options(options: str) -> list[str]:
    """Split like PostgreSQL's pg_split_opts: whitespace separates, backslash escapes any char."""
    args: list[str] = []
    i, n = 0, len(options)
    while i < n:
        while i < n and options[i] in _SPACE:
            i += 1
        if i >= n:
            break
        arg: list[str] = []
        escaped = False
        while i < n:
            ch = options[i]
            if ch in _SPACE and not escaped:
                break
            if not escaped and ch == "\\":
                escaped = True
            else:
                escaped = False
                arg.append(ch)
            i += 1
        args.append("".join(arg))
    return args


def _option_error(message: str) -> ProtocolViolation:
    return ProtocolViolation(message, SYNTAX_ERROR)


def parse_options(options: str) -> dict[str, str]:
    """Settings carried in libpq's ``options`` parameter (``-c a=b``, ``-ca=b``, ``--a=b``).

    Mirrors process_postgres_switches for the switches that set GUCs; other
    postgres switches make no sense through a pooler and are rejected.  As in
    PostgreSQL's ParseLongOption, dashes in the name become underscores.
    """
    settings: dict[str, str] = {}
    args = split_options(options)
    i, n = 0, len(args)
    while i < n:
        arg = args[i]
        i += 1
        if arg == "--":
            if i < n:
                raise _option_error(f"invalid command-line argument for server process: {args[i]}")
            break
        if arg.startswith("--"):
            flag, assignment = "--", arg[2:]
        elif arg.startswith("-c"):
            flag, assignment = "-c ", arg[2:]
            if not assignment:
                if i >= n:
                    raise _option_error("option requires an argument -- 'c'")
                assignment = args[i]
                i += 1
        else:
            raise _option_error(f"invalid command-line argument for server process: {arg}")
        name, eq, value = assignment.partition("=")
        if not eq:
            raise _option_error(f"{flag}{assignment} requires a value")
        if not name:
            raise _option_error(f"invalid command-line argument for server process: {arg}")
        settings[name.replace("-", "_")] = value
    return settings
