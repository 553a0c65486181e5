"""sd_notify against a real AF_UNIX datagram socket standing in for systemd: READY=1 once the
listener is bound, RELOADING=1/READY=1 around SIGHUP (also when the new file is broken), STOPPING=1
on SIGTERM, and WATCHDOG=1 pings at half of WATCHDOG_USEC."""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.clients import connect
from tests.harness.config import app_database, app_user


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: collects datagrams as dicts of KEY=VALUE lines."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.seen: list[dict[str, str]] = []

    def next(self, match: Callable[[dict[str, str]], bool], timeout: float = 10.0) -> dict[str, str]:
        """The next datagram that `match`es (earlier non-matching ones are kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching notification within {timeout}s; seen: {self.seen!r}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            msg = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.seen.append(msg)
            if match(msg):
                return msg

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    # A short directory of our own: AF_UNIX paths are limited to ~107 bytes.
    tmp = tempfile.mkdtemp(prefix="sdn-")
    fake = FakeSystemd(str(Path(tmp) / "notify"))
    yield fake
    fake.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _has(key: str) -> Callable[[dict[str, str]], bool]:
    return lambda msg: msg.get(key) == "1"


def test_ready_reload_stopping(pg, proxy_factory, systemd):
    proxy = proxy_factory(
        general={"default_pool_size": 1}, databases=[app_database(pg)], users=[app_user()],
        env={"NOTIFY_SOCKET": systemd.path},
    )
    ready = systemd.next(_has("READY"))
    assert ready["MAINPID"] == str(proxy.pid)
    assert ready["STATUS"].startswith("serving 1 pool")
    with connect(proxy) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    proxy.signal(signal.SIGHUP)
    reloading = systemd.next(_has("RELOADING"))
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    assert "READY" not in reloading
    assert systemd.next(_has("READY"))["MAINPID"] == str(proxy.pid)

    # A broken file keeps the old configuration, and systemd still hears the reload end.
    proxy.update(general={**proxy.general, "bogus_key": 1})
    systemd.next(_has("RELOADING"))
    systemd.next(_has("READY"))

    proxy.signal(signal.SIGTERM)
    stopping = systemd.next(_has("STOPPING"))
    assert "draining" in stopping["STATUS"]
    assert proxy.wait(timeout=15) == 0
    assert "Traceback" not in proxy.log_text()


def test_watchdog_pings(pg, proxy_factory, systemd):
    proxy = proxy_factory(
        databases=[app_database(pg)], users=[app_user()],
        env={"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "200000"},
    )
    systemd.next(_has("READY"))
    first = time.monotonic()
    for _ in range(3):
        systemd.next(_has("WATCHDOG"), timeout=5)
    # Pinged at ~100 ms (half of WATCHDOG_USEC), not once per STATUS refresh.
    assert time.monotonic() - first < 3
    assert proxy.returncode is None


def test_unreachable_notify_socket_is_not_fatal(pg, proxy_factory, tmp_path, poll):
    proxy = proxy_factory(
        databases=[app_database(pg)], users=[app_user()],
        env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens"), "WATCHDOG_USEC": "100000"},
    )
    with connect(proxy) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    poll(lambda: "cannot notify systemd" in proxy.log_text(), what="send failure logged")
    with connect(proxy) as c:  # still serving after many failed watchdog pings
        assert c.execute("SELECT 2").fetchone() == (2,)
    assert proxy.log_text().count("cannot notify systemd") == 1
    assert proxy.stop() == 0
