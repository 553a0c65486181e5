"""A worker's end of its channel to the supervisor: how one worker reaches the others.

The supervisor relays; workers never talk to each other directly, so a restarted worker needs
no introduction and a dead one is noticed in one place. Through the link a worker

* passes on a CancelRequest whose key belongs to another worker (``forward_cancel``) and runs
  the ones passed to it exactly as if they had arrived on its own port;
* gathers answers from every worker, itself included, for its admin console (``gather``):
  SHOW tables, the outcome of commands every worker runs, metrics and health for the supervisor;
* tells the supervisor it listens (``ready``) and asks it to stop everything (admin SHUTDOWN);
* drains when the supervisor says so, or when the channel ends (the supervisor is gone: a
  worker without one would never be restarted nor stopped by anyone).

Everything runs on the worker's reactor and never waits: an answer comes back as a message.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pgdog_ev.metrics.exposition import build_registry
from pgdog_ev.metrics.health import is_up
from pgdog_ev.metrics.merge import families_to_json
from pgdog_ev.workers.channel import Channel, Message

if TYPE_CHECKING:
    from loop.timers import TimerHandle
    from pgdog_ev.admin.console import GatherDone
    from pgdog_ev.daemon import Daemon

log = logging.getLogger("pgdog_ev.workers")

#: How much longer than the supervisor's own deadline a gather waits before giving up on it.
GUARD = 2.0


def _int_keys(mapping: dict[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in mapping.items()}


class WorkerLink:
    """The channel of worker ``index`` of ``count``, wired into its daemon."""

    def __init__(self, daemon: Daemon, sock: socket.socket, index: int, count: int) -> None:
        self.daemon = daemon
        self.index = index
        self.count = count
        self._sock = sock
        self.channel = Channel(f"worker {index}: channel to the supervisor", self._on_message, self._on_closed)
        self._next_request = 1
        self._waiting: dict[int, tuple[GatherDone, TimerHandle | None]] = {}
        self._registry: Any = None

    def attach(self) -> None:
        """Start reading the channel (on the daemon's reactor) and plug into directory and console."""
        self.daemon.reactor.transport(self._sock, self.channel)
        directory = self.daemon.directory
        directory.worker_index = self.index
        directory.worker_count = self.count
        directory.forward_cancel = self.forward_cancel
        self.daemon.console.cluster = self

    # -- what the worker asks -------------------------------------------------------------

    def ready(self, port: int | None) -> None:
        self.channel.send({"op": "ready", "pid": os.getpid(), "port": port})

    def forward_cancel(self, owner: int, pid: int, secret: bytes) -> None:
        log.debug("cancel request for client %d passed to worker %d", pid, owner,
                  extra={"client_id": pid, "worker_owner": owner})
        self.channel.send({"op": "cancel", "to": owner, "pid": pid, "secret": secret.hex()})

    def request_shutdown(self) -> None:
        if not self.channel.send({"op": "shutdown"}):
            self.daemon.call_soon(self.daemon.shutdown)

    def gather(self, request: dict[str, Any], timeout: float | None, on_done: GatherDone, *,
               others: bool = False) -> None:
        """Ask every worker (``others``: every other one); ``on_done(results, missing, meta)`` runs
        once, from the loop."""
        reactor = self.daemon.reactor
        number = self._next_request
        self._next_request += 1
        message = {"op": "gather", "req": number, "request": request, "timeout": timeout, "others": others}
        if not self.channel.send(message):
            reactor.call_soon(on_done, {}, [w for w in range(self.count) if not others or w != self.index], {})
            return
        guard = None if timeout is None else reactor.call_later(timeout + GUARD, self._expire, number)
        self._waiting[number] = (on_done, guard)

    def _expire(self, number: int) -> None:
        entry = self._waiting.pop(number, None)
        if entry is not None:
            log.warning("the supervisor did not answer a request of worker %d in time", self.index)
            entry[0]({}, [w for w in range(self.count) if w != self.index], {})

    # -- what the supervisor says -----------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        op = message["op"]
        now = self.daemon.reactor.now()
        if op == "ask":
            self._answer(message)
        elif op == "gathered":
            entry = self._waiting.pop(int(message["req"]), None)
            if entry is not None:
                on_done, guard = entry
                if guard is not None:
                    guard.cancel()
                on_done(_int_keys(message["results"]), [int(w) for w in message["missing"]],
                        _int_keys(message.get("meta", {})))
        elif op == "cancel":
            self.daemon.directory.cancel_from_worker(now, int(message["pid"]), bytes.fromhex(message["secret"]))
        elif op == "stop":
            if not self.daemon.stopping:
                self.daemon.shutdown()
        elif op == "stop_now":
            self.daemon.stop_now()
        else:
            log.error("worker %d: unknown message %r from the supervisor", self.index, op)

    def _answer(self, message: Message) -> None:
        ident = message["id"]

        def reply(result: dict[str, Any]) -> None:
            self.channel.send({"op": "answer", "id": ident, "result": result})

        request = message["request"]
        try:
            self._run(request, message.get("origin"), reply)
        except Exception as exc:
            # A bug must not leave the asking worker waiting for its deadline.
            log.exception("worker %d: internal error answering %r", self.index, sorted(request))
            reply({"error": ["XX000", f"internal error in worker {self.index}: {exc!r}"]})

    def _run(self, request: dict[str, Any], origin: int | None, reply: Callable[[dict[str, Any]], None]) -> None:
        daemon = self.daemon
        if "show" in request:
            reply(daemon.console.remote_show(str(request["show"]), tuple(request.get("args", ()))))
        elif "run" in request:
            # The asking worker logged and recorded the command; the others record it too.
            daemon.console.remote_run(daemon.reactor.now(), request, reply, audit=origin != self.index)
        elif "reload" in request:
            # SIGHUP to the supervisor: what SIGHUP does to a single process.
            ok = daemon.reload()
            reply({"ok": True} if ok else {"error": ["F0000", daemon.reload_error or "reload failed"]})
        elif "metrics" in request:
            if self._registry is None:
                self._registry = build_registry(daemon)
            reply({"families": families_to_json(self._registry.collect())})
        elif "health" in request:
            reply({"up": is_up(daemon)})
        else:
            reply({"error": ["XX000", f"worker {self.index} does not know the request {sorted(request)}"]})

    def _on_closed(self) -> None:
        for number in list(self._waiting):
            on_done, guard = self._waiting.pop(number)
            if guard is not None:
                guard.cancel()
            on_done({}, [w for w in range(self.count) if w != self.index], {})
        if not self.daemon.stopping:
            log.error("worker %d: the supervisor is gone; draining and stopping", self.index)
            self.daemon.shutdown()
