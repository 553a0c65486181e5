"""Input capture (pgdog_ev.capture): the file format, what is masked, the byte budget, and that a
daemon without capture_inputs writes nothing."""

from __future__ import annotations

import errno
import os
import struct
import tomllib
from pathlib import Path
from typing import Any

import pytest

from loop.clock import ManualClock, SampledClock
from loop.reactor import Reactor
from loop.timers import TimerHeap
from pgdog_ev.capture.format import (
    CANCEL,
    CONNECT_DEFERRED,
    CONNECT_TIMER,
    HEAD_SIZE,
    RECORD_HEAD,
    CaptureHeader,
    In,
    Span,
    decode_connect,
    decode_redacted,
    encode_connect,
    encode_redacted,
    read_capture,
)
from pgdog_ev.capture.recorder import INPUTS_SUFFIX, InputCapture, config_texts
from pgdog_ev.capture.redact import PasswordScanner, dump_toml, redact_env, redact_toml_text
from pgdog_ev.config import load_config, load_config_text
from pgdog_ev.daemon import Daemon
from pgdog_ev.sdnotify import SystemdNotifier
from pgdog_ev.wire.startup import startup_length
from state.client import ClientState
from state.events import Kind, Machine
from state.reasons import Reason
from tests.unit.idle_poller import IdlePoller

PASSWORD = "s3cret-Pa55"
SSL_REQUEST = struct.pack(">II", 8, 80877103)


def _reactor(t: float = 100.0) -> Reactor:
    return Reactor(clock=ManualClock(t), poller=IdlePoller())


def _startup(user: str = "alice", database: str = "app") -> bytes:
    body = struct.pack(">I", 196608) + b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    return struct.pack(">I", len(body) + 4) + body


def _msg(t: bytes, body: bytes) -> bytes:
    return t + struct.pack(">I", len(body) + 4) + body


class _Session:
    def __init__(self) -> None:
        self.state = ClientState.STARTUP


class _Protocol:
    def __init__(self, machine: int, ident: int) -> None:
        self.capture_id = (machine, ident)
        self.session = _Session()


class _Transport:
    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol


def _past_auth(protocol: Any) -> bool:
    session = getattr(protocol, "session", None)
    return session is not None and session.state not in (ClientState.STARTUP, ClientState.AUTH)


def _capture(tmp_path: Path, max_bytes: int = 1 << 20, auth: str = "md5", reactor: Reactor | None = None,
             stops: list[tuple[str, str]] | None = None) -> tuple[InputCapture, Reactor, str]:
    path = str(tmp_path / "x.evlog.inputs")
    reactor = reactor or _reactor()
    cap = InputCapture(path, CaptureHeader(code_version="t", config_digest="d"), max_bytes,
                       auth_type=lambda: auth, past_auth=_past_auth,
                       on_stop=(lambda r, e: stops.append((r, e))) if stops is not None else None)
    cap.install(reactor)
    return cap, reactor, path


# --- format ---------------------------------------------------------------------------------------


def test_header_and_records_round_trip(tmp_path: Path) -> None:
    header = CaptureHeader(code_version="1.2", config_digest="abc", pgdog_toml="[general]\n", users_toml=None,
                           config_path="/etc/pgdog.toml", env={"PGDOG_PORT": "1"}, log_header={"pid": 7},
                           max_bytes=5000, redactions=3, reloadable=False)
    encoded = header.encode()
    decoded, used = CaptureHeader.decode(encoded + b"rest")
    assert decoded == header and used == len(encoded)
    with pytest.raises(ValueError, match="bad magic"):
        CaptureHeader.decode(b"PGDOGEV\x00" + encoded[8:])
    spans = [Span(3, 4, 0, 9), Span(0, 5, 4, 9)]
    assert decode_redacted(encode_redacted(spans, b"abcdefgh")) == (spans, b"abcdefgh")
    assert decode_connect(encode_connect(111, 5, 9)) == (111, 5, 9)
    assert HEAD_SIZE == RECORD_HEAD.size == 22


