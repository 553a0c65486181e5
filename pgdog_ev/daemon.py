"""The daemon: one reactor, one listener, the directory of pools, the event log.

This is the only place that touches the real world as a whole: it owns the
clock, the OS entropy source, the listening socket, the event-log file and the
signals (SIGHUP reloads; SIGINT and SIGTERM drain and stop).

With ``[general] workers = N`` (N > 1) ``run`` starts a supervisor instead
(pgdog_ev/workers), and each of its N worker processes is one Daemon given a
WorkerSlot: it runs with its share of the sizes, binds the client port with
SO_REUSEPORT, writes its own event log and leaves the HTTP endpoints to the
supervisor. Without a slot nothing of that runs: one process, as always.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loop.listener import RESOURCE_BACKOFF
from loop.reactor import Reactor
from pgdog_ev import __version__, native
from pgdog_ev.admin.clock import wall
from pgdog_ev.admin.console import AdminConsole
from pgdog_ev.capture.recorder import INPUTS_SUFFIX, InputCapture, capture_header, config_texts
from pgdog_ev.config import Config, ConfigError, General, load_config
from pgdog_ev.eventlog.filesink import RotatingFileSink, make_header
from pgdog_ev.fdlimit import raise_nofile
from pgdog_ev.metrics import Endpoints
from pgdog_ev.proxy.client_conn import ClientConnection
from pgdog_ev.proxy.directory import Directory
from pgdog_ev.sdnotify import SystemdNotifier
from pgdog_ev.wire.errors import TOO_MANY_CONNECTIONS
from state.client import ClientState
from state.events import EventLog, Kind, LogHeader, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    from pgdog_ev.workers.link import WorkerLink
    from state.pool import PoolKey

log = logging.getLogger("pgdog_ev")

EVENT_FLUSH_INTERVAL = 0.2
SHUTDOWN_POLL = 0.05


@dataclass(frozen=True)
class WorkerSlot:
    """This process is worker ``index`` of ``count`` under a supervisor (``[general] workers``).

    ``port`` is the client port the supervisor reserved (so ``port = 0`` resolves to one port for
    all). For a unix-socket ``host`` the supervisor listens itself and the worker's reactor hands
    that socket to the listener (pgdog_ev/workers/main.py).
    """

    index: int
    count: int
    port: int


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        reload_config: Callable[[], Config] | None = None,
        entropy: Callable[[int], bytes] = os.urandom,
        reactor: Reactor | None = None,
        header: LogHeader | None = None,
        events: EventLog | None = None,
        notifier: SystemdNotifier | None = None,
        worker: WorkerSlot | None = None,
        settled_pools: set[PoolKey] | None = None,
    ) -> None:
        # The simulator passes its own reactor, entropy, header, event log and a silent notifier;
        # production takes the defaults, which read the real clock and environment.
        self.worker = worker
        # What the files say (SHOW CONFIG, admin SET), and what this process runs with: the same
        # Config in a single process, a worker's share of every size otherwise.
        self.configured = config
        config = self._share(config)
        self.config = config
        self.reload_config = reload_config
        self.reactor = reactor or Reactor()
        self.reactor.exception_sink = self._loop_exception
        self.reactor.starvation_sink = self._loop_starved
        self.sink: RotatingFileSink | None = None
        # Pairs the monotonic clock with wall time once: the event log and the admin console use it.
        self.log_header = header or make_header(config_digest=config.digest, code_version=__version__)
        # Input capture (capture_inputs) goes with the event-log file the daemon writes itself,
        # and starts before anything draws entropy or reads the clock.
        self.capture: InputCapture | None = None
        if events is None:
            self.events = EventLog(sink=self._open_sink(config))
            self.capture = self._open_capture(config)
        else:
            self.events = events
        if self.capture is not None:
            entropy = self.capture.entropy(entropy)
        self.entropy = entropy
        # A worker the supervisor restarted hears which pools the daemon already ran (see Directory).
        self.directory = Directory(config, self.reactor, self.events, entropy, settled=settled_pools)
        self.directory.capture = self.capture
        self.reload_error: str | None = None
        self.console = AdminConsole(self)
        self.directory.console = self.console
        self.listener: Any = None
        self.endpoints: Endpoints | None = None
        self.stopping = False
        self._shutdown_deadline = 0.0
        self.exit_code = 0
        self.notifier = notifier if notifier is not None else SystemdNotifier.from_env(os.environ)
        # The channel to the supervisor, when this process is a worker (set before start()).
        self.link: WorkerLink | None = None
        self._started_at = 0.0

    # -- setup ----------------------------------------------------------------

    def _share(self, config: Config) -> Config:
        """``config`` as this process runs it: whole, or the worker's share (workers/share.py)."""
        if self.worker is None:
            return config
        from pgdog_ev.workers.share import worker_config

        return worker_config(config, self.worker.index, self.worker.count)

    def _open_sink(self, config: Config) -> Callable[[memoryview], None] | None:
        g = config.general
        if not g.event_log:
            return None
        path = g.event_log
        if self.worker is not None:
            from pgdog_ev.workers.share import worker_path

            path = worker_path(path, self.worker.index)
        self.sink = RotatingFileSink(
            path,
            self.log_header,
            max_bytes=g.event_log_max_bytes,
            keep=g.event_log_keep,
            on_error=lambda msg: log.error("event log disabled: %s", msg),
        )
        return self.sink

    def _open_capture(self, config: Config) -> InputCapture | None:
        g = config.general
        # The loader refuses capture_inputs with workers > 1 (re-execution replays one process).
        if not g.capture_inputs or self.sink is None or self.sink.broken or self.worker is not None:
            return None
        path = g.event_log + INPUTS_SUFFIX
        try:
            header = capture_header(config, self.log_header, os.environ, __version__, g.capture_max_bytes,
                                    reloadable=self.reload_config is not None)
            capture = InputCapture(path, header, g.capture_max_bytes, auth_type=lambda: self.config.general.auth_type,
                                   past_auth=_past_auth, on_stop=self._capture_stopped)
        except OSError as exc:
            log.error("input capture disabled: cannot write %s: %s", path, exc.strerror or exc)
            return None
        capture.install(self.reactor)
        self.events.emit(self.reactor.now(), Kind.NOTE, Machine.DAEMON, 0, 0, 0, Reason.CAPTURE_STARTED)
        log.warning("capturing every input (client and server bytes) to %s, up to %d bytes; "
                    "passwords are masked", path, g.capture_max_bytes, extra={"path": path})
        return capture

    def _capture_stopped(self, reason: str, error: str) -> None:
        if reason == "budget":
            log.warning("input capture stopped: capture_max_bytes (%d) used up",
                        self.config.general.capture_max_bytes)
            why = Reason.CAPTURE_FULL
        else:
            log.error("%s", error or f"input capture stopped ({reason})")
            why = Reason.CAPTURE_FAILED
        self.events.emit(self.reactor.now(), Kind.NOTE, Machine.DAEMON, 0, 0, 0, why)

    def _open_endpoints(self) -> Endpoints:
        return Endpoints.open(self)

    def start(self) -> None:
        g = self.config.general
        worker = self.worker
        self._started_at = self.reactor.now()
        if worker is None:
            # Metrics and health first: once the client port accepts, they answer too.
            self.endpoints = self._open_endpoints()
            self.listener = self.reactor.listen(g.host, g.port, self._accept)
        else:
            # The supervisor serves metrics and health for all workers; the kernel spreads new
            # connections over the workers' listening sockets (SO_REUSEPORT).
            self.listener = self.reactor.listen(g.host, worker.port, self._accept, reuse_port=True)
        self.port = self.listener.port
        if self.capture is not None:
            self.capture.on_start(self.port)
        self.events.emit(self.reactor.now(), Kind.NOTE, Machine.DAEMON, 0, 0, 0, Reason.STARTUP, self.port)
        for signum, handler in (
            (signal.SIGINT, self._on_stop_signal),
            (signal.SIGTERM, self._on_stop_signal),
            (signal.SIGHUP, self._on_reload_signal),
        ):
            self.reactor.add_signal_handler(signum, handler, signum)
        self.reactor.call_later(EVENT_FLUSH_INTERVAL, self._flush_events)
        self._stats_tick()
        # Compiled or not is worth a line: the sources take about a third more CPU per transaction.
        log.info("hot path: %s", native.STATUS)
        if worker is not None and self.link is not None:
            log.info("worker %d of %d listening on %s:%s", worker.index, worker.count, g.host, worker.port)
            self.link.ready(self.port)
            return
        log.info("pgdog-ev %s listening on %s:%d", __version__, g.host, self.port)
        self.notifier.ready(self.status_line())
        self.notifier.start_timers(self.reactor.call_later, self.status_line)

    def status_line(self) -> str:
        """One short line for `systemctl status` (sd_notify STATUS=)."""
        pools, clients = len(self.directory.pools), len(self.directory.clients)
        return f"serving {pools} pool{'s' * (pools != 1)}, {clients} client{'s' * (clients != 1)}"

    def run(self) -> int:
        self.start()
        try:
            self.reactor.run_forever()
        finally:
            self._finish()
        return self.exit_code

    # -- clients ------------------------------------------------------------------

    def _accept(self, sock: socket.socket, addr: Any) -> None:
        cid = self.directory.next_client_id()
        if self.capture is not None:
            self.capture.on_accept(cid, lambda: self.directory.clients)
        now = self.reactor.now()
        limit = self.config.general.max_client_conn
        reject = None
        if limit is not None and self.directory.accepted_clients() >= limit:
            # Refused after the startup packet, so that libpq (which starts with
            # an SSLRequest) shows the reason rather than an SSL exchange error.
            reject = (TOO_MANY_CONNECTIONS, f"too many client connections (max_client_conn = {limit})")
        self.events.emit(now, Kind.ACCEPT, Machine.CLIENT, cid, 0, 0, self.port)
        self.reactor.transport(sock, ClientConnection(self.directory, cid, reject))

    # -- signals ------------------------------------------------------------------

    def _on_reload_signal(self, signum: int) -> None:
        self.reload()

    def reload(self) -> bool:
        """Re-read the files. systemd hears RELOADING=1 first and READY=1 after, whatever the
        outcome, so a Type=notify-reload unit never waits out its timeout on a broken file."""
        self.notifier.reloading()
        try:
            return self._reload()
        finally:
            self.notifier.ready(self.status_line())

    def _reload(self) -> bool:
        now = self.reactor.now()
        if self.reload_config is None:
            return False
        try:
            config = self.reload_config()
        except ConfigError as exc:
            if self.capture is not None:
                self.capture.on_config_failed(str(exc))
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.reload_error = str(exc)
            return False
        if self.capture is not None:
            texts, _ = config_texts(config, os.environ)
            self.capture.on_config(json.dumps(texts, sort_keys=True).encode("utf-8"))
        self.reload_error = None
        config = self._keep_workers(config)
        old = self.config.general
        if (old.log_level, old.log_format) != (config.general.log_level, config.general.log_format):
            self.setup_logging(config.general.log_level, config.general.log_format)
        self.configured = config
        self.config = self._share(config)
        self.directory.apply(self.config)
        self.events.emit(now, Kind.RELOAD, Machine.DAEMON, 0, 0, 0, Reason.RELOAD)
        log.info("configuration reloaded (%d pools)", len(self.directory.pools),
                 extra={"pools": len(self.directory.pools)})
        return True

    def _keep_workers(self, config: Config) -> Config:
        """A new ``workers`` takes a restart: say so, and keep running with the processes there are."""
        running = self.worker.count if self.worker is not None else 1
        wanted = config.general.workers
        if wanted == running:
            return config
        if self.worker is None or self.worker.index == 0:  # once for the daemon, not once per worker
            log.warning("workers = %d in the configuration takes effect at the next restart; running %d "
                        "process%s until then", wanted, running, "es" if running != 1 else "",
                        extra={"workers": wanted, "running": running})
        return dataclasses.replace(config, general=dataclasses.replace(config.general, workers=running))

    def setup_logging(self, level: str, fmt: str) -> None:
        """Point the operator log at stderr; a worker's lines say which worker wrote them."""
        from pgdog_ev.logs import setup_logging

        setup_logging(level, fmt)
        if self.worker is not None:
            from pgdog_ev.workers.logtag import tag_worker

            tag_worker(self.worker.index)

    # -- the admin console's host interface ------------------------------------------

    def now(self) -> float:
        return self.reactor.now()

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.reactor.call_soon(callback)

    def apply_general(self, general: General) -> None:
        """An admin SET: run with this [general] until the next reload re-reads the files.

        ``general`` holds the daemon's totals (control.admin_set starts from ``configured``); a
        worker takes its share of them, as of the files'.
        """
        c = self.configured
        self.configured = Config.build(general, c.databases, c.users, c.admin, c.extra_sections,
                                       config_path=c.config_path, users_path=c.users_path)
        self.config = self._share(self.configured)
        self.directory.apply(self.config)
        self.events.emit(self.reactor.now(), Kind.RELOAD, Machine.DAEMON, 0, 0, 0, Reason.ADMIN_SET)

    def worker_status(self) -> dict[str, Any]:
        """This process's row of SHOW WORKERS (see pgdog_ev/admin/show_workers.py)."""
        pools = self.directory.pools.values()
        return {
            "worker": self.worker.index if self.worker is not None else 0,
            "pid": os.getpid(),
            "state": "stopping" if self.stopping else "up",
            "clients": len(self.directory.clients),
            "servers": sum(len(pool.servers) for pool in pools),
            "pools": len(pools),
            "cancels_forwarded": self.directory.cancels_forwarded,
            "cancels_received": self.directory.cancels_received,
            "restarts": 0,
            "started": wall(self.log_header, self._started_at),
        }

    def _stats_tick(self) -> None:
        self.console.tick(self.reactor.now())
        self.reactor.call_later(max(self.config.general.stats_period, 100) / 1000.0, self._stats_tick)

    def _on_stop_signal(self, signum: int) -> None:
        if self.stopping:
            log.warning("second stop signal: exiting now")
            self._force_close()
            self.reactor.stop()
            return
        self.shutdown()

    def stop_now(self) -> None:
        """A second stop signal (to the supervisor of a worker): close everything and exit."""
        if not self.stopping:
            self.shutdown()
        log.warning("second stop signal: exiting now")
        self._force_close()
        self.reactor.stop()

    def shutdown(self) -> None:
        """Stop accepting; let transactions in flight finish within shutdown_timeout."""
        now = self.reactor.now()
        self.stopping = True
        self.notifier.stopping(f"draining: up to {self.config.general.shutdown_timeout} ms for transactions")
        self.events.emit(now, Kind.SIGNAL, Machine.DAEMON, 0, 0, 0, Reason.SHUTDOWN)
        log.info("shutting down: waiting up to %d ms for transactions", self.config.general.shutdown_timeout,
                 extra={"shutdown_timeout_ms": self.config.general.shutdown_timeout})
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self._shutdown_deadline = now + self.config.general.shutdown_timeout / 1000.0
        self._drain()

    def _drain(self) -> None:
        now = self.reactor.now()
        busy = 0
        for client in list(self.directory.clients.values()):
            server = client.server
            in_flight = client.state is ClientState.ACTIVE and server is not None and not server.clean
            if in_flight and now < self._shutdown_deadline:
                busy += 1
                continue
            client.shutdown(now, "the proxy is shutting down")
        if busy:
            self.reactor.call_later(SHUTDOWN_POLL, self._drain)
            return
        self.directory.close_pools(now)
        self.reactor.call_later(SHUTDOWN_POLL, self.reactor.stop)

    def _force_close(self) -> None:
        now = self.reactor.now()
        for client in list(self.directory.clients.values()):
            client.shutdown(now, "the proxy is shutting down")
        self.directory.close_pools(now)

    # -- housekeeping ----------------------------------------------------------------

    def _flush_events(self) -> None:
        self.events.flush()
        if self.sink is not None:
            self.sink.flush()
        if self.capture is not None:
            self.capture.flush()
        self.reactor.call_later(EVENT_FLUSH_INTERVAL, self._flush_events)

    def _finish(self) -> None:
        if self.capture is not None:
            self.capture.on_finish()
        self.events.emit(self.reactor.now(), Kind.NOTE, Machine.DAEMON, 0, 0, 0, Reason.SHUTDOWN)
        self.events.flush()
        if self.capture is not None:
            self.capture.close()
        if self.sink is not None:
            self.sink.close()
        if self.endpoints is not None:
            self.endpoints.close()
            self.endpoints = None
        self.notifier.close()
        log.info("stopped")

    def _loop_exception(self, exc: BaseException, context: str) -> None:
        log.error("internal error in %s: %r", context, exc, exc_info=exc)

    def _loop_starved(self, exc: OSError | None, context: str) -> None:
        """Out of descriptors (or memory) to accept with: the operator's problem, said plainly once
        per episode; connections wait in the listen backlog meanwhile."""
        clients = len(self.directory.clients)
        if exc is None:
            log.warning("accepting new connections again (%d clients)", clients, extra={"clients": clients})
            return
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        log.warning("cannot accept new connections: %s (%d clients, open files limit %d); retrying every "
                    "%d ms while connections wait in the listen backlog", exc.strerror or exc, clients, soft,
                    int(RESOURCE_BACKOFF * 1000), extra={"clients": clients, "nofile": soft})


