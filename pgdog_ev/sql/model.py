"""What the analyzer reports about a query text.

The client state machine acts on these values for every Query and Parse message, so they are
immutable (shared between cache hits) and cheap to compare in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Kind(IntEnum):
    """The session-affecting statement families a transaction pooler has to react to.

    Anything that leaves no state behind once the transaction ends is ``OTHER``.
    """

    OTHER = 0
    SET = 1
    SET_LOCAL = 2
    SET_DEFAULT = 3
    RESET = 4
    RESET_ALL = 5
    SET_CONFIG = 6
    SET_TRANSACTION = 7
    BEGIN = 8
    COMMIT = 9
    ROLLBACK = 10
    SAVEPOINT = 11
    RELEASE = 12
    ROLLBACK_TO = 13
    PREPARE_TRANSACTION = 14
    COMMIT_PREPARED = 15
    ROLLBACK_PREPARED = 16
    DISCARD_ALL = 17
    DISCARD_TEMP = 18
    DISCARD_PLANS = 19
    DISCARD_SEQUENCES = 20
    LISTEN = 21
    UNLISTEN = 22
    NOTIFY = 23
    PREPARE = 24
    EXECUTE = 25
    DEALLOCATE = 26
    TEMP_TABLE = 27
    ADVISORY_LOCK = 28
    ADVISORY_UNLOCK = 29
    LOAD = 30
    COPY_FROM_STDIN = 31
    COPY_TO_STDOUT = 32
    DO = 33
    CALL = 34
    # A setting changed in a way whose resulting value cannot be known from the text alone
    # (set_config() with non-literal arguments or outside a bare SELECT, SET ... FROM CURRENT,
    # SET TIME ZONE INTERVAL ..., SET with a $n parameter). The caller cannot replay it and
    # should consider the server's session state dirty.
    UNTRACKED_SETTING = 35
    # DECLARE ... WITH HOLD: the cursor outlives the transaction, so the server now carries
    # client state until CLOSE / DISCARD ALL.
    CURSOR_WITH_HOLD = 36


# Statements PgDog can answer itself by updating the client's tracked parameters.
SESSION_KINDS = frozenset(
    {Kind.SET, Kind.SET_LOCAL, Kind.SET_DEFAULT, Kind.RESET, Kind.RESET_ALL, Kind.SET_CONFIG}
)
TRANSACTION_CONTROL_KINDS = frozenset({Kind.BEGIN, Kind.COMMIT, Kind.ROLLBACK})


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a query text.

    ``value`` is ``None`` with ``flags`` containing ``"default"`` when a SET LOCAL or
    set_config() puts the setting back to its default rather than to a value.
    """

    kind: Kind
    name: str | None = None
    value: str | None = None
    flags: frozenset[str] = frozenset()
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Analysis:
    """All statements of one Query/Parse text, in order.

    A text the parser rejects is a single ``OTHER`` with ``error`` set: the server will report
    the syntax error itself, so the pooler only needs to forward it. A text the fast path
    skipped is also a single ``OTHER``, however many statements it holds.
    """

    statements: tuple[Statement, ...]
    error: str | None = None

    @property
    def only_session_commands(self) -> bool:
        return bool(self.statements) and all(s.kind in SESSION_KINDS for s in self.statements)

    @property
    def is_transaction_control(self) -> bool:
        return len(self.statements) == 1 and self.statements[0].kind in TRANSACTION_CONTROL_KINDS

    @property
    def mixed(self) -> bool:
        """Session commands sharing a Query with other statements cannot be answered locally
        (the other statements need a server) yet must still be tracked."""
        session = sum(1 for s in self.statements if s.kind in SESSION_KINDS)
        return 0 < session < len(self.statements)


OTHER_STATEMENT = Statement(Kind.OTHER)
# Returned for every fast-path query: sharing one instance avoids allocating per query.
OTHER_ANALYSIS = Analysis((OTHER_STATEMENT,), None)