def test_records_carry_kind_machine_id_time_and_payload(tmp_path: Path) -> None:
    cap, reactor, path = _capture(tmp_path)
    reactor.clock.base.set(100.5)  # type: ignore[attr-defined]
    cap.on_pass()
    cap.on_accept(7)
    cap.on_read(_Transport(_Protocol(int(Machine.SERVER), 3)), memoryview(b"server bytes"))
    handle = reactor.call_at(101.25, lambda: None)
    cap.on_timer(handle)
    cap.on_callbacks(4)
    assert cap.entropy(lambda n: b"\x01" * n)(5) == b"\x01" * 5
    cap.on_signal(15)
    cap.on_finish()
    cap.close()
    f = read_capture(path)
    assert f.ending == "finished" and not f.truncated
    assert f.header.config_digest == "d"
    kinds = [(In(r.kind).name, r.machine, r.id) for r in f.records]
    assert kinds == [("INIT", 0, 0), ("ACCEPT", 1, 7), ("READ", 2, 3), ("TIMER", 0, handle.seq),
                     ("CALLBACKS", 0, 0), ("ENTROPY", 0, 0), ("SIGNAL", 0, 15), ("FINISH", 0, 0)]
    assert f.records[0].now_ns == 100_000_000_000
    assert all(r.now_ns == 100_500_000_000 for r in f.records[1:])
    assert f.records[2].payload == b"server bytes"
    assert struct.unpack("<d", f.records[3].payload) == (101.25,)
    assert struct.unpack("<I", f.records[4].payload) == (4,)
    assert f.records[5].payload == b"\x01" * 5
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_cut_file_keeps_its_whole_records(tmp_path: Path) -> None:
    cap, _, path = _capture(tmp_path)
    cap.on_accept(1)
    cap.on_read(_Transport(_Protocol(int(Machine.SERVER), 1)), memoryview(b"0123456789"))
    cap.flush()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 3)
    cut = read_capture(path)
    assert cut.ending == "cut" and cut.truncated
    assert [In(r.kind) for r in cut.records] == [In.INIT, In.ACCEPT]


def test_sampled_clock_moves_only_when_sampled() -> None:
    base = ManualClock(10.0)
    clock = SampledClock(base)
    assert clock.now() == 10.0 and clock.ns == 10_000_000_000
    base.advance(0.123456789)
    assert clock.now() == 10.0
    assert clock.sample() == 10_123_456_789
    assert clock.now() == 10_123_456_789 / 1e9  # what a replay computes from the captured ns


def test_timers_and_connectors_are_numbered() -> None:
    heap = TimerHeap()
    handles = [heap.push(1.0, print) for _ in range(3)]
    assert [h.seq for h in handles] == [1, 2, 3]
    reactor = _reactor()
    a = reactor.connect("/nonexistent/socket", 1, lambda s, e: None)
    b = reactor.connect("/nonexistent/socket", 1, lambda s, e: None)
    assert (a.seq, b.seq) == (1, 2)
    a.cancel()
    b.cancel()


def test_connect_results_are_named_by_their_tag(tmp_path: Path) -> None:
    cap, reactor, path = _capture(tmp_path)
    missing = str(tmp_path / "no.sock")
    server = reactor.connect(missing, 1, lambda s, e: None, timeout=5.0, tag=(int(Machine.SERVER), 7))
    cancel = reactor.connect(missing, 1, lambda s, e: None, tag=CANCEL)
    plain = reactor.connect(missing, 1, lambda s, e: None)
    cap.close()
    records = [r for r in read_capture(path).records if r.kind == In.CONNECT]
    assert [(r.machine, r.id) for r in records] == [(2, 7), (CANCEL, cancel.seq), (0, plain.seq)]
    code, flags, seq = decode_connect(records[0].payload)
    # A unix socket that is not there fails inside connect(): delivered later, from the queue.
    assert code == errno.ENOENT and seq == server.seq
    assert flags == CONNECT_DEFERRED | CONNECT_TIMER
    assert decode_connect(records[1].payload)[1] == CONNECT_DEFERRED


