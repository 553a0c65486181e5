"""One fake PostgreSQL node's data: committed tables, WAL on a virtual disk, locks, 2PC, roles.

The committed state is the fold of the WAL (wal.py) over the initial tables,
so what survives a crash is exactly what the virtual disk kept: commits are
fsynced before they are acknowledged while ``synchronous_commit`` is on, and
only by ``flush()`` when it is off. Replication, promotion and rewinding a
former primary live in replication.py; this module is the single-node part
and what the invariant checker reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sim.disk import VirtualDisk
from sim.fakepg import replication as repl
from sim.fakepg import wal
from sim.fakepg.errors import (
    DUPLICATE_OBJECT,
    UNDEFINED_OBJECT,
    SqlError,
)
from sim.fakepg.locks import LockTable, RowKey, prepared_token
from sim.fakepg.txn import DELETED, Transaction, Written

if TYPE_CHECKING:
    from sim.fakepg.session import BackendSession

WAL_FILE = "wal"
BASE_FILE = "base"
CONTROL_FILE = "control"

# Counters of Database.stats, one per statement executed.
STAT_KINDS = ("read", "write", "probe", "txn", "other")


class Database:
    """A node's data and role. ``primary`` makes it a replica (a base backup of that primary)."""

    def __init__(
        self,
        tables: tuple[str, ...] | list[str] = (),
        *,
        rows: Mapping[str, Mapping[int, int | None]] | None = None,
        primary: Database | None = None,
        name: str | None = None,
        disk: VirtualDisk | None = None,
        lag: float = 0.0,
        synchronous_commit: bool = True,
    ) -> None:
        self.disk = disk if disk is not None else VirtualDisk()
        self.lag = lag
        self.synchronous_commit = synchronous_commit
        self.replay_paused = False
        self.up = True
        self.primary: Database | None = primary
        self.in_recovery = primary is not None
        self.timeline = 1
        # Counts restarts, so record ids stay unique even if a crash lost records.
        self.boots = 0
        self._seq = 0
        self._next_xid = 1000
        self._replicas_made = 0
        self.state = wal.CommittedState()
        self.wal: list[wal.WalRecord] = []
        self.flushed_lsn = wal.INITIAL_LSN
        self.locks = LockTable()
        # Replay bookkeeping (replicas; kept after promotion, as PostgreSQL does).
        self.replay_lsn: int | None = None
        self.last_replay_timestamp: float | None = None
        self.replication_error: str | None = None
        self._sessions: dict[int, BackendSession] = {}
        # The latest time any session of this node has seen (sessions resumed by another's call use it).
        self.clock = 0.0
        # What the simulator's checkers read.
        self.stats: dict[str, int] = dict.fromkeys(STAT_KINDS, 0)
        self.queries = 0
        self.writes_refused: list[tuple[float, str, int]] = []
        self.discarded: list[wal.WalRecord] = []
        self.lost: list[wal.WalRecord] = []
        # Exceptions inside the fake itself (its bugs, not the proxy's): (now, pid, repr).
        self.internal_errors: list[tuple[float, int, str]] = []
        if primary is not None:
            primary._replicas_made += 1
            self.name = name if name is not None else f"{primary.name}.r{primary._replicas_made}"
            repl.base_backup(self, primary)
        else:
            self.name = name if name is not None else "pg"
            seed = rows or {}
            base = {
                "tables": sorted(set(tables) | set(seed)),
                "rows": {t: sorted([k, v] for k, v in seed[t].items()) for t in sorted(seed)},
            }
            self.disk.append(BASE_FILE, json.dumps(base).encode())
            self.disk.fsync(BASE_FILE)
            self.state = _initial_state(base)
        self.write_control()

    # -- what the invariant checker reads --------------------------------------------

    @property
    def current_lsn(self) -> int:
        return self.wal[-1].lsn if self.wal else wal.INITIAL_LSN

    @property
    def prepared(self) -> dict[str, wal.PreparedXact]:
        return self.state.prepared

    @property
    def sessions(self) -> list[BackendSession]:
        """Live sessions, by pid."""
        return [self._sessions[pid] for pid in sorted(self._sessions)]

    def committed_value(self, table: str, key: int) -> int | None:
        return self.state.tables.get(table, {}).get(key)

    def has_committed(self, table: str, key: int) -> bool:
        return key in self.state.tables.get(table, {})

    def rows(self, table: str) -> list[tuple[int, int | None]]:
        return sorted(self.state.tables.get(table, {}).items())

    def table_names(self) -> list[str]:
        return sorted(self.state.tables)

    def count(self, kind: str) -> None:
        self.stats[kind] = self.stats.get(kind, 0) + 1
        self.queries += 1

    # -- sessions ----------------------------------------------------------------------

    def attach(self, session: BackendSession) -> None:
        self._sessions[session.pid] = session

    def detach(self, session: BackendSession) -> None:
        if self._sessions.get(session.pid) is session:
            del self._sessions[session.pid]

    # -- transactions ------------------------------------------------------------------

    def begin(self, now: float, explicit: bool = False, read_only: bool = False) -> Transaction:
        self._next_xid += 1
        return Transaction(self._next_xid, now, explicit=explicit, read_only=read_only,
                           in_recovery=self.in_recovery)

    def table_exists(self, txn: Transaction | None, table: str) -> bool:
        return table in self.state.tables or (txn is not None and table in txn.creates)

    def visible(self, txn: Transaction | None, table: str) -> dict[int, int | None]:
        """Read committed: committed rows plus this transaction's own writes."""
        rows = dict(self.state.tables.get(table, {}))
        if txn is not None and txn.writes:
            for (t, key), value in txn.writes.items():
                if t != table:
                    continue
                if value is DELETED:
                    rows.pop(key, None)
                else:
                    rows[key] = value  # type: ignore[assignment]
        return rows

    def lookup(self, txn: Transaction | None, table: str, key: int) -> tuple[bool, int | None]:
        if txn is not None:
            written = txn.writes.get((table, key), _MISSING)
            if written is not _MISSING:
                return (False, None) if written is DELETED else (True, written)  # type: ignore[return-value]
        rows = self.state.tables.get(table, {})
        return (key in rows, rows.get(key))

    def lock(self, txn: Transaction, table: str, key: int) -> str | None:
        """Lock a row for writing; the holder's token if another transaction has it."""
        return self.locks.acquire(txn.token, (table, key))

    def write(self, txn: Transaction, changes: dict[RowKey, Written]) -> None:
        txn.writes.update(changes)

    def _append(self, rec: wal.WalRecord, sync: bool) -> wal.WalRecord:
        self.wal.append(rec)
        self.disk.append(WAL_FILE, wal.encode(rec))
        if sync:
            self.flush()
        return rec

    def _new_record(self, kind: str, now: float, txn_xid: int, pid: int, changes: tuple[wal.Change, ...] = (),
                    creates: tuple[str, ...] = (), gid: str = "") -> wal.WalRecord:
        self._seq += 1
        lsn = wal.lsn_after(self.current_lsn, len(changes))
        uid = f"{self.name}/{self.boots}/{self._seq}"
        return wal.WalRecord(kind, uid, lsn, now, changes, creates, gid, pid, txn_xid)

    @staticmethod
    def _changes(txn: Transaction) -> tuple[wal.Change, ...]:
        out = []
        for (table, key) in sorted(txn.writes):
            value = txn.writes[(table, key)]
            if value is DELETED:
                out.append(wal.Change(table, key, None, True))
            else:
                out.append(wal.Change(table, key, value))  # type: ignore[arg-type]
        return tuple(out)

    def commit(self, txn: Transaction, now: float, sync: bool | None = None, pid: int = 0) -> wal.WalRecord | None:
        """Make the writes durable (per ``sync``) and visible; a read-only transaction writes no WAL."""
        rec = None
        if txn.writes or txn.creates:
            rec = self._new_record(wal.COMMIT, now, txn.xid, pid, self._changes(txn), tuple(txn.creates))
            self._append(rec, self.synchronous_commit if sync is None else sync)
            wal.apply(self.state, rec)
        self._end(txn)
        return rec

    def rollback(self, txn: Transaction) -> None:
        self._end(txn)

    def _end(self, txn: Transaction) -> None:
        for waiter in self.locks.release_all(txn.token):
            waiter.lock_released()

    def prepare(self, txn: Transaction, gid: str, now: float, pid: int = 0, owner: str = "",
                database: str = "") -> wal.WalRecord:
        if gid in self.state.prepared:
            self._end(txn)
            raise SqlError(DUPLICATE_OBJECT, f'transaction identifier "{gid}" is already in use')
        rec = self._new_record(wal.PREPARE, now, txn.xid, pid, self._changes(txn), tuple(txn.creates), gid)
        # PostgreSQL flushes a PREPARE whatever synchronous_commit says.
        self._append(rec, True)
        px = wal.apply(self.state, rec)
        assert px is not None
        px.owner, px.database = owner, database
        for waiter in self.locks.transfer(txn.token, prepared_token(gid)):
            waiter.lock_released()
        for key in sorted({(c.table, c.key) for c in px.changes}):
            self.locks.acquire(prepared_token(gid), key)
        return rec

    def finish_prepared(self, gid: str, commit: bool, now: float, pid: int = 0) -> wal.WalRecord:
        if gid not in self.state.prepared:
            raise SqlError(UNDEFINED_OBJECT, f'prepared transaction with identifier "{gid}" does not exist')
        kind = wal.COMMIT_PREPARED if commit else wal.ROLLBACK_PREPARED
        rec = self._new_record(kind, now, self.state.prepared[gid].xid, pid, gid=gid)
        self._append(rec, True)
        wal.apply(self.state, rec)
        for waiter in self.locks.release_all(prepared_token(gid)):
            waiter.lock_released()
        return rec

    def flush(self, now: float | None = None) -> None:
        """fsync the WAL: what the WAL writer does on its own when synchronous_commit is off."""
        if not self.up:
            return
        self.disk.fsync(WAL_FILE)
        self.flushed_lsn = self.current_lsn

    # -- crash and recovery --------------------------------------------------------------

    def write_control(self) -> None:
        data = json.dumps({"in_recovery": self.in_recovery, "timeline": self.timeline}).encode()
        self.disk.truncate(CONTROL_FILE, 0)
        self.disk.append(CONTROL_FILE, data)
        self.disk.fsync(CONTROL_FILE)

    def crash(self) -> None:
        """Power loss: sessions die, in-flight transactions vanish, unsynced WAL may be lost."""
        if not self.up:
            return
        self.up = False
        for session in self.sessions:
            session.kill()
        self._sessions.clear()
        self.disk.crash()
        survivors, _ = wal.decode_all(self.disk.read(WAL_FILE))
        kept = {r.uid for r in survivors}
        self.lost.extend(r for r in self.wal if r.uid not in kept)
        self.locks = LockTable()

    def restart(self, now: float) -> None:
        """Crash recovery: committed state and prepared transactions rebuilt from the disk."""
        if self.up:
            return
        self.boots += 1
        self.load()
        if self.in_recovery:
            self.last_replay_timestamp = None  # NULL until a transaction is replayed again
        self.up = True

    def load(self) -> None:
        """Rebuild everything in memory from the files (restart, rewind)."""
        base = json.loads(self.disk.read(BASE_FILE) or b'{"tables": []}')
        control: dict[str, Any] = json.loads(self.disk.read(CONTROL_FILE) or b"{}")
        self.in_recovery = bool(control.get("in_recovery", self.in_recovery))
        self.timeline = int(control.get("timeline", self.timeline))
        data = self.disk.read(WAL_FILE)
        records, valid = wal.decode_all(data)
        if valid != len(data):
            self.disk.truncate(WAL_FILE, valid)
        self.state = _initial_state(base)
        self.locks = LockTable()
        self.wal = []
        for rec in records:
            self.wal.append(rec)
            wal.apply(self.state, rec)
        for gid in sorted(self.state.prepared):
            for key in sorted({(c.table, c.key) for c in self.state.prepared[gid].changes}):
                self.locks.acquire(prepared_token(gid), key)
        self.flushed_lsn = self.current_lsn
        if self.in_recovery:
            self.replay_lsn = self.current_lsn

    # -- replication (replication.py) ---------------------------------------------------

    def replicate(self, now: float) -> int:
        """Replay the primary's flushed records older than ``lag``; returns how many were applied."""
        return repl.replicate(self, now)

    def catch_up(self, now: float) -> int:
        """Replay all the primary durably wrote, ignoring lag and pause (before a promotion)."""
        return repl.catch_up(self, now)

    def promote(self, now: float) -> None:
        repl.promote(self, now)

    def follow(self, new_primary: Database, now: float | None = None) -> list[wal.WalRecord]:
        """Become a replica of ``new_primary``, discarding the records it does not have."""
        return repl.follow(self, new_primary, now)


_MISSING = object()


def _initial_state(base: dict[str, Any]) -> wal.CommittedState:
    """Tables and rows of the base file (initdb plus what the scenario loaded before the run)."""
    tables: dict[str, dict[int, int | None]] = {t: {} for t in base.get("tables", [])}
    for table, pairs in base.get("rows", {}).items():
        tables.setdefault(table, {}).update((int(k), None if v is None else int(v)) for k, v in pairs)
    return wal.CommittedState(tables)
