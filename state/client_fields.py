"""The attributes ClientSession's parts share, declared once.

ClientSession is assembled from parts (routing, session effects, local
answers) that each hold one concept; this base tells each part, and the type
checker, which attributes and methods the assembled session provides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgdog_ev.sql import Analysis
    from state.events import EventLog
    from state.interfaces import Directory, StreamIO
    from state.pool import Pool
    from state.prepared import GlobalStatement
    from state.reasons import Reason
    from state.settings_tracker import SettingsTracker


class ClientFields:
    id: int
    io: StreamIO
    log: EventLog
    directory: Directory
    pool: Pool | None
    settings: SettingsTracker
    statements: dict[str, GlobalStatement]
    rename: bool
    full_sql: bool
    sql_statements: dict[str, GlobalStatement]
    pinned: bool
    errors: int
    queries: int
    told: dict[str, str]
    _now: float
    _unnamed: Analysis
    _segment: list[Analysis] | None
    _local_txn: list[str] | None
    _local_failed: bool
    _txn_role: str | None
    role_override: str | None
    startup_role: str | None
    _skip_to_sync: bool

    # Methods that a part calls but a part after it in the chain (or ClientSession) defines:
    # declared here so that the calling part, and the compiled build, knows them (see native.py).
    # The chain, first to last: SessionEffects, MessageRouting, LocalAnswers, ReadWriteSplit,
    # AdminAnswers, ClientSession.
    def _parameter_status(self, names: set[str]) -> bytes:
        raise NotImplementedError

    def _drop_all_statements(self) -> None:
        raise NotImplementedError

    def _local_status(self) -> bytes:
        raise NotImplementedError

    def _arm_idle_timer(self, now: float) -> None:
        raise NotImplementedError

    def _admin_wait(self, now: float) -> None:
        raise NotImplementedError

    def _admin_done(self, now: float) -> None:
        raise NotImplementedError

    def _close(self, now: float, reason: Reason) -> None:
        raise NotImplementedError

    def tell(self, name: str, value: str) -> None:
        raise NotImplementedError
