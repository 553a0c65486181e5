"""The session settings a transaction-mode client would have on a server of its own.

A client's SETs must follow it from server to server, so the proxy keeps the
values itself: ``params`` are the committed session settings that get replayed
(see params.sync_query) on whatever server the client is given next. PostgreSQL
makes a SET inside a transaction block part of the transaction, so such changes
wait in ``txn`` until COMMIT; a ROLLBACK, or a ROLLBACK TO a savepoint taken
before them, drops them. SET LOCAL never outlives its transaction and is not
tracked at all.

A change is (name, value): value None means "back to the session default",
which is the value the client gave at startup, if any, else the server's own;
name None means RESET ALL.
"""

from __future__ import annotations

from typing import Final

Change = tuple[str | None, str | None]

# The proxy's own setting: a change to it made inside a transaction waits in ``txn`` for COMMIT like
# any other (the client acts on it then), but it is not a server setting to replay.
PROXY_SETTING: Final = "pgdog.role"


class SettingsTracker:
    __slots__ = ("params", "savepoints", "startup", "txn")

    def __init__(self, startup: dict[str, str]) -> None:
        self.startup = dict(startup)
        # The same dict as ``startup`` until the first change (most clients never SET anything,
        # and 10,000 idle clients should not hold two copies each): see _own.
        self.params = self.startup
        self.txn: list[Change] = []
        # (savepoint name, len(txn) when it was taken), innermost last.
        self.savepoints: list[tuple[str, int]] = []

    def _own(self) -> dict[str, str]:
        """``params``, made a dict of its own before it is changed."""
        if self.params is self.startup:
            self.params = dict(self.startup)
        return self.params

    def _apply(self, target: dict[str, str], change: Change) -> None:
        name, value = change
        if name == PROXY_SETTING:
            return  # held for COMMIT/ROLLBACK, never replayed
        if name is None:
            target.clear()
            target.update(self.startup)
        elif value is not None:
            target[name] = value
        elif name in self.startup:
            target[name] = self.startup[name]
        else:
            target.pop(name, None)

    def change(self, name: str | None, value: str | None, in_transaction: bool) -> None:
        if in_transaction:
            self.txn.append((name, value))
        else:
            self._apply(self._own(), (name, value))

    def effective(self) -> dict[str, str]:
        """Settings as the client sees them now, including its open transaction's."""
        if not self.txn:
            return self.params
        out = dict(self.params)
        for change in self.txn:
            self._apply(out, change)
        return out

    def commit(self) -> list[Change]:
        """The transaction committed: its changes become session settings."""
        done = self.txn
        for change in done:
            self._apply(self._own(), change)
        self.txn = []
        self.savepoints = []
        return done

    def rollback(self) -> list[Change]:
        """The transaction is gone: returns the changes undone."""
        undone = self.txn
        self.txn = []
        self.savepoints = []
        return undone

    def savepoint(self, name: str) -> None:
        self.savepoints.append((name.lower(), len(self.txn)))

    def _find(self, name: str) -> int | None:
        key = name.lower()
        for i in range(len(self.savepoints) - 1, -1, -1):
            if self.savepoints[i][0] == key:
                return i
        return None

    def release(self, name: str) -> None:
        """RELEASE keeps the changes but forgets the savepoint and every later one."""
        i = self._find(name)
        if i is not None:
            del self.savepoints[i:]

    def rollback_to(self, name: str) -> list[Change]:
        """ROLLBACK TO undoes changes made since the savepoint, which stays."""
        i = self._find(name)
        if i is None:
            return []
        mark = self.savepoints[i][1]
        undone = self.txn[mark:]
        del self.txn[mark:]
        del self.savepoints[i + 1 :]
        return undone

    def reset_all(self) -> None:
        """DISCARD ALL: back to the startup settings, no transaction."""
        self.params = self.startup
        self.txn = []
        self.savepoints = []
