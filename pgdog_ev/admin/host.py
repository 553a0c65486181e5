"""What the admin console needs from the daemon it steers.

A Protocol rather than the Daemon class itself, so the console can be driven in
unit tests and the dependency points one way (daemon -> console).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pgdog_ev.config import Config, General
    from pgdog_ev.proxy.directory import Directory
    from state.events import EventLog, LogHeader


class ConsoleHost(Protocol):
    # The configuration this process runs with; with several workers, its share of the sizes.
    config: Config
    # The configuration as the files (and admin SET) say, whole: what SHOW CONFIG prints and SET
    # changes. The same object as ``config`` in a single process.
    configured: Config
    directory: Directory
    events: EventLog
    log_header: LogHeader
    # Why the last reload failed (None after a good one).
    reload_error: str | None

    def now(self) -> float:
        """The reactor's monotonic clock, in the units sessions record times in."""

    def reload(self) -> bool:
        """Re-read the configuration files; False (with ``reload_error``) when they are bad."""

    def shutdown(self) -> None:
        """Graceful shutdown: stop accepting, drain transactions."""

    def apply_general(self, general: General) -> None:
        """Run with a changed [general] from now on (admin SET), until the next reload."""

    def call_soon(self, callback: object) -> None:
        """Run ``callback()`` after the current command's answer is on its way."""

    def worker_status(self) -> dict[str, Any]:
        """This process's row of SHOW WORKERS, by column name."""
