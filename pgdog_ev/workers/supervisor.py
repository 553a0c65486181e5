"""The supervisor of ``[general] workers = N``: starts N worker processes and speaks for them.

The proxy is one Python process, and one process saturates one core: with spare cores, N
processes serve N times the throughput. Each worker is a whole daemon (pgdog_ev/daemon.py) with
its share of the pool sizes, listening on the same host:port with SO_REUSEPORT, so the kernel
spreads new connections over them. The supervisor itself serves no client. It

* reserves the port first (a bound, never listening SO_REUSEPORT socket: it receives no
  connection, keeps the port from anyone else, and turns ``port = 0`` into one port for all);
* starts each worker as ``python -m pgdog_ev worker`` with one end of a private socketpair, and
  relays over those channels: a CancelRequest to the worker owning its key, an admin console's
  question to every worker and the answers back (pgdog_ev/workers/link.py has the worker side);
* serves the metrics and health endpoints once for the daemon, from every worker's answers;
* turns signals into the workers' actions: SIGHUP reloads each one, SIGTERM/SIGINT drains them
  all and exits once they have (a second one stops them at once);
* restarts a worker that dies, after a delay that doubles while it keeps dying young, and logs
  it; a worker that fails while the daemon is starting stops the start instead (a bad port or
  file would only fail again);
* tells systemd READY=1 once every worker listens.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any

from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

import pgdog_ev
from loop.listener import make_listen_socket
from loop.reactor import Reactor
from pgdog_ev import __version__
from pgdog_ev.config import Config, ConfigError
from pgdog_ev.metrics.endpoints import Endpoints
from pgdog_ev.metrics.exposition import render
from pgdog_ev.metrics.http import Later, Request, Response
from pgdog_ev.metrics.merge import Family, MergedCollector, families_to_json, merge_families
from pgdog_ev.proxy.directory import pool_keys
from pgdog_ev.sdnotify import SystemdNotifier
from pgdog_ev.workers.channel import Channel, Message

if TYPE_CHECKING:
    from loop.timers import TimerHandle

log = logging.getLogger("pgdog_ev.workers")

#: The first restart waits this long; each further one of a worker that died young waits twice as
#: long, up to RESTART_MAX. A worker that ran STABLE_AFTER seconds starts again from the first.
RESTART_MIN = 0.5
RESTART_MAX = 30.0
STABLE_AFTER = 30.0
#: Deadlines for the workers' answers: a scrape or health check must not hang on a stuck worker.
SCRAPE_TIMEOUT = 2.0
HEALTH_TIMEOUT = 1.0
RELOAD_TIMEOUT = 10.0
#: Past shutdown_timeout, a worker still draining gets this long before SIGKILL.
KILL_GRACE = 10.0
#: How often exits are looked for besides SIGCHLD (which can be lost or coalesced).
REAP_INTERVAL = 1.0
#: Variables only the supervisor may act on: systemd accepts notifications from the main process.
_SUPERVISOR_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

GatherCallback = Callable[[dict[int, Any], list[int], dict[int, dict[str, Any]]], None]


@dataclasses.dataclass(eq=False)
class WorkerProcess:
    """What the supervisor knows of one worker slot across its restarts."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    channel: Channel | None = None
    state: str = "down"  # starting | up | down (exiting, or waiting to restart) | stopped
    pid: int | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0  # deaths in a row within STABLE_AFTER of the start
    restart_timer: TimerHandle | None = None

    @property
    def answering(self) -> bool:
        return self.state == "up" and self.channel is not None and self.channel.open


