"""The attributes ClientSession's parts share, declared once.

ClientSession is assembled from parts (routing, session effects, local
answers) that each hold one concept; this base tells each part, and the type
checker, which attributes and methods the assembled session provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgdog_ev.sql import Analysis
    from pgdog_ev.wire import frontend as fe
    from state.events import EventLog
    from state.interfaces import Directory, StreamIO
    from state.pool import Pool
    from state.prepared import GlobalStatement
    from state.settings_tracker import SettingsTracker


class ClientFields:
    __slots__ = ()  # ClientSession declares every field (no per-client __dict__)
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
    _txn_role: str | None
    _skip_to_sync: bool
    _parameter_status: Callable[[set[str]], bytes]
    _register: Callable[[fe.Parse], GlobalStatement]
    _drop_statement: Callable[[str], None]
    _analyze: Callable[[memoryview], Analysis]
    _deallocate: Callable[[Analysis], bool]
    _refusal: Callable[[Analysis], bytes | None]
    _sql_prepare: Callable[[Analysis, str], bytes | None]
    _local_status: Callable[[], bytes]
    _arm_idle_timer: Callable[[float], None]
