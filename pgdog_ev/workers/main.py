"""``pgdog-ev worker``: one worker process, started by the supervisor (never by hand).

Hidden from the command line help: the supervisor passes the worker's index, the number of
workers, the descriptor of its end of the private channel, the port it reserved (and, for a
unix-socket host, the listening socket itself), and the same configuration arguments it was
started with. A fresh interpreter per worker (rather than a fork of the supervisor) starts with
no reactor, threads or descriptors of the supervisor's, which is what makes restarting one at
any time safe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loop.reactor import Reactor
from loop.sockets import SystemSockets
from pgdog_ev.config import ConfigError
from pgdog_ev.sdnotify import SystemdNotifier

if TYPE_CHECKING:
    from state.pool import PoolKey

log = logging.getLogger("pgdog_ev")


class InheritedListener(SystemSockets):
    """The operating system's sockets, except that the first listening socket asked for is the
    one the supervisor listens on and handed down (a unix-socket host: SO_REUSEPORT does not
    spread those, so the workers share one listening socket instead)."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock

    def listen_socket(self, host: str | None, port: int, backlog: int, reuse_port: bool) -> socket.socket:
        sock, self._sock = self._sock, None
        if sock is None:
            return super().listen_socket(host, port, backlog, reuse_port)
        sock.setblocking(False)
        return sock


def read_settled(fd: int) -> set[PoolKey] | None:
    """The pools the daemon ran before this worker was restarted, as the supervisor wrote them
    (see Directory). Unreadable, they are None: the worker then starts as at the daemon's start."""
    from state.pool import PoolKey

    try:
        with os.fdopen(fd, "rb") as f:
            rows = json.loads(f.read())
        return {PoolKey(str(u), str(d), str(h), int(p), int(s), str(r)) for u, d, h, p, s, r in rows}
    except (OSError, ValueError, TypeError) as exc:
        log.error("the pools known before this restart could not be read (%s): every host counts as known", exc)
        return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgdog-ev worker", description="one worker process (started by the supervisor)")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--channel-fd", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--listen-fd", type=int)
    p.add_argument("--settled-fd", type=int)
    p.add_argument("-c", "--config")
    p.add_argument("-u", "--users")
    p.add_argument("-d", "--database-url", action="append", default=[])
    return p


def worker_main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if not 0 <= args.index < args.count:
        print(f"pgdog-ev worker: index {args.index} outside 0..{args.count - 1}", file=sys.stderr)
        return 2
    from pgdog_ev.daemon import Daemon, WorkerSlot, load
    from pgdog_ev.workers.link import WorkerLink

    channel = socket.socket(fileno=args.channel_fd)
    listen = socket.socket(fileno=args.listen_fd) if args.listen_fd is not None else None

    def reload() -> object:
        return load(args.config, args.users, args.database_url)

    try:
        config = load(args.config, args.users, args.database_url)
    except ConfigError as exc:
        print(f"pgdog-ev: worker {args.index}: configuration error: {exc}", file=sys.stderr)
        return 2
    if config.general.workers != args.count:
        # The file changed since the supervisor read it: the count the supervisor runs wins.
        config = dataclasses.replace(config, general=dataclasses.replace(config.general, workers=args.count))
    from pgdog_ev.logs import setup_logging
    from pgdog_ev.workers.logtag import tag_worker

    setup_logging(config.general.log_level, config.general.log_format)
    tag_worker(args.index)
    reactor = Reactor(sockets=InheritedListener(listen) if listen is not None else None)
    slot = WorkerSlot(args.index, args.count, args.port)
    try:
        # Only the supervisor talks to systemd (NotifyAccess=main): a worker's notifier is silent.
        daemon = Daemon(config, reload_config=reload, reactor=reactor,  # type: ignore[arg-type]
                        notifier=SystemdNotifier(None, pid=os.getpid()), worker=slot,
                        settled_pools=read_settled(args.settled_fd) if args.settled_fd is not None else None)
    except ConfigError as exc:
        print(f"pgdog-ev: worker {args.index}: configuration error: {exc}", file=sys.stderr)
        return 2
    link = WorkerLink(daemon, channel, args.index, args.count)
    daemon.link = link
    link.attach()
    try:
        return daemon.run()
    except OSError as exc:
        log.error("worker %d cannot start: %s", args.index, exc)
        return 1
