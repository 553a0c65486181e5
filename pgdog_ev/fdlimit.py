"""The daemon's file-descriptor limit.

Every client and every server connection is a descriptor. Many systems start services with a soft
RLIMIT_NOFILE of 1024 and a much higher hard limit, so a proxy left at the soft limit fails its
1,000th client with EMFILE however large max_client_conn is. Like PgBouncer (which raises its limit
to fit max_client_conn) and Go's runtime (which raises it at start), the daemon raises its soft
limit to the hard one before it opens anything; what a process may raise on its own costs nothing
until used. If even the hard limit cannot fit max_client_conn, the operator is told at start,
rather than learning it from refused connections.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("pgdog_ev")

#: Descriptors the daemon needs besides its clients: listeners, metrics, event log, a few servers.
SPARE = 64
#: What an unlimited hard limit is taken to mean (the kernel's nr_open is usually 1,048,576).
UNLIMITED = 1 << 20


def raise_nofile(max_client_conn: int | None) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force after.

    Warns when the limit cannot fit ``max_client_conn`` clients (plus a few descriptors of the
    daemon's own). Never fails the start: a lower limit is the operator's choice.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
    if max_client_conn is not None and soft != resource.RLIM_INFINITY and max_client_conn + SPARE > soft:
        log.warning(
            "max_client_conn = %d, but this process may open only %d files: clients beyond about %d will "
            "be refused (raise the limit: LimitNOFILE= in the systemd unit, or ulimit -n)",
            max_client_conn, soft, max(soft - SPARE, 0),
            extra={"max_client_conn": max_client_conn, "nofile": soft},
        )
    return soft
