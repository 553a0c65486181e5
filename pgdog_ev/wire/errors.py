"""The single exception type of the codec, plus the SQLSTATEs the proxy reports.

Every malformed input maps to :class:`ProtocolViolation` so callers need one
``except`` clause and can turn it straight into an ErrorResponse for the client.
"""

from __future__ import annotations

PROTOCOL_VIOLATION = "08P01"
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION = "28000"
TOO_MANY_CONNECTIONS = "53300"
CONNECTION_FAILURE = "08006"
CONNECTION_EXCEPTION = "08000"
QUERY_CANCELED = "57014"
ADMIN_SHUTDOWN = "57P01"
CANNOT_CONNECT_NOW = "57P03"
FEATURE_NOT_SUPPORTED = "0A000"
INVALID_CATALOG_NAME = "3D000"
IDLE_IN_TRANSACTION_TIMEOUT = "25P03"
IDLE_SESSION_TIMEOUT = "57P05"
PROGRAM_LIMIT_EXCEEDED = "54000"
INTERNAL_ERROR = "XX000"
SYNTAX_ERROR = "42601"
INVALID_PARAMETER_VALUE = "22023"
INVALID_TRANSACTION_STATE = "25000"
NO_ACTIVE_SQL_TRANSACTION = "25P01"
DUPLICATE_PREPARED_STATEMENT = "42P05"


class ProtocolViolation(Exception):
    """Malformed or unacceptable protocol input.

    ``str(exc)``/``exc.message`` is phrased for the client (it ends up in the
    ErrorResponse 'M' field); ``exc.sqlstate`` is the code to send with it.
    """

    def __init__(self, message: str, sqlstate: str = PROTOCOL_VIOLATION) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate

    def __reduce__(self) -> tuple[type[ProtocolViolation], tuple[str, str]]:
        # Keep sqlstate across pickling (multiprocessing, simulator snapshots).
        return (type(self), (self.message, self.sqlstate))