@dataclasses.dataclass(eq=False)
class Gather:
    """A question to every worker that is up, and the answers so far."""

    ident: int
    origin: WorkerProcess | None  # the worker that asked (its channel gets the answers) ...
    origin_channel: Channel | None
    request_id: int | None
    on_done: GatherCallback | None  # ... or the supervisor itself
    waiting: set[int]
    results: dict[int, Any] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    timer: TimerHandle | None = None


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` with SO_REUSEPORT without listening: the port is held (and chosen, for
    port 0) for the workers, and a socket that does not listen is handed no connection."""
    return make_listen_socket(host, port, None, reuse_port=True)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"


def worker_env(environ: dict[str, str]) -> dict[str, str]:
    """The workers' environment: the supervisor's, less systemd's notify variables, with the
    directory holding pgdog_ev (and loop, state) first on the path, however we were started."""
    env = {k: v for k, v in environ.items() if k not in _SUPERVISOR_ONLY}
    root = os.path.dirname(os.path.dirname(os.path.abspath(pgdog_ev.__file__)))
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root + (os.pathsep + path if path else "")
    return env


class Supervisor:
    def __init__(
        self,
        config: Config,
        config_path: str | None,
        users_path: str | None,
        urls: Sequence[str],
        *,
        reload_config: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self.count = config.general.workers
        self.reload_config = reload_config
        self.config_args: list[str] = []
        if config_path:
            self.config_args += ["-c", config_path]
        if users_path:
            self.config_args += ["-u", users_path]
        for url in urls:
            self.config_args += ["-d", url]
        self.reactor = Reactor()
        self.reactor.exception_sink = self._loop_exception
        self.workers = [WorkerProcess(i) for i in range(self.count)]
        self.notifier = SystemdNotifier.from_env(os.environ)
        self.env = worker_env(dict(os.environ))
        self.stopping = False
        self.started = False
        self.exit_code = 0
        self.restarts = 0
        self.port: int | None = None
        self.endpoints: Endpoints | None = None
        self._reserved: socket.socket | None = None
        self._listening: socket.socket | None = None
        self._gathers: dict[int, Gather] = {}
        self._next_gather = 1
        self._kill_timer: TimerHandle | None = None
        self._process = ProcessCollector(registry=None)
        # The pools every worker has run since the start: a reload keeps those it still names. A
        # restarted worker is told them, so that the hosts reloads added since are "discovered" in
        # it too (require_healthcheck_on_discovery), as they were in the others.
        self._settled = pool_keys(config)

    # -- running --------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
            self.reactor.run_forever()
        finally:
            self._finish()
        return self.exit_code

    def start(self) -> None:
        g = self.config.general
        if g.host.startswith("/"):
            # SO_REUSEPORT does not spread unix-socket connections: the workers share this one.
            self._listening = make_listen_socket(g.host, g.port, 1024, False)
            self.port = g.port
        else:
            try:
                self._reserved = reserve_port(g.host, g.port)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {g.host}:{g.port}: {exc.strerror or exc}") from exc
            self.port = self._reserved.getsockname()[1]
        self.endpoints = Endpoints.serve(self.reactor, g, lambda: self._metrics, lambda: self._health)
        for signum, handler in (
            (signal.SIGINT, self._on_stop_signal),
            (signal.SIGTERM, self._on_stop_signal),
            (signal.SIGHUP, self._on_reload_signal),
            (signal.SIGCHLD, self._on_child_signal),
        ):
            self.reactor.add_signal_handler(signum, handler, signum)
        self.reactor.call_later(REAP_INTERVAL, self._reap_tick)
        log.info("pgdog-ev %s starting %d workers on %s:%s", __version__, self.count, g.host, self.port,
                 extra={"workers": self.count})
        for worker in self.workers:
            self._spawn(worker)

    def status_line(self) -> str:
        up = sum(1 for w in self.workers if w.state == "up")
        return f"{up} of {self.count} workers serving"

    # -- workers ---------------------------------------------------------------------------

    def _spawn(self, worker: WorkerProcess) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-m", "pgdog_ev", "worker", "--index", str(worker.index), "--count",
                str(self.count), "--channel-fd", str(child.fileno()), "--port", str(self.port)]
        fds = [child.fileno()]
        if self._listening is not None:
            argv += ["--listen-fd", str(self._listening.fileno())]
            fds.append(self._listening.fileno())
        settled = self._settled_fd() if worker.restarts else None
        if settled is not None:
            argv += ["--settled-fd", str(settled)]
            fds.append(settled)
        argv += self.config_args
        try:
            proc = subprocess.Popen(argv, pass_fds=fds, env=self.env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            parent.close()
            log.error("cannot start worker %d: %s", worker.index, exc)
            worker.state = "down"
            self._after_exit(worker, 1)
            return
        finally:
            child.close()
            if settled is not None:
                os.close(settled)
        worker.proc = proc
        worker.pid = proc.pid
        worker.state = "starting"
        worker.started_at = self.reactor.now()
        channel = Channel(f"supervisor: channel to worker {worker.index}", lambda m: None, lambda: None)
        channel.on_message = lambda message: self._on_message(worker, channel, message)
        channel.on_closed = lambda: self._on_channel_closed(worker, channel)
        worker.channel = channel
        self.reactor.transport(parent, channel)
        log.debug("worker %d started (pid %d)", worker.index, proc.pid, extra={"worker": worker.index})

    def _settled_fd(self) -> int | None:
        """An anonymous file holding the settled pools' keys, read by the restarted worker at its
        start (a file, not an argument or the environment: a large configuration's keys can
        exceed their size limits)."""
        rows = sorted([k.user, k.database, k.host, k.port, k.shard, k.role] for k in self._settled)
        try:
            fd = os.memfd_create("pgdog-ev-settled-pools")
        except OSError as exc:
            log.error("cannot pass the settled pools to a restarted worker: %s", exc)
            return None
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(json.dumps(rows).encode())
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def _on_child_signal(self, signum: int) -> None:
        self._reap()

    def _reap_tick(self) -> None:
        self._reap()
        self.reactor.call_later(REAP_INTERVAL, self._reap_tick)

    def _reap(self) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is None:
                continue
            code = proc.poll()
            if code is not None:
                worker.proc = None
                self._exited(worker, code)

    def _exited(self, worker: WorkerProcess, code: int) -> None:
        if worker.channel is not None:
            worker.channel.close()
            worker.channel = None
        worker.state = "stopped" if self.stopping else "down"
        self._forget(worker)
        if self.stopping:
            if code == 0:
                log.info("worker %d (pid %s) stopped", worker.index, worker.pid)
            else:
                log.warning("worker %d (pid %s) %s while stopping", worker.index, worker.pid, describe_exit(code))
            self._maybe_done()
            return
        self._after_exit(worker, code)

    def _after_exit(self, worker: WorkerProcess, code: int) -> None:
        how = describe_exit(code)
        if not self.started:
            log.error("worker %d (pid %s) %s while the daemon was starting; stopping", worker.index, worker.pid, how,
                      extra={"worker": worker.index})
            self.exit_code = code if code > 0 else 1
            self.shutdown()
            return
        uptime = self.reactor.now() - worker.started_at
        worker.failures = 0 if uptime >= STABLE_AFTER else worker.failures + 1
        delay = min(RESTART_MIN * 2 ** max(worker.failures - 1, 0), RESTART_MAX)
        log.error("worker %d (pid %s) %s after %.1f s; restarting it in %.1f s", worker.index, worker.pid, how,
                  uptime, delay, extra={"worker": worker.index, "exit": how})
        worker.restart_timer = self.reactor.call_later(delay, self._restart, worker)
        self.notifier.status(self.status_line())

    def _restart(self, worker: WorkerProcess) -> None:
        worker.restart_timer = None
        if self.stopping:
            return
        self.restarts += 1
        worker.restarts += 1
        self._spawn(worker)

    # -- the channels --------------------------------------------------------------------------

    def _on_message(self, worker: WorkerProcess, channel: Channel, message: Message) -> None:
        if worker.channel is not channel:
            return  # from a worker process already replaced
        op = message["op"]
        if op == "ready":
            worker.state = "up"
            if self.started:
                log.info("worker %d is back (pid %s, restart %d)", worker.index, worker.pid, worker.restarts,
                         extra={"worker": worker.index})
                self.notifier.status(self.status_line())
            elif all(w.state == "up" for w in self.workers):
                self._all_ready()
        elif op == "cancel":
            self._relay_cancel(worker, message)
        elif op == "gather":
            if message["request"].get("reload_config"):
                self._reread()  # RELOAD at a worker's console: the supervisor reads the files too
            timeout = message.get("timeout")
            self._gather(message["request"], None if timeout is None else float(timeout), origin=worker,
                         request_id=int(message["req"]), others=bool(message.get("others")))
        elif op == "answer":
            self._answered(worker, int(message["id"]), message["result"])
        elif op == "shutdown":
            log.info("SHUTDOWN from the admin console (worker %d): stopping every worker", worker.index)
            self.shutdown()
        else:
            log.error("unknown message %r from worker %d", op, worker.index)

    def _on_channel_closed(self, worker: WorkerProcess, channel: Channel) -> None:
        if worker.channel is channel:
            # The process is exiting (or has): SIGCHLD or the reap tick will tell how.
            worker.channel = None
            if worker.state in ("up", "starting"):
                worker.state = "down"
            self._forget(worker)
            self._reap()

    def _relay_cancel(self, sender: WorkerProcess, message: Message) -> None:
        to = message.get("to")
        target = self.workers[to] if isinstance(to, int) and 0 <= to < self.count else None
        if target is None or not target.answering or target.channel is None:
            log.debug("cancel request for client %s dropped: worker %s is not running", message.get("pid"), to)
            return
        target.channel.send({"op": "cancel", "pid": message["pid"], "secret": message["secret"],
                             "from": sender.index})

    def _all_ready(self) -> None:
        self.started = True
        g = self.config.general
        log.info("pgdog-ev %s listening on %s:%s with %d workers", __version__, g.host, self.port, self.count,
                 extra={"workers": self.count})
        self.notifier.ready(self.status_line())
        self.notifier.start_timers(self.reactor.call_later, self.status_line)

    # -- questions to every worker ----------------------------------------------------------------

    def gather(self, request: dict[str, Any], timeout: float | None, on_done: GatherCallback) -> None:
        """Ask every worker that is up; ``on_done(results, missing, meta)`` runs once, from the loop."""
        self._gather(request, timeout, on_done=on_done)

    def _gather(self, request: dict[str, Any], timeout: float | None, *, origin: WorkerProcess | None = None,
                request_id: int | None = None, on_done: GatherCallback | None = None, others: bool = False) -> None:
        ident = self._next_gather
        self._next_gather += 1
        asked = [w for w in self.workers if not (others and w is origin)]
        targets = [w for w in asked if w.answering]
        gather = Gather(ident, origin, origin.channel if origin is not None else None, request_id, on_done,
                        {w.index for w in targets}, missing=[w.index for w in asked if not w.answering])
        self._gathers[ident] = gather
        for worker in targets:
            assert worker.channel is not None
            worker.channel.send({"op": "ask", "id": ident, "origin": origin.index if origin is not None else None,
                                 "request": request})
        if not gather.waiting:
            self.reactor.call_soon(self._complete, gather)
        elif timeout is not None:
            gather.timer = self.reactor.call_later(timeout, self._expire, gather)

    def _answered(self, worker: WorkerProcess, ident: int, result: Any) -> None:
        gather = self._gathers.get(ident)
        if gather is None or worker.index not in gather.waiting:
            return  # late: the gather expired
        gather.waiting.discard(worker.index)
        gather.results[worker.index] = result
        if not gather.waiting:
            self._complete(gather)

    def _expire(self, gather: Gather) -> None:
        gather.timer = None
        late = sorted(gather.waiting)
        log.warning("workers %s did not answer in time", ", ".join(map(str, late)), extra={"workers_late": late})
        gather.missing += late
        gather.waiting.clear()
        self._complete(gather)

    def _forget(self, worker: WorkerProcess) -> None:
        """A worker went away: every question waiting for it goes on without it."""
        for gather in list(self._gathers.values()):
            if worker.index in gather.waiting:
                gather.waiting.discard(worker.index)
                gather.missing.append(worker.index)
                if not gather.waiting:
                    self._complete(gather)

    def _meta(self) -> dict[int, dict[str, Any]]:
        return {w.index: {"pid": w.pid, "state": w.state, "restarts": w.restarts} for w in self.workers}

    def _complete(self, gather: Gather) -> None:
        if self._gathers.pop(gather.ident, None) is None:
            return
        if gather.timer is not None:
            gather.timer.cancel()
            gather.timer = None
        missing = sorted(set(gather.missing))
        if gather.on_done is not None:
            gather.on_done(gather.results, missing, self._meta())
            return
        origin = gather.origin
        if origin is not None and origin.channel is gather.origin_channel and gather.origin_channel is not None:
            gather.origin_channel.send({"op": "gathered", "req": gather.request_id, "results": gather.results,
                                        "missing": missing, "meta": self._meta()})

    # -- the HTTP endpoints -------------------------------------------------------------------

    def _own_families(self) -> list[Family]:
        restarts: Family = {"name": "worker_restarts", "type": "counter", "unit": "",
                            "help": "Worker processes the supervisor restarted after they exited unexpectedly.",
                            "samples": [["worker_restarts_total", {}, float(self.restarts)]]}
        # 0 workers from here: the sum counts the ones that answered, and the family is there
        # even when none did.
        workers: Family = {"name": "workers", "type": "gauge", "unit": "",
                           "help": "Worker processes serving clients that answered this scrape (1 for one process).",
                           "samples": [["workers", {}, 0.0]]}
        return [*families_to_json(self._process.collect()), restarts, workers]

    def _metrics(self, request: Request) -> Later:
        namespace = self.config.general.openmetrics_namespace or ""

        def start(reply: Callable[[Response], None]) -> None:
            def done(results: dict[int, Any], missing: list[int], meta: dict[int, dict[str, Any]]) -> None:
                sources = [results[w]["families"] for w in sorted(results) if "families" in results[w]]
                registry = CollectorRegistry(auto_describe=False)
                registry.register(MergedCollector(merge_families([*sources, self._own_families()]), namespace))
                reply(render(registry, request))

            self._gather({"metrics": True}, SCRAPE_TIMEOUT, on_done=done)

        return Later(start)

    def _health(self, request: Request) -> Response | Later:
        if self.stopping:
            return Response(502, b"down")

        def start(reply: Callable[[Response], None]) -> None:
            def done(results: dict[int, Any], missing: list[int], meta: dict[int, dict[str, Any]]) -> None:
                # A worker restarting does not make the daemon down: the others take its share.
                answers = [bool(r.get("up")) for r in results.values()]
                up = bool(answers) and all(answers) and not self.stopping
                reply(Response(200, b"up") if up else Response(502, b"down"))

            self._gather({"health": True}, HEALTH_TIMEOUT, on_done=done)

        return Later(start)

    # -- signals ----------------------------------------------------------------------------

    def _on_reload_signal(self, signum: int) -> None:
        self.reload()

    def reload(self) -> None:
        """SIGHUP: every worker re-reads the files (each logs how that went); systemd hears
        RELOADING=1 now and READY=1 once they have answered."""
        self.notifier.reloading()
        self._reread()

        def done(results: dict[int, Any], missing: list[int], meta: dict[int, dict[str, Any]]) -> None:
            failed = sorted(w for w, r in results.items() if "error" in r)
            if failed or missing:
                log.error("reload: failed in workers %s, no answer from workers %s",
                          failed or "none", missing or "none", extra={"failed": failed, "missing": missing})
            else:
                log.info("reload: all %d workers reloaded", len(results))
            self.notifier.ready(self.status_line())

        self._gather({"reload": True}, RELOAD_TIMEOUT, on_done=done)

    def _reread(self) -> None:
        """The files again, for the supervisor's own view (SIGHUP, or RELOAD at the console)."""
        if self.reload_config is None:
            return
        try:
            config = self.reload_config()
        except ConfigError:
            return  # every worker reports it, and keeps its configuration
        self._take(config)

    def _take(self, config: Config) -> None:
        """The supervisor's own view of a reloaded file: log settings and timeouts (the worker count
        and the ports need a restart; worker 0 says so)."""
        old = self.config.general
        general = dataclasses.replace(config.general, workers=self.count)
        if (old.log_level, old.log_format) != (general.log_level, general.log_format):
            from pgdog_ev.logs import setup_logging

            setup_logging(general.log_level, general.log_format)
        before = {(k.database, k.user) for k in pool_keys(self.config)}
        self.config = dataclasses.replace(config, general=general)
        # As the workers' Directory judges a reload: the pools kept stay known, and so do all of a
        # database or user the reload brings in as a whole; hosts added to one already there are
        # "discovered".
        keys = pool_keys(config)
        self._settled = {k for k in keys if k in self._settled or (k.database, k.user) not in before}

    def _on_stop_signal(self, signum: int) -> None:
        if self.stopping:
            log.warning("second stop signal: stopping every worker now")
            for worker in self.workers:
                sent = worker.channel is not None and worker.channel.send({"op": "stop_now"})
                if not sent and worker.proc is not None:
                    worker.proc.kill()
            return
        self.shutdown()

    def shutdown(self) -> None:
        """Every worker drains (within shutdown_timeout) and exits; then the supervisor does."""
        if self.stopping:
            return
        self.stopping = True
        timeout = self.config.general.shutdown_timeout
        self.notifier.stopping(f"draining {self.count} workers: up to {timeout} ms for transactions")
        log.info("shutting down: each worker waits up to %d ms for transactions", timeout,
                 extra={"shutdown_timeout_ms": timeout})
        for worker in self.workers:
            if worker.restart_timer is not None:
                worker.restart_timer.cancel()
                worker.restart_timer = None
            if worker.proc is None:
                worker.state = "stopped"
                continue
            if worker.channel is None or not worker.channel.send({"op": "stop"}):
                worker.proc.terminate()  # not listening to its channel (yet): the signal drains it too
        self._kill_timer = self.reactor.call_later(timeout / 1000.0 + KILL_GRACE, self._kill_stragglers)
        self._maybe_done()

    def _kill_stragglers(self) -> None:
        self._kill_timer = None
        for worker in self.workers:
            if worker.proc is not None:
                log.warning("worker %d (pid %s) still running past shutdown_timeout: killing it", worker.index,
                            worker.pid)
                worker.proc.kill()

    def _maybe_done(self) -> None:
        if all(w.proc is None for w in self.workers):
            if self._kill_timer is not None:
                self._kill_timer.cancel()
                self._kill_timer = None
            # From the loop: a start that failed before run_forever must still end it.
            self.reactor.call_soon(self.reactor.stop)

    def _finish(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.kill()  # only after an error in the supervisor itself
                worker.proc.wait()
        if self.endpoints is not None:
            self.endpoints.close()
            self.endpoints = None
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        if self._listening is not None:
            self._listening.close()
            self._listening = None
            path = self.config.general.host
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass
        self.notifier.close()
        self.reactor.close()
        log.info("stopped")

    def _loop_exception(self, exc: BaseException, context: str) -> None:
        log.error("internal error in %s: %r", context, exc, exc_info=exc)
