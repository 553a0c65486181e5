"""What executing one statement produced, before it is written as protocol messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgdog_ev.wire.backend import Field
from sim.fakepg.values import Value


@dataclass(slots=True)
class Result:
    tag: str
    # None: the statement returns no rows (NoData); else RowDescription fields, in order.
    fields: list[Field] | None = None
    rows: list[list[Value]] = field(default_factory=list)
    # (severity, SQLSTATE, message) NoticeResponses sent before the CommandComplete.
    notices: list[tuple[str, str, str]] = field(default_factory=list)
    # Set by an empty statement: EmptyQueryResponse instead of CommandComplete.
    empty: bool = False
