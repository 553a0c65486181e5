"""A query the proxy runs on its own account on one pool's host: a health check or an LSN poll.

Probes queue at the pool like a privileged waiter: an idle connection runs one at once; with
none idle, a new connection is opened for it (up to the pool size), or else the next connection
checked in runs it before any client gets it. So a busy pool is still polled, and a pool whose
host is down reports the connect error to the probe's owner instead of staying silent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from state.pool import Pool

# The health check: an empty query, answered by EmptyQueryResponse, as PgBouncer and PgDog do.
HEALTHCHECK_SQL = ";"

# done(now, pool, first_row, error): error None means the host answered.
ProbeDone = Callable[[float, "Pool", "list[str | None] | None", "str | None"], None]


@dataclass(slots=True)
class Probe:
    sql: str
    # Seconds the server has to answer, once the probe runs on a connection.
    timeout: float
    done: ProbeDone
    # Counted as a health check (SHOW SERVERS/POOLS healthchecks) rather than an LSN poll.
    health: bool = True