# --- what is masked -----------------------------------------------------------------------------


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_scanner_masks_password_bodies_whatever_the_chunks(size: int) -> None:
    password = _msg(b"p", PASSWORD.encode() + b"\0")
    stream = SSL_REQUEST + _startup() + password + _msg(b"Q", b"select 1\0")
    scanner = PasswordScanner(redact=True)
    out = bytearray()
    for chunk in _chunks(stream, size):
        masked = bytearray(chunk)
        for span in scanner.feed(chunk):
            masked[span.offset : span.offset + span.length] = b"*" * span.length
            assert span.body_len == len(PASSWORD) + 1
        out += masked
    start = len(SSL_REQUEST) + len(_startup()) + 5
    assert bytes(out[:start]) == stream[:start]
    assert bytes(out[start : start + len(PASSWORD) + 1]) == b"*" * (len(PASSWORD) + 1)
    assert bytes(out[start + len(PASSWORD) + 1 :]) == stream[start + len(PASSWORD) + 1 :]
    assert startup_length(bytearray(_startup())) == len(_startup())


def test_scanner_keeps_scram_messages() -> None:
    first = _msg(b"p", b"SCRAM-SHA-256\0" + struct.pack(">I", 10) + b"n,,n=,r=ab")
    assert PasswordScanner(redact=False).feed(_startup() + first) == []


def test_capture_masks_md5_and_cleartext_passwords(tmp_path: Path) -> None:
    md5_response = b"md5" + b"0123456789abcdef" * 2 + b"\0"
    cap, _, path = _capture(tmp_path, auth="md5")
    client = _Protocol(int(Machine.CLIENT), 1)
    transport = _Transport(client)
    cap.on_accept(1)
    cap.on_read(transport, memoryview(_startup()))
    client.session.state = ClientState.AUTH
    message = _msg(b"p", md5_response)
    cap.on_read(transport, memoryview(message[:9]))
    cap.on_read(transport, memoryview(message[9:]))
    client.session.state = ClientState.IDLE
    cap.on_read(transport, memoryview(_msg(b"p", PASSWORD.encode() + b"\0")))  # past auth: not scanned
    cap.close()
    f = read_capture(path)
    reads = [r for r in f.records if r.kind in (In.READ, In.READ_REDACTED)]
    assert [In(r.kind) for r in reads] == [In.READ, In.READ_REDACTED, In.READ_REDACTED, In.READ]
    spans1, data1 = decode_redacted(reads[1].payload)
    spans2, data2 = decode_redacted(reads[2].payload)
    assert spans1 == [Span(5, 4, 0, len(md5_response))]
    assert spans2 == [Span(0, len(md5_response) - 4, 4, len(md5_response))]
    assert data1 + data2 == message[:5] + b"*" * (len(md5_response) - 1) + b"\0"
    with open(path, "rb") as fh:
        raw = fh.read()
    assert b"0123456789abcdef" not in raw and b"md50123" not in raw

    cap, _, path = _capture(tmp_path, auth="plain")
    client = _Protocol(int(Machine.CLIENT), 2)
    cap.on_accept(2)
    cap.on_read(_Transport(client), memoryview(SSL_REQUEST + _startup() + _msg(b"p", PASSWORD.encode() + b"\0")))
    cap.close()
    with open(path, "rb") as fh:
        raw = fh.read()
    assert PASSWORD.encode() not in raw
    (rec,) = [r for r in read_capture(path).records if r.kind == In.READ_REDACTED]
    spans, data = decode_redacted(rec.payload)
    assert len(data) == len(SSL_REQUEST + _startup()) + 5 + len(PASSWORD) + 1  # same length
    assert spans == [Span(len(SSL_REQUEST + _startup()) + 5, len(PASSWORD) + 1, 0, len(PASSWORD) + 1)]
    assert data.endswith(b"*" * len(PASSWORD) + b"\0")  # the terminator is kept


def test_scram_client_messages_are_kept(tmp_path: Path) -> None:
    cap, _, path = _capture(tmp_path, auth="scram")
    client = _Protocol(int(Machine.CLIENT), 1)
    cap.on_accept(1)
    first = _msg(b"p", b"SCRAM-SHA-256\0" + struct.pack(">I", 10) + b"n,,n=,r=ab")
    cap.on_read(_Transport(client), memoryview(_startup() + first))
    cap.close()
    kinds = [In(r.kind) for r in read_capture(path).records]
    assert In.READ in kinds and In.READ_REDACTED not in kinds


