"""Two worker daemons in one process, their admin consoles joined by a stand-in for the
supervisor: what a SHOW or a command on one worker's console does to both; cancel keys of the
other worker passed on; a reload that changes `workers`; a metrics answer that comes later."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loop.clock import ManualClock
from loop.reactor import Reactor
from pgdog_ev.config import Config, load_config_text
from pgdog_ev.daemon import Daemon, WorkerSlot
from pgdog_ev.metrics.http import HttpServer, Later, Request, Response
from pgdog_ev.wire import backend as be
from state.events import EventLog, Kind
from state.reasons import Reason

PGDOG = """
[general]
workers = 2
default_pool_size = 10
[[databases]]
name = "app"
host = "127.0.0.1"
[admin]
password = "pw"
"""
USERS = """
[[users]]
name = "alice"
database = "app"
password = "pw"
"""


def config(text: str = PGDOG) -> Config:
    return load_config_text(text, USERS, entropy=lambda n: bytes(n))


def daemon(worker: WorkerSlot | None, reactor: Reactor, **kw: Any) -> Daemon:
    # Its own event log in memory: no file next to the tests.
    return Daemon(config(), reactor=reactor, events=EventLog(), worker=worker, **kw)


class Supervisor:
    """What the real supervisor does for the consoles, in process: ask each worker, answer later."""

    def __init__(self, reactor: Reactor, workers: list[Daemon]) -> None:
        self.reactor = reactor
        self.workers = workers
        self.down: set[int] = set()
        self.requests: list[dict[str, Any]] = []
        self.shutdowns = 0

    def link(self, index: int) -> Link:
        return Link(self, index)


class Link:
    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.count = len(supervisor.workers)

    def gather(self, request: dict[str, Any], timeout: float | None, on_done: Callable[..., None], *,
               others: bool = False) -> None:
        sup = self.supervisor
        sup.requests.append(request)
        results: dict[int, Any] = {}
        missing = []
        for i, worker in enumerate(sup.workers):
            if others and i == self.index:
                continue
            if i in sup.down:
                missing.append(i)
                continue
            console = worker.console
            if "show" in request:
                results[i] = console.remote_show(request["show"], tuple(request["args"]))
            else:
                console.remote_run(worker.now(), request, lambda r, i=i: results.__setitem__(i, r),
                                   audit=i != self.index)
        meta = {i: {"pid": 1000 + i, "state": "down" if i in sup.down else "up", "restarts": i}
                for i in range(self.count)}
        sup.reactor.call_soon(on_done, results, missing, meta)

    def request_shutdown(self) -> None:
        self.supervisor.shutdowns += 1


class AdminClient:
    """What the console reads of an admin client, and the answers it gets."""

    def __init__(self, ident: int = 9001) -> None:
        self.id = ident
        self.user = "admin"
        self.peer = "127.0.0.1:5555"
        self.errors = 0
        self.replies: list[bytes] = []

    def admin_reply(self, now: float, payload: bytes) -> None:
        self.replies.append(payload)


def messages(payload: bytes) -> list[tuple[str, bytes]]:
    out, pos = [], 0
    while pos < len(payload):
        length = int.from_bytes(payload[pos + 1:pos + 5], "big")
        out.append((chr(payload[pos]), payload[pos + 5:pos + 1 + length]))
        pos += 1 + length
    return out


class Answer:
    def __init__(self, payload: bytes) -> None:
        self.columns: list[str] = []
        self.rows: list[dict[str, str | None]] = []
        self.notices: list[str] = []
        self.errors: list[dict[str, str]] = []
        self.tags: list[str] = []
        for kind, body in messages(payload):
            if kind == "T":
                self.columns = [f.name for f in be.parse_row_description(body)]
            elif kind == "D":
                values = [v.decode() if v is not None else None for v in be.parse_data_row(body)]
                self.rows.append(dict(zip(self.columns, values, strict=True)))
            elif kind == "N":
                self.notices.append(be.parse_error_fields(body)["M"])
            elif kind == "E":
                self.errors.append(be.parse_error_fields(body))
            elif kind == "C":
                self.tags.append(be.parse_command_complete(body))


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor(clock=ManualClock(100.0))
    yield r
    r.close()


@pytest.fixture
def pair(reactor: Reactor) -> tuple[Supervisor, list[Daemon]]:
    workers = [daemon(WorkerSlot(i, 2, 0), reactor) for i in range(2)]
    sup = Supervisor(reactor, workers)
    for i, worker in enumerate(workers):
        worker.console.cluster = sup.link(i)
    return sup, workers


def ask(reactor: Reactor, worker: Daemon, text: str) -> Answer:
    client = AdminClient()
    reply = worker.console.query(reactor.now(), client, text)  # type: ignore[arg-type]
    if reply is None:
        assert reactor.run_until(lambda: bool(client.replies), 1.0), f"{text}: no answer"
        (reply,) = client.replies
    return Answer(reply)


def test_each_worker_runs_its_share_and_show_adds_them_up(reactor: Reactor, pair) -> None:
    sup, (w0, w1) = pair
    assert [w.config.general.default_pool_size for w in (w0, w1)] == [5, 5]
    assert w0.configured.general.default_pool_size == 10
    databases = ask(reactor, w1, "SHOW DATABASES")
    assert databases.rows[0]["pool_size"] == "10" and not databases.notices
    assert sup.requests[-1] == {"show": "databases", "args": []}
    # CONFIG is the same in every worker: answered at once, with the daemon's totals.
    client = AdminClient()
    reply = w0.console.query(reactor.now(), client, "SHOW CONFIG")  # type: ignore[arg-type]
    assert reply is not None
    assert {r["name"]: r["value"] for r in Answer(reply).rows}["default_pool_size"] == "10"
    workers = ask(reactor, w0, "SHOW WORKERS")
    assert [(r["worker"], r["state"], r["restarts"]) for r in workers.rows] == [("0", "up", "0"), ("1", "up", "1")]


def test_set_gives_each_worker_its_share_of_the_new_total(reactor: Reactor, pair) -> None:
    _, (w0, w1) = pair
    answer = ask(reactor, w1, "SET default_pool_size TO 7")
    assert answer.tags == ["SET"] and not answer.errors
    assert [w.config.general.default_pool_size for w in (w0, w1)] == [4, 3]
    assert [w.configured.general.default_pool_size for w in (w0, w1)] == [7, 7]
    assert [p.settings.pool_size for w in (w0, w1) for p in w.directory.pools.values()] == [4, 3]
    assert ask(reactor, w0, "SHOW DATABASES").rows[0]["pool_size"] == "7"
    # Recorded in both event logs (the other worker's admin client has no id there).
    for worker in (w0, w1):
        notes = [r for r in worker.events.tail(10) if r.kind == Kind.NOTE and r.a == Reason.ADMIN_COMMAND]
        assert [r.id for r in notes] == ([9001] if worker is w1 else [0])
        assert worker.events.clamped == 0


def test_an_error_everywhere_is_one_error(reactor: Reactor, pair) -> None:
    _, (w0, _) = pair
    answer = ask(reactor, w0, "SET default_pool_size TO lots")
    assert len(answer.errors) == 1 and answer.errors[0]["C"] == "22023"
    assert "worker" not in answer.errors[0]["M"]
    answer = ask(reactor, w0, "RELOAD")  # neither has files to read
    assert [e["C"] for e in answer.errors] == ["F0000"]


def test_a_silent_worker_is_named_and_the_answer_has_the_rest(reactor: Reactor, pair) -> None:
    sup, (w0, _) = pair
    sup.down.add(1)
    pools = ask(reactor, w0, "SHOW POOLS")
    assert len(pools.rows) == 1 and pools.rows[0]["database"] == "app"
    assert pools.notices == ["worker 1 did not answer in time: the answer leaves it out"]
    workers = ask(reactor, w0, "SHOW WORKERS")
    assert [r["state"] for r in workers.rows] == ["up", "down"] and not workers.notices
    answer = ask(reactor, w0, "RECONNECT")
    assert answer.tags == ["RECONNECT"] and answer.notices  # done where it could be, and said so


def test_pool_ids_travel_as_keys(reactor: Reactor, pair) -> None:
    sup, (w0, _) = pair
    assert ask(reactor, w0, "HEALTHCHECK 1").tags == ["HEALTHCHECK"]
    assert sup.requests[-1]["pools"] == [["alice", "app", "127.0.0.1", 5432, 0, "primary"]]
    answer = ask(reactor, w0, "BAN 7")
    assert answer.errors[0]["C"] == "42704" and len(sup.requests) == 1  # refused before asking anyone


def test_shutdown_is_the_supervisors_and_a_canceled_show_stays_quiet(reactor: Reactor, pair) -> None:
    sup, (w0, _) = pair
    assert ask(reactor, w0, "SHUTDOWN").tags == ["SHUTDOWN"]
    assert sup.shutdowns == 1 and not w0.stopping
    client = AdminClient()
    assert w0.console.query(reactor.now(), client, "SHOW POOLS; SHOW LISTS") is None  # type: ignore[arg-type]
    w0.console.cancel(reactor.now(), client)  # type: ignore[arg-type]
    for _ in range(5):
        reactor.run_once(0)
    assert client.replies == []


def test_several_commands_in_one_query_answer_in_order(reactor: Reactor, pair) -> None:
    _, (w0, _) = pair
    answer = ask(reactor, w0, "PAUSE; SHOW POOLS; RESUME")
    assert answer.tags == ["PAUSE", "SHOW", "RESUME"]
    assert answer.rows[0]["paused"] == "t"
    assert all(not p.paused for w in pair[1] for p in w.directory.pools.values())


def test_one_process_answers_show_workers_alone(reactor: Reactor) -> None:
    single = daemon(None, reactor)
    assert single.config is single.configured
    (row,) = ask(reactor, single, "SHOW WORKERS").rows
    assert (row["worker"], row["state"], row["restarts"], row["cancels_forwarded"]) == ("0", "up", "0", "0")


# --- cancel keys ----------------------------------------------------------------------------------


def test_cancel_keys_of_the_other_worker_are_passed_on(reactor: Reactor, pair) -> None:
    _, (w0, w1) = pair
    sent: list[tuple[int, int, bytes]] = []
    for i, worker in enumerate((w0, w1)):
        worker.directory.worker_index, worker.directory.worker_count = i, 2
    w0.directory.forward_cancel = lambda owner, pid, secret: sent.append((owner, pid, secret))
    assert [w0.directory.next_client_id() for _ in range(3)] == [2, 4, 6]
    assert [w1.directory.next_client_id() for _ in range(3)] == [3, 5, 7]
    now = reactor.now()
    w0.directory.cancel(now, 5, b"\x01\x02\x03\x04")
    assert sent == [(1, 5, b"\x01\x02\x03\x04")] and w0.directory.cancels_forwarded == 1
    before = w0.events.seq
    w0.directory.cancel(now, 4, b"\x00\x00\x00\x00")  # ours, but no such client: the usual NOTE
    assert len(sent) == 1 and w0.events.seq == before + 1
    w0.directory.cancel_from_worker(now, 7, b"\x00\x00\x00\x00")  # not ours either: dropped, not bounced
    assert len(sent) == 1 and w0.directory.cancels_received == 1


# --- reload --------------------------------------------------------------------------------------------


def test_a_new_worker_count_waits_for_a_restart(reactor: Reactor, caplog: pytest.LogCaptureFixture) -> None:
    changed = config(PGDOG.replace("workers = 2", "workers = 3").replace("default_pool_size = 10",
                                                                          "default_pool_size = 12"))
    single = daemon(None, reactor, reload_config=lambda: changed)
    worker1 = daemon(WorkerSlot(1, 2, 0), reactor, reload_config=lambda: changed)
    with caplog.at_level(logging.WARNING, logger="pgdog_ev"):
        assert single.reload() and worker1.reload()
    assert single.config.general.workers == single.configured.general.workers == 1
    assert worker1.config.general.workers == worker1.configured.general.workers == 2
    assert single.config.general.default_pool_size == 12 and worker1.config.general.default_pool_size == 6
    warnings = [r.getMessage() for r in caplog.records if "next restart" in r.getMessage()]
    assert warnings == ["workers = 3 in the configuration takes effect at the next restart; running 1 process "
                        "until then"]  # worker 1 leaves it to worker 0


# --- an HTTP answer that comes later ---------------------------------------------------------------------


def test_http_handler_may_answer_later() -> None:
    reactor = Reactor()
    try:
        def handler(request: Request) -> Later:
            return Later(lambda reply: reactor.call_later(0.01, reply, Response(200, b"later")))

        server = HttpServer(reactor, "127.0.0.1", 0, handler, name="test")
        assert server.port is not None
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setblocking(False)
        data = bytearray()

        def closed() -> bool:
            try:
                chunk = sock.recv(4096)
            except BlockingIOError:
                return False
            data.extend(chunk)
            return not chunk

        assert reactor.run_until(closed, 5.0)
        sock.close()
        server.close()
        assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\nlater")
    finally:
        reactor.close()
