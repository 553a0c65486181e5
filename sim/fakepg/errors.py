"""SQL errors and the two ways a statement can pause, as exceptions.

The interpreter reports every failure as :class:`SqlError` with a real
SQLSTATE, so the proxy under test sees the codes PostgreSQL would send; a
statement that must wait (``pg_sleep``, a row lock held by another
transaction) raises :class:`Suspend` and is run again from the start once
the wait is over, which is safe because statements apply their effects only
when they finish.
"""

from __future__ import annotations

SYNTAX_ERROR = "42601"
UNDEFINED_TABLE = "42P01"
UNDEFINED_COLUMN = "42703"
UNDEFINED_FUNCTION = "42883"
UNDEFINED_OBJECT = "42704"
DUPLICATE_OBJECT = "42710"
DUPLICATE_TABLE = "42P07"
UNIQUE_VIOLATION = "23505"
NOT_NULL_VIOLATION = "23502"
INVALID_TEXT_REPRESENTATION = "22P02"
NUMERIC_OUT_OF_RANGE = "22003"
DIVISION_BY_ZERO = "22012"
INVALID_PARAMETER_VALUE = "22023"
DATATYPE_MISMATCH = "42804"
GROUPING_ERROR = "42803"
READ_ONLY_TRANSACTION = "25006"
IN_FAILED_TRANSACTION = "25P02"
ACTIVE_SQL_TRANSACTION = "25001"
NO_ACTIVE_SQL_TRANSACTION = "25P01"
INVALID_TRANSACTION_STATE = "25000"
IDLE_IN_TRANSACTION_TIMEOUT = "25P03"
IDLE_SESSION_TIMEOUT = "57P05"
QUERY_CANCELED = "57014"
ADMIN_SHUTDOWN = "57P01"
CANNOT_CONNECT_NOW = "57P03"
TOO_MANY_CONNECTIONS = "53300"
LOCK_NOT_AVAILABLE = "55P03"
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
CANT_CHANGE_RUNTIME_PARAM = "55P02"
DEADLOCK_DETECTED = "40P01"
INVALID_SAVEPOINT = "3B001"
UNDEFINED_PREPARED_STATEMENT = "26000"
DUPLICATE_PREPARED_STATEMENT = "42P05"
UNDEFINED_CURSOR = "34000"
DUPLICATE_CURSOR = "42P03"
PROTOCOL_VIOLATION = "08P01"
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION = "28000"
INVALID_CATALOG_NAME = "3D000"
FEATURE_NOT_SUPPORTED = "0A000"
INVALID_BINARY_REPRESENTATION = "22P03"
INTERNAL_ERROR = "XX000"

ABORTED_MESSAGE = "current transaction is aborted, commands ignored until end of transaction block"


class SqlError(Exception):
    """An ERROR (or FATAL) to report to the client as an ErrorResponse."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
        severity: str = "ERROR",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.hint = hint
        self.position = position
        self.severity = severity


def syntax_error(near: str | None, position: int | None = None) -> SqlError:
    """PostgreSQL's wording: 'at or near "tok"', or 'at end of input'."""
    if near is None:
        return SqlError(SYNTAX_ERROR, "syntax error at end of input", position=position)
    return SqlError(SYNTAX_ERROR, f'syntax error at or near "{near}"', position=position)


def read_only_error(tag: str) -> SqlError:
    return SqlError(READ_ONLY_TRANSACTION, f"cannot execute {tag} in a read-only transaction")


class Suspend(Exception):
    """The statement must wait; it is re-run from the start when the wait ends."""


class Sleep(Suspend):
    """``pg_sleep``: wait until ``until`` (virtual seconds)."""

    def __init__(self, until: float) -> None:
        super().__init__(until)
        self.until = until


class LockWait(Suspend):
    """A row lock is held by another transaction (``holder`` is its lock token)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder
