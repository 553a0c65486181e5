"""One open transaction of a session: its private writes, locks, savepoints and flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.fakepg.locks import RowKey


class _Deleted:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DELETED"


DELETED = _Deleted()
Written = int | None | _Deleted


@dataclass(slots=True)
class SavepointState:
    name: str
    writes: dict[RowKey, Written]
    creates: list[str]
    settings: dict[str, str]


@dataclass(slots=True)
class Transaction:
    xid: int
    start: float  # what now() returns inside it
    explicit: bool = False
    failed: bool = False
    read_only: bool = False
    # Started while the server was in recovery: stays read-only after a promotion, as in PostgreSQL.
    in_recovery: bool = False
    writes: dict[RowKey, Written] = field(default_factory=dict)
    creates: list[str] = field(default_factory=list)
    savepoints: list[SavepointState] = field(default_factory=list)
    # Session settings when the transaction began: ROLLBACK restores them.
    settings_before: dict[str, str] = field(default_factory=dict)
    # SET LOCAL values to undo at the end: name -> value before.
    local_settings: dict[str, str] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return f"x{self.xid}"

    @property
    def status(self) -> bytes:
        """ReadyForQuery status while this transaction is open."""
        if not self.explicit:
            return b"I"
        return b"E" if self.failed else b"T"
