"""The simulated world: one clock, one PRNG, one network, and the hosts on it.

Every host (the proxy, each fake PostgreSQL, the application running fake
clients) runs the production ``Reactor`` with a virtual clock, a virtual
poller and the virtual network's sockets. A step of the world runs one pass
of every host that has work; when none has, the clock jumps straight to the
next thing that will happen (a timer, a segment arriving, a scheduled fault),
so an idle minute costs nothing. The order of everything is fixed by the
seed, the ``(when, seq)`` keys of the heaps, and the order hosts were added.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from loop.clock import ManualClock
from loop.reactor import Reactor
from sim.network import Network, VNode

#: Where virtual time starts: far from zero, like a real monotonic clock, so "0 means never" bugs show.
EPOCH = 1000.0
#: Passes in a row without time moving before the world calls it a livelock.
LIVELOCK_PASSES = 200_000


class SimReactor(Reactor):
    """The production reactor on virtual parts; signals are recorded, not installed."""

    def __init__(self, world: World, node: VNode) -> None:
        super().__init__(clock=world.clock, poller=node.reset_poller(), sockets=node.sockets)
        self.world = world
        self.node = node
        self.signal_handlers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}

    def add_signal_handler(self, signum: int, callback: Callable[..., Any], *args: Any) -> None:
        self.signal_handlers[signum] = (callback, args)

    def remove_signal_handler(self, signum: int) -> bool:
        return self.signal_handlers.pop(signum, None) is not None

    def deliver_signal(self, signum: int) -> None:
        entry = self.signal_handlers.get(signum)
        if entry is not None:
            self.call_soon(entry[0], *entry[1])

    def handle_exception(self, exc: BaseException, context: str) -> None:
        self.stats.exceptions += 1
        self.world.violation("exception", f"{self.node.name}: exception in {context}: {exc!r}")


class Host:
    """Anything on the network that runs a reactor; ``reactor`` is None while it is down."""

    name: str
    vnode: VNode
    reactor: SimReactor | None


class Violation(Exception):
    """An invariant failed; carries the invariant's name."""

    def __init__(self, invariant: str, detail: str, at: float) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail
        self.at = at


class World:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = ManualClock(EPOCH)
        self.net = Network(self.clock, self.rng)
        self.hosts: list[Host] = []
        self._actions: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.after_step: list[Callable[[], None]] = []
        self.violations: list[Violation] = []
        self.steps = 0
        self.passes = 0
        self._still = 0

    # -- randomness ------------------------------------------------------------------------

    def entropy(self, n: int) -> bytes:
        """The proxy's entropy source (cancel keys, SCRAM nonces): drawn from the one seed."""
        return self.rng.randbytes(n)

    def uniform(self, spec: Any) -> float:
        """A number, or [low, high] drawn uniformly: how scenarios let the seed pick times."""
        if isinstance(spec, list | tuple):
            low, high = float(spec[0]), float(spec[1])
            return low + self.rng.random() * (high - low)
        return float(spec)

    # -- time ------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` at virtual time ``when`` (world actions: faults, checks)."""
        self._seq += 1
        heapq.heappush(self._actions, (when, self._seq, callback, args))

    def later(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        self.at(self.clock.now() + delay, callback, *args)

    # -- hosts -------------------------------------------------------------------------------

    def add_host(self, host: Host) -> None:
        self.hosts.append(host)

    def new_reactor(self, node: VNode) -> SimReactor:
        return SimReactor(self, node)

    # -- invariants ----------------------------------------------------------------------------

    def violation(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(invariant, detail, self.clock.now()))

    # -- running -------------------------------------------------------------------------------

    def _busy(self, reactor: SimReactor, now: float) -> bool:
        if reactor.has_pending() or reactor.node.poller.has_ready():
            return True
        deadline = reactor.next_deadline()
        return deadline is not None and deadline <= now

    def step(self) -> bool:
        """One pass of every host with work, or one jump of the clock; False when nothing is left."""
        self.steps += 1
        now = self.clock.now()
        ran = False
        for host in self.hosts:
            reactor = host.reactor
            if reactor is not None and self._busy(reactor, now):
                reactor.run_once(0.0)
                ran = True
        if ran:
            self.passes += 1
            self._still += 1
            if self._still > LIVELOCK_PASSES:
                self.violation("livelock", f"{LIVELOCK_PASSES} passes without time moving")
                self._still = 0
                return False
        else:
            when = self._next_time()
            if when is None:
                return False
            if when > now:
                self.clock.set(when)
                self._still = 0
            now = self.clock.now()
            self.net.run_due(now)
            actions = self._actions
            while actions and actions[0][0] <= now:
                _, _, callback, args = heapq.heappop(actions)
                callback(*args)
        for check in self.after_step:
            check()
        return True

    def _next_time(self) -> float | None:
        best: float | None = None
        for host in self.hosts:
            reactor = host.reactor
            if reactor is not None:
                d = reactor.next_deadline()
                if d is not None and (best is None or d < best):
                    best = d
        t = self.net.next_time()
        if t is not None and (best is None or t < best):
            best = t
        if self._actions and (best is None or self._actions[0][0] < best):
            best = self._actions[0][0]
        return best

    def run_until(self, when: float, stop: Callable[[], bool] | None = None) -> None:
        """Step until virtual time ``when`` (or ``stop()`` holds, or a violation)."""
        self.at(when, _noop)
        while self.clock.now() < when or self._due_now():
            if self.violations or (stop is not None and stop()):
                return
            if not self.step():
                return

    def _due_now(self) -> bool:
        now = self.clock.now()
        if self._actions and self._actions[0][0] <= now:
            return True
        t = self.net.next_time()
        if t is not None and t <= now:
            return True
        return any(h.reactor is not None and self._busy(h.reactor, now) for h in self.hosts)


def _noop() -> None:
    return None
