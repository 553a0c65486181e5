"""Callbacks a transport delivers to its owner.

A base class with no-op methods (rather than a typing.Protocol) so the proxy
only overrides what it needs, and so the transport can call every hook
unconditionally without ``hasattr`` checks on the hot path.
"""

from __future__ import annotations

from typing import Any

from mypy_extensions import mypyc_attr


# Compiled (pgdog_ev.native), yet tests, the simulator and the admin and metrics servers
# subclass it from interpreted code.
@mypyc_attr(allow_interpreted_subclasses=True)
class Protocol:
    """Receiver of stream events; all methods are invoked from the reactor."""

    # Subclasses may declare __slots__ (one object per connection adds up over 10,000 clients).
    __slots__ = ()

    def connection_made(self, transport: Any) -> None:
        """The transport is registered and ready; keep a reference to write to it."""

    def data_received(self, data: memoryview) -> None:
        """Bytes arrived.

        ``data`` points into a receive buffer that is reused for the next read
        (and shared between transports), so it is only valid during this call:
        copy (``bytes(data)``, ``buf += data``) whatever must outlive it.  The
        view is released after the call so a retained reference fails loudly.
        """

    def eof_received(self) -> None:
        """The peer shut down its sending side; the transport closes after this."""

    def connection_lost(self, exc: Exception | None) -> None:
        """Called exactly once, from the loop; ``exc`` is None for a clean close."""

    def pause_writing(self) -> None:
        """Our outbox went above the high-water mark: stop producing (e.g. stop reading the peer)."""

    def resume_writing(self) -> None:
        """Our outbox drained to the low-water mark: producing may resume."""