PGDOG = f"""
# a comment with an old password: {PASSWORD}
[general]
host = "127.0.0.1"
event_log = "x.evlog"

[[databases]]
name = "app"
host = "127.0.0.1"
password = "{PASSWORD}-server"

[admin]
password = "{PASSWORD}-admin"
"""

USERS = f"""
[[users]]
name = "alice"
database = "app"
password = "{PASSWORD}"
passwords = ["{PASSWORD}-2", "{PASSWORD}"]
server_password = "{PASSWORD}-server"

[[users]]
name = "bob"
database = "app"
password_hash = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

[[users]]
name = "carol"
database = "app"
password_hash = "md5{'ab' * 16}"
"""


def test_config_texts_hold_no_secret_and_keep_the_digest(tmp_path: Path) -> None:
    (tmp_path / "pgdog.toml").write_text(PGDOG)
    (tmp_path / "users.toml").write_text(USERS)
    config = load_config(str(tmp_path / "pgdog.toml"), str(tmp_path / "users.toml"), entropy=os.urandom, env={})
    env = {"PGDOG_ADMIN_PASSWORD": PASSWORD, "PGDOG_DATABASE_URL_1": f"postgres://u:{PASSWORD}@h:5432/db",
           "PGDOG_PORT": "7000", "HOME": "/root"}
    texts, count = config_texts(config, env)
    blob = repr(texts)
    assert PASSWORD not in blob and "c2FsdHNhbHRz" not in blob and "ab" * 16 not in blob
    assert count == 10
    assert "HOME" not in texts["env"] and texts["env"]["PGDOG_PORT"] == "7000"
    assert texts["env"]["PGDOG_DATABASE_URL_1"].startswith("postgres://u:<redacted:")
    users = tomllib.loads(texts["users_toml"])["users"]
    # Equal secrets get equal markers; hashes stay well-formed and keep their kind.
    assert users[0]["password"] == users[0]["passwords"][1] != users[0]["passwords"][0]
    assert users[1]["password_hash"].startswith("SCRAM-SHA-256$4096:")
    assert users[2]["password_hash"] == "md5" + "0" * 32
    rebuilt = load_config_text(texts["pgdog_toml"], texts["users_toml"], entropy=os.urandom, env={})
    import dataclasses

    general = dataclasses.replace(rebuilt.general, event_log=config.general.event_log)
    assert type(config).build(general, rebuilt.databases, rebuilt.users, rebuilt.admin,
                              rebuilt.extra_sections).digest == config.digest


def test_redacted_text_round_trips() -> None:
    text, count = redact_toml_text('a = 1\n[t]\nx = [1.5, "s"]\nnested = {password = "p", k = 2020-01-01}\n')
    assert count == 1 and text is not None
    assert tomllib.loads(text) == {"a": 1, "t": {"x": [1.5, "s"], "nested": {"password": "<redacted:1>",
                                                                      "k": tomllib.loads("k = 2020-01-01")["k"]}}}
    assert redact_toml_text("not = [toml")[0] is None
    assert tomllib.loads(dump_toml({"s": 'q"\\\x7f\n'})) == {"s": 'q"\\\x7f\n'}
    assert redact_env({"PGDOG_DATABASE_URL_1": "postgres://u@h/db"})[0] == {"PGDOG_DATABASE_URL_1": "postgres://u@h/db"}


# --- budget ---------------------------------------------------------------------------------------


