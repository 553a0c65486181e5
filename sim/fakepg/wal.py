"""Write-ahead log records: what a commit changes, how it is written to the virtual disk, and replay.

A database's committed state is always the fold of its WAL over the initial
tables, so restart (crash recovery), replication (a replica replays the
primary's records) and rewinding a former primary (``follow``) all go
through :func:`apply`. One record is one line of JSON appended in one
``VirtualDisk.append``, so a crash keeps or loses whole records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

COMMIT = "commit"
PREPARE = "prepare"
COMMIT_PREPARED = "commit_prepared"
ROLLBACK_PREPARED = "rollback_prepared"

# The first LSN of a fresh cluster (0/1000000), and the LSN cost of a record.
INITIAL_LSN = 0x0100_0000
_RECORD_BYTES = 0x28
_CHANGE_BYTES = 0x30


@dataclass(frozen=True, slots=True)
class Change:
    """One row written by a transaction: its new value, or its deletion."""

    table: str
    key: int
    value: int | None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class WalRecord:
    kind: str
    # Unique across nodes and restarts: tells shared history from diverged history.
    uid: str
    lsn: int
    time: float
    changes: tuple[Change, ...] = ()
    creates: tuple[str, ...] = ()
    gid: str = ""
    pid: int = 0
    xid: int = 0


def lsn_after(prev: int, changes: int) -> int:
    return prev + _RECORD_BYTES + _CHANGE_BYTES * max(1, changes)


def encode(rec: WalRecord) -> bytes:
    body = {
        "kind": rec.kind,
        "uid": rec.uid,
        "lsn": rec.lsn,
        "time": rec.time,
        "changes": [[c.table, c.key, c.value, c.deleted] for c in rec.changes],
        "creates": list(rec.creates),
        "gid": rec.gid,
        "pid": rec.pid,
        "xid": rec.xid,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def decode_all(data: bytes) -> tuple[list[WalRecord], int]:
    """Records of a WAL file and the length of its valid prefix (a torn or garbled tail is dropped)."""
    records: list[WalRecord] = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        try:
            body = json.loads(data[pos:nl])
            records.append(WalRecord(
                kind=body["kind"], uid=body["uid"], lsn=int(body["lsn"]), time=float(body["time"]),
                changes=tuple(Change(str(t), int(k), None if v is None else int(v), bool(d))
                              for t, k, v, d in body["changes"]),
                creates=tuple(body["creates"]), gid=body["gid"], pid=int(body["pid"]), xid=int(body["xid"]),
            ))
        except (ValueError, KeyError, TypeError):
            break
        pos = nl + 1
    return records, pos


@dataclass(slots=True)
class PreparedXact:
    """A transaction after PREPARE TRANSACTION: durable, holding its row locks, not yet applied."""

    gid: str
    changes: tuple[Change, ...]
    creates: tuple[str, ...]
    prepared_at: float
    lsn: int
    xid: int
    owner: str = ""
    database: str = ""


@dataclass(slots=True)
class CommittedState:
    """Tables (key -> value, None for a NULL v) and prepared transactions."""

    tables: dict[str, dict[int, int | None]] = field(default_factory=dict)
    prepared: dict[str, PreparedXact] = field(default_factory=dict)


def _apply_changes(state: CommittedState, changes: tuple[Change, ...], creates: tuple[str, ...]) -> None:
    for name in creates:
        state.tables.setdefault(name, {})
    for c in changes:
        table = state.tables.setdefault(c.table, {})
        if c.deleted:
            table.pop(c.key, None)
        else:
            table[c.key] = c.value


def apply(state: CommittedState, rec: WalRecord) -> PreparedXact | None:
    """Apply one record; returns the prepared transaction it created or finished, if any."""
    if rec.kind == COMMIT:
        _apply_changes(state, rec.changes, rec.creates)
        return None
    if rec.kind == PREPARE:
        px = PreparedXact(rec.gid, rec.changes, rec.creates, rec.time, rec.lsn, rec.xid)
        state.prepared[rec.gid] = px
        return px
    px = state.prepared.pop(rec.gid, None)
    if px is not None and rec.kind == COMMIT_PREPARED:
        _apply_changes(state, px.changes, px.creates)
    return px
