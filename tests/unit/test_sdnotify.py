"""SystemdNotifier without a daemon: the abstract-socket form of NOTIFY_SOCKET, WATCHDOG_PID
matching, timers on an injected call_later, and failures that never raise."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pgdog_ev.sdnotify import STATUS_INTERVAL, SystemdNotifier, socket_address, watchdog_interval


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket in the abstract namespace; yields its NOTIFY_SOCKET spelling."""
    name = f"pgdog-ev-test-{os.getpid()}-{os.urandom(4).hex()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    yield "@" + name, sock
    sock.close()


def test_abstract_socket(abstract_listener: tuple[str, socket.socket]) -> None:
    value, sock = abstract_listener
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": value}, pid=4242)
    assert notifier.enabled
    notifier.ready("serving 1 pool, 0 clients")
    assert sock.recv(4096).decode().splitlines() == ["READY=1", "MAINPID=4242", "STATUS=serving 1 pool, 0 clients"]
    notifier.reloading()
    lines = sock.recv(4096).decode().splitlines()
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0
    notifier.stopping("bye")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=bye"
    notifier.close()


def test_socket_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("vsock:2:1234") is None
    assert SystemdNotifier.from_env({}).enabled is False
    assert SystemdNotifier.from_env({"NOTIFY_SOCKET": "relative/path"}).enabled is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "77"}, 0.1),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "78"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, 77) == expected


def test_disabled_notifier_is_a_no_op() -> None:
    notifier = SystemdNotifier(None, pid=1)
    assert notifier.send("READY=1") is False
    calls: list[Any] = []
    notifier.start_timers(lambda delay, fn: calls.append(delay), lambda: "x")
    assert calls == []


def test_send_failure_logged_once(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier(str(tmp_path / "missing"), pid=1)
    for _ in range(3):
        assert notifier.send("WATCHDOG=1") is False
    assert sum("cannot notify systemd" in r.getMessage() for r in caplog.records) == 1


class FakeTimers:
    """call_later that only records; `fire()` runs what is due, as a loop turn would."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.pending.append((delay, fn))

    def fire(self) -> None:
        due, self.pending = self.pending, []
        for _, fn in due:
            fn()


def test_timers_ping_and_refresh_status(abstract_listener: tuple[str, socket.socket]) -> None:
    value, sock = abstract_listener
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "1000000"}, pid=5)
    timers = FakeTimers()
    status = ["serving 1 pool, 0 clients"]
    notifier.ready(status[0])
    sock.recv(4096)
    notifier.start_timers(timers.call_later, lambda: status[0])
    assert sorted(delay for delay, _ in timers.pending) == [0.5, STATUS_INTERVAL]
    timers.fire()  # a ping; the unchanged status is not resent
    assert sock.recv(4096) == b"WATCHDOG=1"
    status[0] = "serving 1 pool, 3 clients"
    timers.fire()
    got = {sock.recv(4096), sock.recv(4096)}
    assert got == {b"WATCHDOG=1", b"STATUS=serving 1 pool, 3 clients"}
    notifier.stopping()
    sock.recv(4096)
    notifier.ready("back?")  # a reload during the drain must not say READY again
    timers.fire()
    assert sock.recv(4096) == b"WATCHDOG=1"
    sock.setblocking(False)  # local datagrams are queued by the time sendto returns
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