def test_budget_writes_an_end_marker_and_stops(tmp_path: Path) -> None:
    stops: list[tuple[str, str]] = []
    reactor = _reactor()
    cap, _, path = _capture(tmp_path, max_bytes=400, reactor=reactor, stops=stops)
    server = _Transport(_Protocol(int(Machine.SERVER), 1))
    sizes = []
    for i in range(20):
        cap.on_read(server, memoryview(bytes([65 + i]) * 40))
        sizes.append(cap.written)
    assert stops == [("budget", "")]
    assert not cap.active and reactor.recorder is None
    assert isinstance(reactor.clock, ManualClock)  # back on the free-running clock
    cap.on_read(server, memoryview(b"late"))
    cap.close()
    f = read_capture(path)
    assert f.ending == "budget"
    assert f.records[-1].kind == In.END and f.records[-1].payload == b"budget"
    reads = [r for r in f.records if r.kind == In.READ]
    assert 0 < len(reads) < 20 and all(r.payload == bytes([65 + i]) * 40 for i, r in enumerate(reads))
    # Nothing but the END marker went past the budget.
    assert os.path.getsize(path) - (HEAD_SIZE + len(b"budget")) <= 400


def test_entropy_is_recorded_past_the_budget(tmp_path: Path) -> None:
    """A draw belongs to the input being handled: it is written even if that crosses the budget."""
    cap, _, path = _capture(tmp_path, max_bytes=200)
    draw = cap.entropy(lambda n: b"\x07" * n)
    for _ in range(8):
        draw(32)
    assert cap.active and cap.written > 200
    cap.on_callbacks(1)  # an input that starts handling: now the budget counts
    assert not cap.active
    cap.close()
    f = read_capture(path)
    assert [In(r.kind) for r in f.records] == [In.INIT] + [In.ENTROPY] * 8 + [In.END]


# --- the daemon -----------------------------------------------------------------------------------


def _daemon_config(tmp_path: Path, capture: bool, event_log: str = "x.evlog") -> Any:
    (tmp_path / "pgdog.toml").write_text(
        f'[general]\nhost = "127.0.0.1"\nport = 0\nevent_log = "{event_log}"\ncapture_inputs = {str(capture).lower()}\n'
        '[[databases]]\nname = "app"\nhost = "127.0.0.1"\nport = 1\n')
    (tmp_path / "users.toml").write_text(f'[[users]]\nname = "alice"\ndatabase = "app"\npassword = "{PASSWORD}"\n')
    return load_config(str(tmp_path / "pgdog.toml"), str(tmp_path / "users.toml"), entropy=os.urandom, env={})


def test_capture_off_writes_nothing(tmp_path: Path) -> None:
    config = _daemon_config(tmp_path, capture=False)
    daemon = Daemon(config, reactor=_reactor(), notifier=SystemdNotifier(None, pid=0))
    assert daemon.capture is None and daemon.reactor.recorder is None
    assert not isinstance(daemon.reactor.clock, SampledClock)
    daemon._finish()
    assert os.path.exists(config.general.event_log)
    assert not os.path.exists(config.general.event_log + INPUTS_SUFFIX)
    # capture_inputs without an event log file: nothing either.
    config = _daemon_config(tmp_path, capture=True, event_log="")
    daemon = Daemon(config, reactor=_reactor(), notifier=SystemdNotifier(None, pid=0))
    assert daemon.capture is None
    daemon._finish()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(INPUTS_SUFFIX)]


def test_daemon_captures_from_its_first_entropy_draw(tmp_path: Path) -> None:
    config = _daemon_config(tmp_path, capture=True)
    daemon = Daemon(config, reload_config=lambda: config, reactor=_reactor(),
                    notifier=SystemdNotifier(None, pid=0))
    assert daemon.capture is not None and daemon.reactor.recorder is daemon.capture
    daemon._finish()
    path = config.general.event_log + INPUTS_SUFFIX
    f = read_capture(path)
    kinds = [In(r.kind) for r in f.records]
    # The SCRAM verifier of alice's password is salted while the pools are built.
    assert kinds[:2] == [In.INIT, In.ENTROPY] and kinds[-1] == In.FINISH and f.ending == "finished"
    assert f.header.config_digest == config.digest and f.header.reloadable
    assert f.header.log_header["pid"] == daemon.log_header.pid
    with open(path, "rb") as fh:
        assert PASSWORD.encode() not in fh.read()
    notes = [r for r in daemon.events.records() if r.kind == Kind.NOTE and r.a == Reason.CAPTURE_STARTED]
    assert len(notes) == 1
