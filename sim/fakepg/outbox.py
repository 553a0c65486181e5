"""What a session has written and not yet sent: the model of ``server.delay`` and ``server.hang``.

Each batch of output (everything one input produced) is released at
``now + delay``, never before an earlier batch, and nothing leaves while
the server hangs; the session's ``wakeup`` includes the next release time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class Outbox:
    def __init__(self, send: Callable[[bytes], None]) -> None:
        self.send = send
        self.pending = bytearray()  # written by the current input, not yet batched
        self.held: deque[tuple[float, bytes]] = deque()  # (release time, bytes)
        self.bytes_sent = 0

    def write(self, data: bytes) -> None:
        self.pending += data

    @property
    def empty(self) -> bool:
        return not self.pending and not self.held

    @property
    def next_release(self) -> float | None:
        return self.held[0][0] if self.held else None

    def clear(self) -> None:
        self.pending.clear()
        self.held.clear()

    def flush(self, now: float, delay: float, hung: bool) -> None:
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            if delay > 0 or self.held or hung:
                when = now + delay
                if self.held and self.held[-1][0] > when:
                    when = self.held[-1][0]
                self.held.append((when, data))
            else:
                self._send(data)
        while self.held and self.held[0][0] <= now and not hung:
            self._send(self.held.popleft()[1])

    def _send(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.send(data)
