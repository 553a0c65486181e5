"""Re-execution of a captured run (sim.reexecute): the replay stand-ins, the comparison, the
configuration rebuilt with real secrets, and a whole in-process daemon run captured and re-executed
(no PostgreSQL: its server is a closed port, the client logs in with trust)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import tomllib
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from loop.protocol import Protocol
from loop.reactor import Reactor
from pgdog_ev.auth.md5 import md5_check
from pgdog_ev.capture.format import CONNECT_DEFERRED, CONNECT_TIMER
from pgdog_ev.config import load_config
from pgdog_ev.daemon import Daemon
from pgdog_ev.sdnotify import SystemdNotifier
from sim.reexec_config import merge_secrets, password_body
from sim.reexec_io import ReplayReactor
from sim.reexecute import compare, reexecute_main
from state.events import Kind, Machine, Record
from state.reasons import Reason


class _Driver:
    def __init__(self, deferred: bool = False, connects: dict[int, tuple[int, int]] | None = None) -> None:
        self.deferred = deferred
        self.connects = connects or {}

    def close_is_deferred(self, key: tuple[int, int]) -> bool:
        return self.deferred

    def connect_result(self, seq: int) -> tuple[int, int] | None:
        return self.connects.get(seq)


class _Proto(Protocol):
    def __init__(self) -> None:
        self.capture_id = (2, 5)
        self.events: list[Any] = []

    def data_received(self, data: memoryview) -> None:
        self.events.append(bytes(data))

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))


def _rec(seq: int, kind: int = Kind.TRANSITION, machine: int = Machine.CLIENT, ident: int = 1, frm: int = 1,
         to: int = 2, a: int = 0, b: int = 0, now_ns: int = 0) -> Record:
    return Record(seq, now_ns, kind, machine, ident, frm, to, a, b)


# --- comparison -----------------------------------------------------------------------------------


def test_compare_ignores_times_seqs_and_capture_notes() -> None:
    note = _rec(0, Kind.NOTE, Machine.DAEMON, 0, 0, 0, Reason.CAPTURE_STARTED)
    logged = [note, _rec(1, now_ns=5), _rec(2, to=3, now_ns=6)]
    replayed = [_rec(0, now_ns=9), _rec(1, to=3, now_ns=1)]
    result = compare(logged, replayed, complete=True)
    assert result.divergence is None and result.compared == 2
    changed = [_rec(0), _rec(1, to=4)]
    result = compare(logged, changed, complete=True)
    assert result.divergence == 1 and result.logged[1].seq == 2


def test_compare_prefix_only_when_the_capture_ended_early() -> None:
    logged = [_rec(0), _rec(1, to=3), _rec(2, to=4)]
    replayed = [_rec(0), _rec(1, to=3)]
    assert compare(logged, replayed, complete=False).divergence is None
    assert compare(logged, replayed, complete=True).divergence == 2


# --- stand-ins ------------------------------------------------------------------------------------


def test_timers_fire_by_captured_number_and_deadline_despite_foreign_timers() -> None:
    reactor = ReplayReactor(_Driver(), 100.0)  # type: ignore[arg-type]
    fired: list[str] = []
    reactor.call_later(1.0, fired.append, "a")  # seq 1 here; the captured run had a foreign timer first
    reactor.call_later(2.0, fired.append, "b")  # seq 2 here, 3 in the capture
    assert reactor.fire_timer(3, 102.0)
    assert fired == ["b"] and reactor.drift == 1
    assert reactor.fire_timer(2, 101.0)
    assert fired == ["b", "a"]
    assert not reactor.fire_timer(9, 150.0)  # no such timer here (a foreign one)
    assert reactor.timers_unmatched == 1
    cancelled = reactor.call_later(3.0, fired.append, "c")
    cancelled.cancel()
    assert not reactor.fire_timer(cancelled.seq + 1, 103.0) and fired == ["b", "a"]


def test_close_waits_for_a_captured_closed_when_the_run_flushed_first() -> None:
    for deferred in (False, True):
        reactor = ReplayReactor(_Driver(deferred=deferred), 1.0)  # type: ignore[arg-type]
        proto = _Proto()
        transport = reactor.transport(object(), proto)
        assert reactor.transports[(2, 5)] is transport
        transport.feed(b"abc")
        transport.close()
        reactor.run_callbacks()
        if deferred:
            assert proto.events == [b"abc"]
            transport.feed_closed()
            reactor.run_callbacks()
        assert proto.events == [b"abc", ("lost", None)]


def test_eof_then_error_as_socket_transport_does() -> None:
    reactor = ReplayReactor(_Driver(), 1.0)  # type: ignore[arg-type]
    proto = _Proto()
    reactor.transport(object(), proto).feed_eof()
    assert reactor.run_callbacks() == 1
    assert proto.events == ["eof", ("lost", None)]
    proto2 = _Proto()
    proto2.capture_id = (1, 9)
    t = reactor.transport(object(), proto2)
    t.feed_error(OSError(104, "reset"))
    reactor.run_callbacks()
    assert proto2.events[0][0] == "lost" and proto2.events[0][1].errno == 104
    t.write(b"late")
    assert t.writes == 0


def test_a_connect_that_completed_at_once_is_delivered_from_the_queue() -> None:
    reactor = ReplayReactor(_Driver(connects={1: (0, CONNECT_DEFERRED | CONNECT_TIMER),  # type: ignore[arg-type]
                                              2: (111, 0)}), 1.0)
    results: list[Any] = []
    reactor.connect("h", 1, lambda s, e: results.append((s is not None, e)), timeout=5.0)
    assert results == [] and reactor._seq == 1  # its timer was armed (and cancelled) as in the run
    reactor.run_callbacks()
    assert results == [(True, None)]
    reactor.connect("h", 1, lambda s, e: results.append((s is not None, e)), timeout=5.0)
    reactor.run_callbacks()
    assert len(results) == 1  # waits for the captured CONNECT
    assert reactor.connectors[2].complete(111, 0)
    assert isinstance(results[1][1], OSError) and results[1][1].errno == 111
    reactor.connect("h", 1, lambda s, e: results.append(e), timeout=5.0)
    assert reactor.fire_timer(4, 6.0)  # the connect timeout
    assert isinstance(results[2], TimeoutError)
    assert not reactor.connectors[3].complete(110, 4)  # the CONNECT the timeout recorded: already over


# --- configuration and passwords ------------------------------------------------------------------


def test_merge_secrets_takes_passwords_from_the_same_entries() -> None:
    captured = tomllib.loads('[[users]]\nname = "a"\ndatabase = "d"\npassword = "<redacted:1>"\npool_size = 5\n'
                             '[[users]]\nname = "b"\ndatabase = "d"\npassword = "<redacted:2>"\n'
                             '[admin]\npassword = "<redacted:3>"\n')
    real = tomllib.loads('[[users]]\nname = "b"\ndatabase = "d"\npassword = "pw-b"\n'
                         '[[users]]\nname = "a"\ndatabase = "d"\npassword = "pw-a"\npool_size = 9\n')
    merged, taken = merge_secrets(captured, real)
    assert taken == 2
    assert merged["users"][0] == {"name": "a", "database": "d", "password": "pw-a", "pool_size": 5}
    assert merged["users"][1]["password"] == "pw-b"
    assert merged["admin"]["password"] == "<redacted:3>"
    assert merge_secrets(captured, tomllib.loads('[[users]]\nname = "z"\ndatabase = "d"\npassword = "x"\n'))[1] == 0


def test_password_body_rebuilds_what_the_session_accepts() -> None:
    class Login:
        user, auth_type, passwords, md5_stored = "alice", "md5", ("short", "secret"), None

    class Session:
        login, _md5_salt = Login(), b"\x01\x02\x03\x04"

    body = password_body(Session(), 36)
    assert body is not None and md5_check("alice", "short", b"\x01\x02\x03\x04", body)
    Login.auth_type = "plain"
    assert password_body(Session(), len("secret") + 1) == b"secret\0"
    assert password_body(Session(), 3) is None


# --- a whole run ----------------------------------------------------------------------------------


def _client(port: int, done: threading.Event, out: list[bytes]) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            body = struct.pack(">I", 196608) + b"user\0alice\0database\0app\0\0"
            s.sendall(struct.pack(">I", len(body) + 4) + body)
            s.sendall(b"Q" + struct.pack(">I", 13) + b"select 1\0")
            data = b""
            while b"Z\x00\x00\x00\x05" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            out.append(data)
            s.sendall(b"X\x00\x00\x00\x04")
    finally:
        done.set()


def test_a_captured_daemon_run_re_executes_identically(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the pool's connects are refused
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    (tmp_path / "pgdog.toml").write_text(
        '[general]\nhost = "127.0.0.1"\nport = 0\nevent_log = "x.evlog"\ncapture_inputs = true\n'
        'auth_type = "trust"\nconnect_timeout = 300\ncheckout_timeout = 400\n'
        f'[[databases]]\nname = "app"\nhost = "127.0.0.1"\nport = {dead}\n')
    (tmp_path / "users.toml").write_text('[[users]]\nname = "alice"\ndatabase = "app"\npassword = "pw"\n')
    config = load_config(str(tmp_path / "pgdog.toml"), str(tmp_path / "users.toml"), entropy=os.urandom, env={})
    daemon = Daemon(config, reload_config=lambda: config, reactor=Reactor(), notifier=SystemdNotifier(None, pid=0))
    daemon.start()
    done = threading.Event()
    answers: list[bytes] = []
    thread = threading.Thread(target=_client, args=(daemon.port, done, answers))
    thread.start()
    try:
        assert daemon.reactor.run_until(done.is_set, timeout=20)
        daemon.reactor.run_until(lambda: not daemon.directory.clients, timeout=5)
        # Stopped the way an operator does it: a signal is an input, a direct call would not be.
        os.kill(os.getpid(), signal.SIGTERM)
        daemon.reactor.run_until(lambda: daemon.reactor._stopping, timeout=10)
    finally:
        thread.join(10)
        daemon._finish()
        daemon.reactor.close()
    assert answers and b"FATAL" in answers[0]  # no server to log in with: the login fails
    out, err = StringIO(), StringIO()
    code = reexecute_main([config.general.event_log], out=out, err=err)
    assert code == 0, out.getvalue() + err.getvalue()
    text = out.getvalue()
    assert "result: identical" in text and "the daemon stopped cleanly" in text
    assert int(text.split("records compared: ")[1].split()[0]) >= 10


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    err = StringIO()
    assert reexecute_main([str(tmp_path / "none.evlog")], out=StringIO(), err=err) == 2
    assert "no input capture" in err.getvalue()
    with pytest.raises(SystemExit):
        raise SystemExit(reexecute_main(["--no-such-option"], out=StringIO(), err=StringIO()))
