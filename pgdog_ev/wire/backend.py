"""Messages a server sends: builders for what the proxy synthesises, parsers for what it inspects.

The proxy answers authentication, errors and admin queries itself, and
watches ReadyForQuery/ParameterStatus/ErrorResponse from servers to track
transaction and session state; everything else is normally forwarded raw.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ._codec import HEADER, I16, I32, U16, U32, Buffer, as_bytes, cstr, message, message1
from ._reader import Reader, decode
from .errors import ProtocolViolation

AUTHENTICATION: Final = ord("R")
BACKEND_KEY_DATA: Final = ord("K")
PARAMETER_STATUS: Final = ord("S")
READY_FOR_QUERY: Final = ord("Z")
ERROR_RESPONSE: Final = ord("E")
NOTICE_RESPONSE: Final = ord("N")
ROW_DESCRIPTION: Final = ord("T")
DATA_ROW: Final = ord("D")
COMMAND_COMPLETE: Final = ord("C")
EMPTY_QUERY_RESPONSE: Final = ord("I")
PARSE_COMPLETE: Final = ord("1")
BIND_COMPLETE: Final = ord("2")
CLOSE_COMPLETE: Final = ord("3")
NO_DATA: Final = ord("n")
PARAMETER_DESCRIPTION: Final = ord("t")
PORTAL_SUSPENDED: Final = ord("s")
COPY_IN_RESPONSE: Final = ord("G")
COPY_OUT_RESPONSE: Final = ord("H")
COPY_BOTH_RESPONSE: Final = ord("W")
COPY_DATA: Final = ord("d")
COPY_DONE: Final = ord("c")
NOTIFICATION_RESPONSE: Final = ord("A")
FUNCTION_CALL_RESPONSE: Final = ord("V")
NEGOTIATE_PROTOCOL_VERSION: Final = ord("v")

AUTH_OK: Final = 0
AUTH_CLEARTEXT: Final = 3
AUTH_MD5: Final = 5
AUTH_GSS: Final = 7
AUTH_GSS_CONTINUE: Final = 8
AUTH_SSPI: Final = 9
AUTH_SASL: Final = 10
AUTH_SASL_CONTINUE: Final = 11
AUTH_SASL_FINAL: Final = 12

TRANSACTION_IDLE: Final = b"I"
TRANSACTION_ACTIVE: Final = b"T"
TRANSACTION_FAILED: Final = b"E"

_PROTOCOL_MAJOR_3: Final = 3 << 16
_NULL: Final = I32.pack(-1)
# RowDescription per-field tail: table oid, column, type oid, size, modifier, format.
_FIELD_TAIL: Final = struct.Struct("!IhIhih")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    table_oid: int = 0
    column: int = 0
    type_oid: int = 25  # text
    type_size: int = -1
    type_mod: int = -1
    format: int = 0


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    severity: str
    code: str
    message: str
    detail: str | None = None
    hint: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


# --- builders -----------------------------------------------------------------


def _auth(code: int, extra: bytes = b"") -> bytes:
    return message1(AUTHENTICATION, U32.pack(code) + extra)


_AUTH_OK: Final = _auth(AUTH_OK)
_AUTH_CLEARTEXT: Final = _auth(AUTH_CLEARTEXT)


def authentication_ok() -> bytes:
    return _AUTH_OK


def authentication_cleartext() -> bytes:
    return _AUTH_CLEARTEXT


def authentication_md5(salt: bytes) -> bytes:
    if len(salt) != 4:
        raise ValueError("MD5 salt must be 4 bytes")
    return _auth(AUTH_MD5, bytes(salt))


def authentication_sasl(mechanisms: Sequence[str]) -> bytes:
    if not mechanisms:
        raise ValueError("at least one SASL mechanism is required")
    return _auth(AUTH_SASL, b"".join(cstr(m) for m in mechanisms) + b"\0")


def authentication_sasl_continue(data: Buffer) -> bytes:
    return _auth(AUTH_SASL_CONTINUE, bytes(data))


def authentication_sasl_final(data: Buffer) -> bytes:
    return _auth(AUTH_SASL_FINAL, bytes(data))


def backend_key_data(pid: int, secret: bytes) -> bytes:
    if not 4 <= len(secret) <= 256:
        raise ValueError("cancel secret must be 4 to 256 bytes")
    return message1(BACKEND_KEY_DATA, U32.pack(pid) + bytes(secret))


def parameter_status(name: str, value: str) -> bytes:
    return message1(PARAMETER_STATUS, cstr(name) + cstr(value))


_READY: Final = {s: HEADER.pack(READY_FOR_QUERY, 5) + s for s in (b"I", b"T", b"E")}


def ready_for_query(status: bytes) -> bytes:
    try:
        return _READY[status]
    except (KeyError, TypeError):
        raise ValueError(f"transaction status must be b'I', b'T' or b'E', not {status!r}") from None


def _fields_message(
    type_byte: int,
    code: str,
    msg: str,
    severity: str,
    detail: str | None,
    hint: str | None,
    fields: Mapping[str, str] | None,
) -> bytes:
    # 'S' may be localised; 'V' (PostgreSQL 9.6+) never is, and clients prefer it.
    parts = [b"S", cstr(severity), b"V", cstr(severity), b"C", cstr(code), b"M", cstr(msg)]
    if detail is not None:
        parts += (b"D", cstr(detail))
    if hint is not None:
        parts += (b"H", cstr(hint))
    if fields:
        for key, value in fields.items():
            if len(key) != 1 or key in "SVCMDH\0":
                raise ValueError(f"invalid extra error field code {key!r}")
            parts += (key.encode(), cstr(value))
    parts.append(b"\0")
    return message(type_byte, parts)


def error_response(
    code: str,
    message: str,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> bytes:
    return _fields_message(ERROR_RESPONSE, code, message, severity, detail, hint, fields)


def notice_response(
    code: str,
    message: str,
    severity: str = "NOTICE",
    detail: str | None = None,
    hint: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> bytes:
    return _fields_message(NOTICE_RESPONSE, code, message, severity, detail, hint, fields)


def row_description(fields: Sequence[Field]) -> bytes:
    parts = [U16.pack(len(fields))]
    for f in fields:
        parts.append(cstr(f.name))
        parts.append(_FIELD_TAIL.pack(f.table_oid, f.column, f.type_oid, f.type_size, f.type_mod, f.format))
    return message(ROW_DESCRIPTION, parts)


def data_row(values: Sequence[bytes | str | None]) -> bytes:
    parts = [U16.pack(len(values))]
    for v in values:
        if v is None:
            parts.append(_NULL)
            continue
        raw = v.encode() if isinstance(v, str) else v
        parts.append(I32.pack(len(raw)))
        parts.append(raw)
    return message(DATA_ROW, parts)


def command_complete(tag: str) -> bytes:
    return message1(COMMAND_COMPLETE, cstr(tag))


_EMPTY_QUERY: Final = HEADER.pack(EMPTY_QUERY_RESPONSE, 4)
_PARSE_COMPLETE: Final = HEADER.pack(PARSE_COMPLETE, 4)
_BIND_COMPLETE: Final = HEADER.pack(BIND_COMPLETE, 4)
_CLOSE_COMPLETE: Final = HEADER.pack(CLOSE_COMPLETE, 4)
_NO_DATA: Final = HEADER.pack(NO_DATA, 4)
_PORTAL_SUSPENDED: Final = HEADER.pack(PORTAL_SUSPENDED, 4)
_COPY_DONE: Final = HEADER.pack(COPY_DONE, 4)


def empty_query_response() -> bytes:
    return _EMPTY_QUERY


def parse_complete() -> bytes:
    return _PARSE_COMPLETE


def bind_complete() -> bytes:
    return _BIND_COMPLETE


def close_complete() -> bytes:
    return _CLOSE_COMPLETE


def no_data() -> bytes:
    return _NO_DATA


def portal_suspended() -> bytes:
    return _PORTAL_SUSPENDED


def parameter_description(oids: Sequence[int]) -> bytes:
    return message(PARAMETER_DESCRIPTION, [U16.pack(len(oids)), *(U32.pack(o) for o in oids)])


def _copy_response(type_byte: int, format: int, column_formats: Sequence[int]) -> bytes:
    return message(
        type_byte,
        [bytes((format,)), U16.pack(len(column_formats)), *(I16.pack(f) for f in column_formats)],
    )


def copy_in_response(format: int, column_formats: Sequence[int]) -> bytes:
    return _copy_response(COPY_IN_RESPONSE, format, column_formats)


def copy_out_response(format: int, column_formats: Sequence[int]) -> bytes:
    return _copy_response(COPY_OUT_RESPONSE, format, column_formats)


def copy_both_response(format: int, column_formats: Sequence[int]) -> bytes:
    return _copy_response(COPY_BOTH_RESPONSE, format, column_formats)


def copy_data(data: Buffer) -> bytes:
    return HEADER.pack(COPY_DATA, len(data) + 4) + data


def copy_done() -> bytes:
    return _COPY_DONE


def notification_response(pid: int, channel: str, payload: str) -> bytes:
    return message(NOTIFICATION_RESPONSE, [U32.pack(pid), cstr(channel), cstr(payload)])


def function_call_response(value: bytes | None) -> bytes:
    if value is None:
        return message1(FUNCTION_CALL_RESPONSE, _NULL)
    return message(FUNCTION_CALL_RESPONSE, [I32.pack(len(value)), bytes(value)])


def negotiate_protocol_version(newest_minor: int, unsupported: Sequence[str]) -> bytes:
    """The wire field is a full version number (major 3 in the high half), as libpq expects."""
    if not 0 <= newest_minor <= 0xFFFF:
        raise ValueError(f"invalid minor protocol version {newest_minor}")
    return message(
        NEGOTIATE_PROTOCOL_VERSION,
        [
            U32.pack(_PROTOCOL_MAJOR_3 | newest_minor),
            U32.pack(len(unsupported)),
            *(cstr(o) for o in unsupported),
        ],
    )


# --- parsers --------------------------------------------------------------------


def parse_authentication(body: Buffer) -> tuple[int, bytes]:
    data = as_bytes(body)
    if len(data) < 4:
        raise ProtocolViolation("invalid Authentication message: insufficient data left in message")
    return U32.unpack_from(data, 0)[0], data[4:]


def parse_sasl_mechanisms(rest: Buffer) -> list[str]:
    r = Reader(rest, "AuthenticationSASL")
    mechanisms: list[str] = []
    while True:
        name = r.cstr()
        if not name:
            break
        mechanisms.append(name)
    r.finish()
    if not mechanisms:
        r.fail("no SASL mechanisms offered")
    return mechanisms


def parse_backend_key_data(body: Buffer) -> tuple[int, bytes]:
    data = as_bytes(body)
    if not 8 <= len(data) <= 260:
        raise ProtocolViolation("invalid BackendKeyData message: bad length")
    return U32.unpack_from(data, 0)[0], data[4:]


def parse_parameter_status(body: Buffer) -> tuple[str, str]:
    r = Reader(body, "ParameterStatus")
    name = r.cstr()
    value = r.cstr()
    r.finish()
    return name, value


def parse_ready_for_query(body: Buffer) -> bytes:
    if len(body) != 1 or body[0] not in b"ITE":
        raise ProtocolViolation("invalid ReadyForQuery message")
    return _STATUS[body[0]]


_STATUS: Final = {ord(s): s for s in (b"I", b"T", b"E")}


def parse_error_fields(body: Buffer) -> dict[str, str]:
    data = as_bytes(body)
    out: dict[str, str] = {}
    pos, end = 0, len(data)
    while True:
        if pos >= end:
            raise ProtocolViolation("invalid error/notice message: missing terminator")
        code = data[pos]
        if code == 0:
            break
        nul = data.find(b"\0", pos + 1)
        if nul < 0:
            raise ProtocolViolation("invalid error/notice message: missing string terminator")
        # Servers may send non-UTF-8 text before client_encoding is settled;
        # replace rather than fail so the error still reaches the user.
        out[chr(code)] = data[pos + 1 : nul].decode(errors="replace")
        pos = nul + 1
    if pos != end - 1:
        raise ProtocolViolation("invalid error/notice message: unexpected trailing data")
    return out


def error_info(body: Buffer) -> ErrorInfo:
    f = parse_error_fields(body)
    return ErrorInfo(
        severity=f.get("V") or f.get("S", ""),
        code=f.get("C", ""),
        message=f.get("M", ""),
        detail=f.get("D"),
        hint=f.get("H"),
        fields=f,
    )


def parse_row_description(body: Buffer) -> list[Field]:
    r = Reader(body, "RowDescription")
    count = r.u16()
    fields: list[Field] = []
    unpack = _FIELD_TAIL.unpack_from
    size = _FIELD_TAIL.size
    for _ in range(count):
        name = r.cstr()
        pos = r.pos
        if pos + size > r.end:
            r.short()
        fields.append(Field(name, *unpack(r.buf, pos)))
        r.pos = pos + size
    r.finish()
    return fields


def parse_data_row(body: Buffer) -> list[bytes | None]:
    data = as_bytes(body)
    end = len(data)
    if end < 2:
        raise ProtocolViolation("invalid DataRow message: insufficient data left in message")
    count = U16.unpack_from(data, 0)[0]
    unpack = I32.unpack_from
    values: list[bytes | None] = []
    append = values.append
    pos = 2
    for _ in range(count):
        if pos + 4 > end:
            raise ProtocolViolation("invalid DataRow message: insufficient data left in message")
        n = unpack(data, pos)[0]
        pos += 4
        if n == -1:
            append(None)
            continue
        if n < 0 or pos + n > end:
            raise ProtocolViolation("invalid DataRow message: insufficient data left in message")
        append(data[pos : pos + n])
        pos += n
    if pos != end:
        raise ProtocolViolation("invalid DataRow message: unexpected trailing data")
    return values


def parse_command_complete(body: Buffer) -> str:
    data = as_bytes(body)
    if not data or data.find(b"\0") != len(data) - 1:
        raise ProtocolViolation("invalid CommandComplete message")
    return decode(data[:-1], "CommandComplete")


def parse_notification(body: Buffer) -> tuple[int, str, str]:
    r = Reader(body, "NotificationResponse")
    pid = r.u32()
    channel = r.cstr()
    payload = r.cstr()
    r.finish()
    return pid, channel, payload


def parse_negotiate_protocol_version(body: Buffer) -> tuple[int, list[str]]:
    """Returns the server's newest minor version for major 3 and the options it rejected."""
    r = Reader(body, "NegotiateProtocolVersion")
    version = r.u32()
    if version >> 16 != 3:
        r.fail(f"unexpected protocol version {version >> 16}.{version & 0xFFFF}")
    count = r.u32()
    # Each name takes at least one byte, so a larger count is a lie; checking
    # first avoids looping on a hostile 4-billion count.
    if count > r.remaining():
        r.short()
    options = [r.cstr() for _ in range(count)]
    r.finish()
    return version & 0xFFFF, options


def parse_parameter_description(body: Buffer) -> list[int]:
    r = Reader(body, "ParameterDescription")
    oids = r.u32_array(r.u16())
    r.finish()
    return list(oids)


def parse_copy_response(body: Buffer) -> tuple[int, list[int]]:
    r = Reader(body, "CopyResponse")
    fmt = r.u8()
    formats = r.i16_array(r.u16())
    r.finish()
    return fmt, list(formats)


def parse_function_call_response(body: Buffer) -> bytes | None:
    r = Reader(body, "FunctionCallResponse")
    value = r.value()
    r.finish()
    return value
