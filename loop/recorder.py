"""What the loop tells an input recorder (``Reactor.recorder``), if one is installed.

Nothing here knows about PostgreSQL: the hooks name transports, connectors and timers, and the
recorder decides what they are. ``Reactor.recorder`` is None unless a capture is running, and the
loop's hot paths pay one attribute check for it (a transport reads the recorder once, when it is
created, so a recorder must be installed before the transports it should see).

Call order within one pass of ``run_once``: ``on_pass`` first; then, from IO handlers, any of
``on_read``/``on_eof``/``on_error``/``on_connect``/``on_signal``/``on_closed``; ``on_timers``
before due timers are collected and ``on_timer`` before each one runs; ``on_callbacks`` before the
callbacks queued for the pass run; during the final flush ``on_closed`` and ``on_error`` again.
``on_connect`` and ``on_error`` may also be called from inside a callback or timer that is
already running (a connect that completed at once, a failed half-close): the recorder is told
whether a connect result is delivered later (``deferred``) or right now.
"""

from __future__ import annotations

from typing import Any, Protocol

from loop.timers import TimerHandle


class Recorder(Protocol):
    def on_pass(self) -> None:
        """A pass starts (before the poll)."""

    def on_timers(self) -> None:
        """Due timers are about to be collected."""

    def on_timer(self, handle: TimerHandle) -> None:
        """This timer's callback runs next (``handle.seq`` names it, ``handle.when`` is its deadline)."""

    def on_callbacks(self, count: int) -> None:
        """The ``count`` callbacks queued so far run next, in order."""

    def on_read(self, transport: Any, data: memoryview) -> None:
        """``data`` goes to the transport's protocol next (valid only during the call)."""

    def on_eof(self, transport: Any) -> None:
        """The peer shut down its side; ``eof_received`` then ``close()`` follow."""

    def on_error(self, transport: Any, exc: Exception) -> None:
        """The socket failed; the transport closes and queues ``connection_lost(exc)``."""

    def on_closed(self, transport: Any) -> None:
        """A ``close()`` that waited for the outbox completes; ``connection_lost(None)`` is queued."""

    def on_connect(self, connector: Any, exc: Exception | None, deferred: bool, timer: bool) -> None:
        """Connector ``connector.seq`` (``connector.tag`` as its caller named it) finished (``exc``
        None: connected). ``deferred``: the result is delivered from the callback queue (it completed
        inside ``Reactor.connect``); ``timer``: a timeout timer had been armed for it."""

    def on_signal(self, signum: int) -> None:
        """The callback registered for ``signum`` runs next."""
