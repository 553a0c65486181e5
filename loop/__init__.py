"""Hand-rolled event loop (reactor) used by the proxy's hot path.

Knows nothing about PostgreSQL.  Clock, Poller and Transport sit behind small
interfaces so the deterministic simulator can reuse ``Reactor.run_once``.
"""

from loop.clock import Clock, ManualClock, MonotonicClock
from loop.connector import Connector
from loop.listener import Listener
from loop.poller import READ, WRITE, EpollPoller, Poller
from loop.protocol import Protocol
from loop.reactor import Reactor, ReactorStats
from loop.timers import TimerHandle, TimerHeap
from loop.transport import SocketTransport, Transport

__all__ = [
    "READ",
    "WRITE",
    "Clock",
    "Connector",
    "EpollPoller",
    "Listener",
    "ManualClock",
    "MonotonicClock",
    "Poller",
    "Protocol",
    "Reactor",
    "ReactorStats",
    "SocketTransport",
    "TimerHandle",
    "TimerHeap",
    "Transport",
]
