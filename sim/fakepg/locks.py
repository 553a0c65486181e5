"""Row locks: who holds each (table, key), who waits for whom, and deadlock detection.

Writers lock the rows they touch until their transaction ends (a prepared
transaction keeps them until COMMIT/ROLLBACK PREPARED, even across a crash),
so two sessions incrementing the same counter serialise as in PostgreSQL
instead of losing an update. Holders are identified by string tokens
("x<xid>" for transactions, "g:<gid>" for prepared ones) so everything here
iterates in a fixed order.
"""

from __future__ import annotations

from typing import Protocol

RowKey = tuple[str, int]


class Waiter(Protocol):
    def lock_released(self) -> None: ...


def prepared_token(gid: str) -> str:
    return "g:" + gid


class LockTable:
    def __init__(self) -> None:
        self.owner: dict[RowKey, str] = {}
        self.held: dict[str, list[RowKey]] = {}
        # waiting token -> token it waits for; and the sessions waiting on each holder.
        self.waits_for: dict[str, str] = {}
        self.waiters: dict[str, list[tuple[str, Waiter]]] = {}

    def acquire(self, token: str, key: RowKey) -> str | None:
        """Take ``key`` for ``token``; returns the holder's token if somebody else has it."""
        owner = self.owner.get(key)
        if owner is None:
            self.owner[key] = token
            self.held.setdefault(token, []).append(key)
            return None
        return None if owner == token else owner

    def would_deadlock(self, token: str, holder: str) -> bool:
        seen = 0
        current: str | None = holder
        while current is not None and seen <= len(self.waits_for):
            if current == token:
                return True
            current = self.waits_for.get(current)
            seen += 1
        return False

    def wait(self, token: str, holder: str, waiter: Waiter) -> None:
        self.waits_for[token] = holder
        self.waiters.setdefault(holder, []).append((token, waiter))

    def stop_waiting(self, token: str) -> None:
        holder = self.waits_for.pop(token, None)
        if holder is None:
            return
        queue = self.waiters.get(holder, [])
        self.waiters[holder] = [(t, w) for t, w in queue if t != token]
        if not self.waiters[holder]:
            del self.waiters[holder]

    def release_all(self, token: str) -> list[Waiter]:
        """Drop every lock of ``token``; returns the sessions that were waiting for it, in order."""
        for key in self.held.pop(token, []):
            if self.owner.get(key) == token:
                del self.owner[key]
        self.stop_waiting(token)
        woken = self.waiters.pop(token, [])
        for t, _ in woken:
            self.waits_for.pop(t, None)
        return [w for _, w in woken]

    def transfer(self, old: str, new: str) -> list[Waiter]:
        """A transaction became a prepared one: its locks now belong to ``new``.

        Sessions waiting for the old token are woken so they re-queue behind the new holder.
        """
        keys = self.held.pop(old, [])
        for key in keys:
            self.owner[key] = new
        if keys:
            self.held.setdefault(new, []).extend(keys)
        woken = self.waiters.pop(old, [])
        for t, _ in woken:
            self.waits_for.pop(t, None)
        return [w for _, w in woken]
