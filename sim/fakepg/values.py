"""SQL values: the few types the fake server knows, their OIDs, and their wire forms.

Values are plain Python objects (``int``, ``str``, ``bool``, ``None``,
``Decimal``) plus small wrappers for timestamps, intervals and LSNs, so the
interpreter stays simple; the static type OID of an expression decides how a
value is written in a DataRow (text or binary), as PostgreSQL's output
functions would.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sim.fakepg.errors import (
    FEATURE_NOT_SUPPORTED,
    INVALID_BINARY_REPRESENTATION,
    INVALID_TEXT_REPRESENTATION,
    NUMERIC_OUT_OF_RANGE,
    SqlError,
)
from state.replication import format_lsn, parse_lsn

BOOL = 16
NAME = 19
INT8 = 20
INT2 = 21
INT4 = 23
TEXT = 25
OID = 26
XID = 28
FLOAT8 = 701
UNKNOWN = 705
VARCHAR = 1043
TIMESTAMPTZ = 1184
INTERVAL = 1186
NUMERIC = 1700
VOID = 2278
PG_LSN = 3220

INT8_MIN, INT8_MAX = -(1 << 63), (1 << 63) - 1
INT4_MIN, INT4_MAX = -(1 << 31), (1 << 31) - 1

# Virtual second 0 is this instant, so timestamps print as plausible dates.
_BASE = datetime(2025, 1, 1, tzinfo=UTC)
BASE_EPOCH = _BASE.timestamp()

TYPE_NAMES: dict[str, int] = {
    "bigint": INT8,
    "int8": INT8,
    "int": INT4,
    "integer": INT4,
    "int4": INT4,
    "smallint": INT2,
    "int2": INT2,
    "text": TEXT,
    "varchar": TEXT,
    "name": TEXT,
    "bool": BOOL,
    "boolean": BOOL,
    "float8": FLOAT8,
    "numeric": NUMERIC,
    "decimal": NUMERIC,
    "timestamptz": TIMESTAMPTZ,
    "interval": INTERVAL,
    "pg_lsn": PG_LSN,
    "regclass": TEXT,
}

OID_NAMES: dict[int, str] = {
    BOOL: "bool",
    INT8: "int8",
    INT2: "int2",
    INT4: "int4",
    TEXT: "text",
    FLOAT8: "float8",
    NUMERIC: "numeric",
    TIMESTAMPTZ: "timestamptz",
    INTERVAL: "interval",
    PG_LSN: "pg_lsn",
    VOID: "void",
    XID: "xid",
}

# Fixed type sizes for RowDescription (-1 = variable length).
TYPE_SIZES: dict[int, int] = {BOOL: 1, INT8: 8, INT2: 2, INT4: 4, FLOAT8: 8, TIMESTAMPTZ: 8, INTERVAL: 16,
                              PG_LSN: 8, VOID: 4, XID: 4}


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A timestamptz as virtual seconds."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Interval:
    seconds: float


@dataclass(frozen=True, slots=True)
class Lsn:
    value: int


class _Void:
    """What ``pg_sleep`` returns; prints as the empty string."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "VOID"


VOID_VALUE = _Void()

Value = int | str | bool | Decimal | float | Timestamp | Interval | Lsn | _Void | None


def format_timestamp(seconds: float) -> str:
    micros = round(seconds * 1_000_000)
    moment = _BASE + timedelta(microseconds=micros)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "+00"


def format_interval(seconds: float) -> str:
    micros = round(abs(seconds) * 1_000_000)
    sign = "-" if seconds < 0 else ""
    whole, frac = divmod(micros, 1_000_000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}:{secs:02d}"
    if frac:
        text += f".{frac:06d}".rstrip("0")
    return text


def check_int8(value: int) -> int:
    if not INT8_MIN <= value <= INT8_MAX:
        raise SqlError(NUMERIC_OUT_OF_RANGE, "bigint out of range")
    return value


def to_text(value: Value) -> str | None:
    """PostgreSQL's text output of ``value``."""
    if value is None:
        return None
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, int | str | Decimal):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, Timestamp):
        return format_timestamp(value.seconds)
    if isinstance(value, Interval):
        return format_interval(value.seconds)
    if isinstance(value, Lsn):
        return format_lsn(value.value)
    return ""


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_I64 = struct.Struct("!q")
_F64 = struct.Struct("!d")