def _past_auth(protocol: Any) -> bool:
    """A client connection whose session is past authentication (what capture masks is behind it)."""
    session = getattr(protocol, "session", None)
    return session is not None and session.state not in (ClientState.STARTUP, ClientState.AUTH)


def load(config_path: str | None, users_path: str | None, urls: Sequence[str]) -> Config:
    return load_config(config_path, users_path, urls, entropy=os.urandom, env=os.environ)


def run(config_path: str | None, users_path: str | None, urls: Sequence[str]) -> int:
    try:
        config = load(config_path, users_path, urls)
    except ConfigError as exc:
        print(f"pgdog-ev: configuration error: {exc}", file=sys.stderr)
        return 2
    from pgdog_ev.logs import setup_logging

    setup_logging(config.general.log_level, config.general.log_format)
    # Before anything is opened; worker processes inherit it.
    raise_nofile(config.general.max_client_conn)
    if config.general.workers > 1:
        from pgdog_ev.workers.supervisor import Supervisor

        try:
            # TLS files are read by the workers; check them here so a bad one stops the start.
            from pgdog_ev.tls import build_tls

            build_tls(config.general, config.config_path)
        except ConfigError as exc:
            print(f"pgdog-ev: configuration error: {exc}", file=sys.stderr)
            return 2
        supervisor = Supervisor(config, config_path, users_path, urls,
                                reload_config=lambda: load(config_path, users_path, urls))
        try:
            return supervisor.run()
        except OSError as exc:
            log.error("cannot start: %s", exc)
            return 1
    try:
        daemon = Daemon(config, reload_config=lambda: load(config_path, users_path, urls))
    except ConfigError as exc:
        # Files the configuration points at (TLS certificates) are only read here.
        print(f"pgdog-ev: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return daemon.run()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
