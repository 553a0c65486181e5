"""The proxy as a simulated host: the production Daemon on a SimReactor.

Nothing about the daemon is faked: its Directory, pools, clusters, sessions,
admin console and event log are the ones that run in production. The world
gives it virtual sockets, virtual time, entropy drawn from the seed, a fixed
log header and a silent systemd notifier. All incarnations of the proxy (it
can crash and restart) write into one event log, so the timeline of a run is
one sequence.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from pgdog_ev import __version__
from pgdog_ev.config import Config
from pgdog_ev.daemon import Daemon
from pgdog_ev.sdnotify import SystemdNotifier
from sim.world import EPOCH, Host, SimReactor, World
from state.events import EventLog, LogHeader

PROXY_PORT = 6432
#: The wall time a run's log claims to start at (fixed, so logs of one seed are identical).
SIM_WALL_START_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z


class ProxyHost(Host):
    def __init__(self, world: World, config: Config, events: EventLog, name: str = "proxy") -> None:
        self.world = world
        self.name = name
        self.vnode = world.net.add_node(name)
        self.config = config
        self.events = events
        self.reactor: SimReactor | None = None
        self.daemon: Daemon | None = None
        self.incarnation = 0
        self.starts: list[float] = []
        world.add_host(self)

    @staticmethod
    def header(world: World, config: Config) -> LogHeader:
        """Fixed except for what the run is: same seed and config, same bytes."""
        start = int(EPOCH * 1e9)
        return LogHeader(code_version=__version__, config_digest=config.digest, seed=world.seed,
                         clock_epoch_ns=SIM_WALL_START_NS - start, monotonic_start_ns=start, pid=0,
                         hostname="sim")

    def start(self) -> None:
        self.incarnation += 1
        self.reactor = self.world.new_reactor(self.vnode)
        self.daemon = Daemon(
            self.config,
            entropy=self.world.entropy,
            reactor=self.reactor,
            header=self.header(self.world, self.config),
            events=self.events,
            notifier=SystemdNotifier(None, pid=0),
        )
        # The daemon's exception sink goes unheard here: SimReactor.handle_exception makes any
        # exception a failure of the run.
        self.daemon.start()
        self.starts.append(self.world.now())

    @property
    def address(self) -> str:
        return self.vnode.ip

    def crash(self) -> None:
        """kill -9: every socket closes at once, nothing is drained, timers die with the process."""
        if self.reactor is None:
            return
        self.world.net.kill_process(self.vnode)
        self.reactor = None
        self.daemon = None

    def terminate(self) -> None:
        """SIGTERM: the daemon drains and stops on its own (the reactor stops itself)."""
        if self.reactor is not None:
            self.reactor.deliver_signal(signal.SIGTERM)

    def check_stopped(self) -> bool:
        """After a SIGTERM: the daemon stopped its reactor; the host is then down."""
        reactor = self.reactor
        if reactor is not None and reactor._stopping:
            self.world.net.kill_process(self.vnode)
            self.daemon._finish()  # type: ignore[union-attr]
            self.reactor = None
            self.daemon = None
            return True
        return reactor is None


class LogCapture(logging.Handler):
    """Turns the daemon's internal-error log lines into violations (they mean a caught exception)."""

    def __init__(self, report: Callable[[str], None]) -> None:
        super().__init__(logging.ERROR)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "internal error" in record.getMessage():
            self.report(record.getMessage() + (f" ({record.exc_info[1]!r})" if record.exc_info else ""))
