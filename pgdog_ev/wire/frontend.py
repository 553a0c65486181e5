"""Messages a client sends after startup: builders produce whole messages, parsers take bodies.

Parsers are strict (trailing bytes, bad counts and bad UTF-8 are violations)
because the proxy makes routing decisions from what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ._codec import HEADER, I16, I32, U16, U32, Buffer, as_bytes, cstr, message, message1
from ._reader import Reader, decode
from .errors import ProtocolViolation

QUERY: Final = ord("Q")
PARSE: Final = ord("P")
BIND: Final = ord("B")
DESCRIBE: Final = ord("D")
EXECUTE: Final = ord("E")
CLOSE: Final = ord("C")
SYNC: Final = ord("S")
FLUSH: Final = ord("H")
TERMINATE: Final = ord("X")
COPY_DATA: Final = ord("d")
COPY_DONE: Final = ord("c")
COPY_FAIL: Final = ord("f")
FUNCTION_CALL: Final = ord("F")
# PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse all use 'p';
# only the authentication state tells them apart.
PASSWORD: Final = ord("p")

_KINDS: Final = frozenset("SP")
_NULL: Final = I32.pack(-1)


@dataclass(frozen=True, slots=True)
class Parse:
    name: str
    sql: str
    param_types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Bind:
    portal: str
    statement: str
    param_formats: tuple[int, ...]
    params: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Describe:
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Execute:
    portal: str
    max_rows: int


@dataclass(frozen=True, slots=True)
class Close:
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    oid: int
    arg_formats: tuple[int, ...]
    args: tuple[bytes | None, ...]
    result_format: int


def _count(values: Sequence[object], what: str) -> bytes:
    if len(values) > 0xFFFF:
        raise ValueError(f"too many {what}: {len(values)}")
    return U16.pack(len(values))


def _int16s(values: Sequence[int], what: str) -> list[bytes]:
    return [_count(values, what), *(I16.pack(v) for v in values)]


def _values(values: Sequence[bytes | None]) -> list[bytes]:
    parts = [_count(values, "values")]
    for v in values:
        if v is None:
            parts.append(_NULL)
        else:
            parts.append(I32.pack(len(v)))
            parts.append(bytes(v))
    return parts


def _kind(kind: str) -> bytes:
    if kind not in _KINDS or len(kind) != 1:
        raise ValueError(f"kind must be 'S' or 'P', not {kind!r}")
    return kind.encode()


# --- builders -----------------------------------------------------------------


def query(sql: str) -> bytes:
    return message1(QUERY, cstr(sql))


def parse(name: str, sql: str, param_types: Sequence[int] = ()) -> bytes:
    return message(
        PARSE,
        [cstr(name), cstr(sql), _count(param_types, "parameter types"), *(U32.pack(t) for t in param_types)],
    )


def bind(
    portal: str,
    statement: str,
    param_formats: Sequence[int],
    params: Sequence[bytes | None],
    result_formats: Sequence[int],
) -> bytes:
    return message(
        BIND,
        [
            cstr(portal),
            cstr(statement),
            *_int16s(param_formats, "parameter formats"),
            *_values(params),
            *_int16s(result_formats, "result formats"),
        ],
    )


def describe(kind: str, name: str) -> bytes:
    return message1(DESCRIBE, _kind(kind) + cstr(name))


def execute(portal: str, max_rows: int = 0) -> bytes:
    return message1(EXECUTE, cstr(portal) + I32.pack(max_rows))


def close(kind: str, name: str) -> bytes:
    return message1(CLOSE, _kind(kind) + cstr(name))


_SYNC: Final = HEADER.pack(SYNC, 4)
_FLUSH: Final = HEADER.pack(FLUSH, 4)
_TERMINATE: Final = HEADER.pack(TERMINATE, 4)
_COPY_DONE: Final = HEADER.pack(COPY_DONE, 4)


def sync() -> bytes:
    return _SYNC


def flush() -> bytes:
    return _FLUSH


def terminate() -> bytes:
    return _TERMINATE


def copy_data(data: Buffer) -> bytes:
    return HEADER.pack(COPY_DATA, len(data) + 4) + data


def copy_done() -> bytes:
    return _COPY_DONE


def copy_fail(msg: str) -> bytes:
    return message1(COPY_FAIL, cstr(msg))


def function_call(
    oid: int, arg_formats: Sequence[int], args: Sequence[bytes | None], result_format: int
) -> bytes:
    return message(
        FUNCTION_CALL,
        [U32.pack(oid), *_int16s(arg_formats, "argument formats"), *_values(args), I16.pack(result_format)],
    )


def password(pw: str | bytes) -> bytes:
    return message1(PASSWORD, cstr(pw))


def sasl_initial_response(mechanism: str, data: bytes | None) -> bytes:
    if data is None:
        return message1(PASSWORD, cstr(mechanism) + _NULL)
    return message(PASSWORD, [cstr(mechanism), I32.pack(len(data)), bytes(data)])


def sasl_response(data: Buffer) -> bytes:
    return HEADER.pack(PASSWORD, len(data) + 4) + data


# --- parsers --------------------------------------------------------------------


def parse_query(body: Buffer) -> str:
    data = as_bytes(body)
    # Exactly one string, terminator last: the common case costs one find().
    if not data or data.find(b"\0") != len(data) - 1:
        raise ProtocolViolation("invalid Query message: expected a single NUL-terminated string")
    return decode(data[:-1], "Query")


def _check_format_counts(r: Reader, n_formats: int, n_values: int, what: str) -> None:
    if n_formats > 1 and n_formats != n_values:
        r.fail(f"{n_formats} {what} formats but {n_values} {what}s")


def parse_parse(body: Buffer) -> Parse:
    r = Reader(body, "Parse")
    name = r.cstr()
    sql = r.cstr()
    types = r.u32_array(r.u16())
    r.finish()
    return Parse(name, sql, types)


def parse_bind(body: Buffer) -> Bind:
    r = Reader(body, "Bind")
    portal = r.cstr()
    statement = r.cstr()
    formats = r.i16_array(r.u16())
    count = r.u16()
    _check_format_counts(r, len(formats), count, "parameter")
    params = tuple(r.value() for _ in range(count))
    result_formats = r.i16_array(r.u16())
    r.finish()
    return Bind(portal, statement, formats, params, result_formats)


def statement_name_of_bind(body: Buffer) -> str:
    """Only the prepared statement name: routing often needs nothing else from a Bind."""
    r = Reader(body, "Bind")
    r.cstr_bytes()
    return r.cstr()


def _kind_and_name(body: Buffer, what: str) -> tuple[str, str]:
    r = Reader(body, what)
    kind = r.u8()
    if kind != 0x53 and kind != 0x50:  # 'S', 'P'
        r.fail(f"invalid subtype {kind}")
    name = r.cstr()
    r.finish()
    return chr(kind), name


def parse_describe(body: Buffer) -> Describe:
    return Describe(*_kind_and_name(body, "Describe"))


def parse_close(body: Buffer) -> Close:
    return Close(*_kind_and_name(body, "Close"))


def parse_execute(body: Buffer) -> Execute:
    r = Reader(body, "Execute")
    portal = r.cstr()
    max_rows = r.i32()
    r.finish()
    return Execute(portal, max_rows)


def parse_copy_fail(body: Buffer) -> str:
    r = Reader(body, "CopyFail")
    msg = r.cstr()
    r.finish()
    return msg


def parse_function_call(body: Buffer) -> FunctionCall:
    r = Reader(body, "FunctionCall")
    oid = r.u32()
    formats = r.i16_array(r.u16())
    count = r.u16()
    _check_format_counts(r, len(formats), count, "argument")
    args = tuple(r.value() for _ in range(count))
    result_format = r.i16()
    r.finish()
    return FunctionCall(oid, formats, args, result_format)


def parse_password(body: Buffer) -> bytes:
    data = as_bytes(body)
    if not data or data.find(b"\0") != len(data) - 1:
        raise ProtocolViolation("invalid password packet size")
    return data[:-1]


def parse_sasl_initial_response(body: Buffer) -> tuple[str, bytes | None]:
    r = Reader(body, "SASLInitialResponse")
    mechanism = r.cstr()
    data = r.value()
    r.finish()
    return mechanism, data


def parse_sasl_response(body: Buffer) -> bytes:
    return as_bytes(body)
