"""SHOW WORKERS: one row per worker process (``[general] workers``), one row without workers.

What an operator needs to see that the processes share the work and that none is stuck in a
restart loop: its pid, whether it answers, its clients and servers, how many CancelRequests it
passed to the worker owning the key (forwarded) or took from another (received), and how often
the supervisor restarted it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdog_ev.admin.resultset import Table, int8, text

if TYPE_CHECKING:
    from pgdog_ev.admin.host import ConsoleHost

WORKER_COLUMNS = [
    int8("worker"), int8("pid"), text("state"), int8("clients"), int8("servers"), int8("pools"),
    int8("cancels_forwarded"), int8("cancels_received"), int8("restarts"), text("started"),
]


def show_workers(host: ConsoleHost, args: tuple[str, ...]) -> Table:
    status = host.worker_status()
    return Table(list(WORKER_COLUMNS), [[status.get(name) for name, _ in WORKER_COLUMNS]])
