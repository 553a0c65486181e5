"""The systemd notify protocol, spoken directly (no python-systemd dependency).

Under ``Type=notify`` systemd starts the service and waits for ``READY=1`` on the datagram socket
named by ``NOTIFY_SOCKET`` before it counts the unit as started, so units ordered after the pooler
only start once clients can actually connect. ``RELOADING=1`` + ``MONOTONIC_USEC`` then ``READY=1``
around a reload is what ``Type=notify-reload`` waits for; ``STOPPING=1`` tells systemd the drain
has begun; ``STATUS=`` is the line ``systemctl status`` shows; ``WATCHDOG=1`` proves the event loop
still turns (the pings ride on the loop's own timers, so a wedged loop stops them).

Without ``NOTIFY_SOCKET`` every call is a no-op. Sending can never take the daemon down: a
failure is logged once and later ones are dropped silently, because a pooler that serves clients
but cannot reach systemd is better than one that exits.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("pgdog_ev.sdnotify")

# How often STATUS= is refreshed while serving; only sent when the text changed.
STATUS_INTERVAL = 5.0

CallLater = Callable[[float, Callable[[], None]], Any]


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: the clock systemd compares MONOTONIC_USEC against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def socket_address(value: str) -> str | bytes | None:
    """NOTIFY_SOCKET as a sockaddr: a path, or '@name' for the abstract namespace; None if unusable."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (VMs): not supported here


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC, as sd_watchdog_enabled advises),
    or None when the watchdog is off or meant for another process (WATCHDOG_PID)."""
    raw_usec = env.get("WATCHDOG_USEC", "")
    raw_pid = env.get("WATCHDOG_PID", "")
    try:
        usec = int(raw_usec)
        if raw_pid and int(raw_pid) != pid:
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


class SystemdNotifier:
    """Sends sd_notify datagrams; every method is safe to call when systemd is not listening."""

    def __init__(
        self,
        address: str | bytes | None,
        *,
        pid: int,
        watchdog: float | None = None,
        clock_usec: Callable[[], int] = monotonic_usec,
    ) -> None:
        self.address = address
        self.pid = pid
        self.watchdog = watchdog
        self.clock_usec = clock_usec
        self._sock: socket.socket | None = None
        self._failed = False
        self._last_status: str | None = None
        self._stopped = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], pid: int | None = None) -> SystemdNotifier:
        pid = os.getpid() if pid is None else pid
        raw = env.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET %r is not a path or an abstract socket; not notifying systemd", raw)
        return cls(address, pid=pid, watchdog=watchdog_interval(env, pid) if address else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    # -- messages ---------------------------------------------------------------

    def ready(self, status: str) -> None:
        """Started, or done reloading: clients are served with the current configuration.

        Ignored once stopping: a reload during the drain must not tell systemd we are back."""
        if self._stopped:
            return
        self._last_status = status
        self.send(f"READY=1\nMAINPID={self.pid}\nSTATUS={status}")

    def reloading(self, status: str = "reloading configuration") -> None:
        if self._stopped:
            return
        self._last_status = status
        self.send(f"RELOADING=1\nMONOTONIC_USEC={self.clock_usec()}\nSTATUS={status}")

    def stopping(self, status: str = "shutting down") -> None:
        self._last_status = status
        self._stopped = True
        self.send(f"STOPPING=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """A new STATUS= line, skipped when it says what the last one said (or once stopping)."""
        if status != self._last_status and not self._stopped:
            self._last_status = status
            self.send(f"STATUS={status}")

    def ping(self) -> None:
        self.send("WATCHDOG=1")

    # -- timers -------------------------------------------------------------------

    def start_timers(self, call_later: CallLater, status: Callable[[], str]) -> None:
        """Arm the watchdog pings and the periodic STATUS= refresh on the caller's event loop."""
        if not self.enabled:
            return
        if self.watchdog is not None:
            interval = self.watchdog

            def ping() -> None:
                self.ping()
                call_later(interval, ping)

            call_later(interval, ping)

        def refresh() -> None:
            if not self._stopped:
                self.status(status())
                call_later(STATUS_INTERVAL, refresh)

        call_later(STATUS_INTERVAL, refresh)

    # -- transport ----------------------------------------------------------------

    def send(self, message: str) -> bool:
        """One datagram; False (never an exception) when it could not be delivered."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never stall the event loop on a full systemd queue: drop the datagram instead.
                self._sock.setblocking(False)
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd at %r: %s (further failures not logged)", self.address, exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
