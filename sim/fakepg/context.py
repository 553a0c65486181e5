"""The execution context of one statement: what built-in functions and row locks need.

A statement that waits (pg_sleep, a row lock) is run again from the start
when the wait ends; ``sleeps_done`` says how many of its pg_sleep calls
already elapsed so the re-run passes through them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.fakepg.errors import UNDEFINED_TABLE, LockWait, Sleep, SqlError
from sim.fakepg.exprs import Evaluator
from sim.fakepg.values import Value

if TYPE_CHECKING:
    from sim.fakepg.database import Database
    from sim.fakepg.session import BackendSession
    from sim.fakepg.txn import Transaction


class Context:
    def __init__(
        self,
        session: BackendSession,
        txn: Transaction,
        now: float,
        params: tuple[Value, ...],
        param_types: tuple[int, ...],
        sleeps_done: int = 0,
    ) -> None:
        self.session = session
        self.db: Database = session.database
        self.txn = txn
        self.now = now
        self.txn_start = txn.start
        self.params = params
        self.param_types = param_types
        self.sleeps_done = sleeps_done
        self._sleeps = 0
        self.evaluator = Evaluator(self, params)

    # -- row locks ----------------------------------------------------------------------

    def lock(self, table: str, key: int) -> None:
        holder = self.db.lock(self.txn, table, key)
        if holder is not None:
            raise LockWait(holder)

    # -- exprs.Runtime --------------------------------------------------------------------

    def in_recovery(self) -> bool:
        return self.db.in_recovery

    def current_lsn(self) -> int:
        return self.db.current_lsn

    def replay_lsn(self) -> int | None:
        return self.db.replay_lsn

    def replay_timestamp(self) -> float | None:
        return self.db.last_replay_timestamp

    def sleep(self, seconds: float) -> None:
        if self._sleeps < self.sleeps_done:
            self._sleeps += 1
            return
        raise Sleep(self.now + seconds)

    def current_setting(self, name: str, missing_ok: bool) -> str | None:
        try:
            return self.session.show(name.lower())
        except SqlError:
            if missing_ok:
                return None
            raise

    def set_config(self, name: str, value: str, local: bool) -> str:
        return self.session.set_setting(name.lower(), value, local)

    def backend_pid(self) -> int:
        return self.session.pid

    def user(self) -> str:
        return self.session.user

    def database(self) -> str:
        return self.session.database_name

    def server_port(self) -> int:
        server = self.session.server
        return server.port if server is not None else 5432

    def xid(self) -> int:
        return self.txn.xid

    def nextval(self, name: str) -> int:
        raise SqlError(UNDEFINED_TABLE, f'relation "{name}" does not exist')