def to_binary(value: Value, oid: int) -> bytes | None:
    """Binary output for the types clients commonly ask binary for; others are refused."""
    if value is None:
        return None
    try:
        if oid == INT8:
            return _I64.pack(int(value))  # type: ignore[arg-type]
        if oid == INT4:
            return _I32.pack(int(value))  # type: ignore[arg-type]
        if oid == INT2:
            return _I16.pack(int(value))  # type: ignore[arg-type]
        if oid == BOOL:
            return b"\x01" if value else b"\x00"
        if oid == FLOAT8:
            return _F64.pack(float(value))  # type: ignore[arg-type]
    except (struct.error, TypeError, ValueError):
        raise SqlError(NUMERIC_OUT_OF_RANGE, "value out of range for binary output") from None
    if oid in (TEXT, VARCHAR, UNKNOWN, NAME, VOID):
        return (to_text(value) or "").encode()
    raise SqlError(FEATURE_NOT_SUPPORTED, f"binary output of type {OID_NAMES.get(oid, oid)} is not supported")


def _bad_text(type_name: str, text: str) -> SqlError:
    return SqlError(INVALID_TEXT_REPRESENTATION, f'invalid input syntax for type {type_name}: "{text}"')


def parse_int(text: str, oid: int = INT8) -> int:
    stripped = text.strip()
    name = OID_NAMES.get(oid, "bigint") if oid != INT8 else "bigint"
    if oid == INT4:
        name = "integer"
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not body or not body.isascii() or not body.isdigit():
        raise _bad_text(name, text)
    value = int(stripped)
    low, high = (INT4_MIN, INT4_MAX) if oid in (INT4, INT2) else (INT8_MIN, INT8_MAX)
    if not low <= value <= high:
        raise SqlError(NUMERIC_OUT_OF_RANGE, f'value "{text}" is out of range for type {name}')
    return value


_TRUE = frozenset({"t", "true", "y", "yes", "on", "1"})
_FALSE = frozenset({"f", "false", "n", "no", "off", "0"})


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad_text("boolean", text)


def parse_numeric(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise _bad_text("numeric", text) from None


def from_text(text: str, oid: int) -> Value:
    """Input function of ``oid`` applied to a text parameter."""
    if oid in (INT8, INT4, INT2):
        return parse_int(text, oid)
    if oid == BOOL:
        return parse_bool(text)
    if oid == NUMERIC:
        return parse_numeric(text)
    if oid == FLOAT8:
        try:
            return float(text)
        except ValueError:
            raise _bad_text("double precision", text) from None
    if oid == PG_LSN:
        lsn = parse_lsn(text)
        if lsn is None:
            raise _bad_text("pg_lsn", text)
        return Lsn(lsn)
    return text


def from_binary(data: bytes, oid: int) -> Value:
    """Binary input for int2/4/8, bool, float8 and text-like types."""
    sizes = {INT8: _I64, INT4: _I32, INT2: _I16, FLOAT8: _F64}
    packer = sizes.get(oid)
    if packer is not None:
        if len(data) != packer.size:
            raise SqlError(INVALID_BINARY_REPRESENTATION, "incorrect binary data format in bind parameter")
        return packer.unpack(data)[0]
    if oid == BOOL:
        if len(data) != 1:
            raise SqlError(INVALID_BINARY_REPRESENTATION, "incorrect binary data format in bind parameter")
        return data != b"\x00"
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise SqlError("22021", 'invalid byte sequence for encoding "UTF8"') from None


def cast(value: Value, oid: int) -> Value:
    """``value::type`` for the types above."""
    if value is None:
        return None
    if oid in (INT8, INT4, INT2):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return parse_int(str(value), oid)
        if isinstance(value, Decimal | float):
            # PostgreSQL rounds half away from zero (Python's round() would go to even).
            try:
                whole = Decimal(str(value)).to_integral_value(rounding=ROUND_HALF_UP)
            except InvalidOperation:
                raise SqlError(NUMERIC_OUT_OF_RANGE, "cannot convert to bigint") from None
            return parse_int(str(whole), oid)
        return parse_int(str(value), oid)
    if oid == TEXT:
        return to_text(value)
    if oid == BOOL:
        return value if isinstance(value, bool) else parse_bool(str(value))
    if oid == NUMERIC:
        return value if isinstance(value, Decimal) else parse_numeric(to_text(value) or "")
    if oid == FLOAT8:
        return float(value) if isinstance(value, int | float | Decimal) else from_text(str(value), FLOAT8)
    if oid == PG_LSN:
        return value if isinstance(value, Lsn) else from_text(str(value), PG_LSN)
    if oid == INTERVAL and isinstance(value, str):
        return Interval(_parse_interval(value))
    return value


_UNITS = {"ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001, "s": 1.0, "sec": 1.0, "second": 1.0,
          "seconds": 1.0, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hour": 3600.0,
          "hours": 3600.0}


def _parse_interval(text: str) -> float:
    parts = text.strip().split()
    try:
        if len(parts) == 1:
            return float(parts[0])
        if len(parts) == 2 and parts[1].lower() in _UNITS:
            return float(parts[0]) * _UNITS[parts[1].lower()]
    except ValueError:
        pass
    raise _bad_text("interval", text)
