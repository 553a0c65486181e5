"""Streaming replication between fake nodes: base backup, replay with lag, promotion, rewind.

A replica pulls: the world calls ``replica.replicate(now)`` and the replica
applies, in order, the primary's records that the primary has flushed (a
walsender only ships flushed WAL) and that are at least ``lag`` seconds old.
Records carry node-unique ids, so after a failover a former primary can find
where its history left the new primary's and discard the rest, the way
pg_rewind does; the discarded records are kept for the invariant checker.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sim.fakepg import wal

if TYPE_CHECKING:
    from sim.fakepg.database import Database


def base_backup(replica: Database, primary: Database) -> None:
    """Copy the primary's initial tables and flushed WAL onto the replica's disk."""
    from sim.fakepg.database import BASE_FILE, WAL_FILE

    replica.disk.append(BASE_FILE, primary.disk.read(BASE_FILE))
    replica.disk.fsync(BASE_FILE)
    for rec in primary.wal:
        if rec.lsn > primary.flushed_lsn:
            break
        replica.disk.append(WAL_FILE, wal.encode(rec))
    replica.disk.fsync(WAL_FILE)
    replica.timeline = primary.timeline
    replica.load()
    replica.in_recovery = True


def replicate(db: Database, now: float) -> int:
    primary = db.primary
    if not db.up or not db.in_recovery or primary is None or db.replay_paused or not primary.up:
        return 0
    return _replay(db, primary, now - db.lag)


def _replay(db: Database, primary: Database, horizon: float) -> int:
    """Apply the primary's flushed records committed at or before ``horizon``, in order."""
    from sim.fakepg.database import WAL_FILE

    i = len(db.wal)
    if i and (i > len(primary.wal) or primary.wal[i - 1].uid != db.wal[-1].uid):
        db.replication_error = "requested timeline is not in this server's history"
        return 0
    db.replication_error = None
    applied = 0
    while i < len(primary.wal):
        rec = primary.wal[i]
        if rec.lsn > primary.flushed_lsn or rec.time > horizon:
            break
        db.wal.append(rec)
        db.disk.append(WAL_FILE, wal.encode(rec))
        px = wal.apply(db.state, rec)
        _replay_locks(db, rec, px)
        db.replay_lsn = rec.lsn
        db.last_replay_timestamp = rec.time
        applied += 1
        i += 1
    if applied:
        db.disk.fsync(WAL_FILE)
        db.flushed_lsn = db.current_lsn
    return applied


def _replay_locks(db: Database, rec: wal.WalRecord, px: wal.PreparedXact | None) -> None:
    """A replayed prepared transaction holds its row locks here too (they matter after promotion)."""
    from sim.fakepg.locks import prepared_token

    if px is None:
        return
    token = prepared_token(rec.gid)
    if rec.kind == wal.PREPARE:
        for key in sorted({(c.table, c.key) for c in px.changes}):
            db.locks.acquire(token, key)
    else:
        for waiter in db.locks.release_all(token):
            waiter.lock_released()


def promote(db: Database, now: float) -> None:
    """Leave recovery: writable from now on, LSNs continue from the replay position."""
    if not db.in_recovery:
        return
    db.in_recovery = False
    db.primary = None
    db.timeline += 1
    db.write_control()


def common_prefix(mine: list[wal.WalRecord], theirs: list[wal.WalRecord]) -> int:
    n = 0
    limit = min(len(mine), len(theirs))
    while n < limit and mine[n].uid == theirs[n].uid:
        n += 1
    return n


def follow(db: Database, new_primary: Database, now: float | None) -> list[wal.WalRecord]:
    """Rewind to the history shared with ``new_primary`` and replicate from it.

    A replica that has nothing to discard just switches upstream (a reload of
    primary_conninfo). A node that must rewind, or that was a primary, needs
    a restart: its sessions are terminated (FATAL 57P01). A node that is down
    stays down with its disk rewound until ``restart``.
    """
    from sim.fakepg.database import WAL_FILE

    # A node that is down has only what its disk kept (its in-memory WAL died with it).
    history = db.wal if db.up else wal.decode_all(db.disk.read(WAL_FILE))[0]
    keep = common_prefix(history, new_primary.wal)
    restart = keep < len(history) or not db.in_recovery
    db.primary = new_primary
    db.replication_error = None
    if db.up and not restart:
        db.timeline = max(db.timeline, new_primary.timeline)
        db.write_control()
        return []
    if db.up:
        # Shut down first: a session woken by another's rollback may still commit meanwhile.
        for session in db.sessions:
            session.terminate_by_admin(now)
        history = db.wal
        keep = common_prefix(history, new_primary.wal)
    dropped = history[keep:]
    db.discarded.extend(dropped)
    size = sum(len(wal.encode(rec)) for rec in history[:keep])
    db.disk.truncate(WAL_FILE, size)
    db.in_recovery = True
    db.timeline = max(db.timeline, new_primary.timeline)
    db.write_control()
    db.load()
    return dropped


def catch_up(db: Database, now: float) -> int:
    """Replay everything the primary has durably written, whatever the lag or a pause say.

    What an HA manager waits for before promoting a replica: the primary may
    be down, but its flushed records were shipped (a walsender only sends
    flushed WAL).
    """
    primary = db.primary
    if primary is None or not db.in_recovery or not db.up:
        return 0
    return _replay(db, primary, math.inf)
