"""Result sets of the admin console in protocol bytes.

Columns carry a PostgreSQL type so drivers hand numbers back as numbers (exporters
written for PgBouncer read ``cl_waiting`` as an integer). Values are rendered
in text format the way PostgreSQL would: integers plainly, booleans as t/f,
absent values as NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pgdog_ev.wire import backend as be

TEXT = 25
INT8 = 20
FLOAT8 = 701
BOOL = 16
_SIZES = {TEXT: -1, INT8: 8, FLOAT8: 8, BOOL: 1}

Column = tuple[str, int]


def text(name: str) -> Column:
    return (name, TEXT)


def int8(name: str) -> Column:
    return (name, INT8)


def float8(name: str) -> Column:
    return (name, FLOAT8)


def boolean(name: str) -> Column:
    return (name, BOOL)


def render(value: Any) -> str | None:
    if value is None:
        return None
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _utf8(text: str) -> str:
    """``text`` as valid UTF-8. Query texts are decoded leniently (surrogateescape: the proxy
    forwards the bytes as sent), so a client's bad bytes come back here as lone surrogates, which
    neither a DataRow nor the workers' JSON channel can encode: they are shown as \\xNN."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def result(tag: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> bytes:
    """RowDescription, DataRows and CommandComplete(``tag``)."""
    fields = [be.Field(name, 0, 0, oid, _SIZES[oid], -1, 0) for name, oid in columns]
    out = bytearray(be.row_description(fields))
    for row in rows:
        out += be.data_row([render(v) for v in row])
    out += be.command_complete(tag)
    return bytes(out)


def done(tag: str) -> bytes:
    return be.command_complete(tag)


@dataclass(slots=True)
class Table:
    """A SHOW result before it becomes bytes: what one worker sends another to merge.

    Values are ints, floats, strings, booleans or None, so a Table crosses the workers' channel
    as JSON and comes back the same.
    """

    columns: list[Column]
    rows: list[list[Any]]

    def __post_init__(self) -> None:
        for r, row in enumerate(self.rows):
            if any(isinstance(v, str) and not v.isascii() for v in row):
                self.rows[r] = [_utf8(v) if isinstance(v, str) else v for v in row]

    def encode(self, tag: str = "SHOW") -> bytes:
        return result(tag, self.columns, self.rows)

    def index(self, name: str) -> int:
        for i, (column, _) in enumerate(self.columns):
            if column == name:
                return i
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {"columns": [[name, oid] for name, oid in self.columns], "rows": self.rows}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Table:
        return cls([(str(name), int(oid)) for name, oid in data["columns"]], [list(r) for r in data["rows"]])
