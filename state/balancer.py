"""Load-balancing strategies: which of several eligible hosts a checkout goes to.

The choice is a pure function of the candidates, their load and a little state (a rotation
counter, a PRNG seeded from the proxy's entropy source), so the simulator can replay it and
unit tests can feed it loads without sockets. Candidates arrive in configuration order.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from typing import Final, Protocol, TypeVar

from mypy_extensions import i64


class Loaded(Protocol):
    """What the balancer reads of a pool: its servers, the idle ones and the queued clients."""

    @property
    def total(self) -> int: ...
    @property
    def idle(self) -> Sized: ...
    @property
    def waiters(self) -> Sized: ...


P = TypeVar("P", bound=Loaded)

STRATEGIES: Final = ("random", "round_robin", "least_active_connections")

_MASK32: Final = 0xFFFF_FFFF
_MASK64: Final = (1 << 64) - 1
_GOLDEN64: Final = 0x9E37_79B9_7F4A_7C15


class XorShift:
    """xorshift32 (Marsaglia): a few integer operations per draw, seeded once (``random`` is off
    limits in state/, and drawing entropy per checkout would put an entropy record in the log
    each time). Every intermediate fits in 45 bits, so compiled code keeps the state in a native
    int instead of a heap integer, and the interpreted twin draws the same sequence. Each bit of
    the state is balanced over the period, which is all picking among a few hosts asks."""

    __slots__ = ("_s",)

    def __init__(self, seed: bytes) -> None:
        # The 64-bit seed is mixed (a Fibonacci-hashing multiply) before folding its halves, so
        # that seeds whose halves are equal do not all fold to zero.
        mixed = (int.from_bytes(seed[:8].ljust(8, b"\x01"), "little") * _GOLDEN64) & _MASK64
        self._s: i64 = ((mixed ^ (mixed >> 32)) & _MASK32) or 0x9E3779B9

    def below(self, n: int) -> int:
        s = self._s
        s ^= (s << 13) & _MASK32
        s ^= s >> 17
        s ^= (s << 5) & _MASK32
        self._s = s
        return s % n


def load(pool: Loaded) -> int:
    """Connections lent out plus clients queued: what least_active_connections compares."""
    return pool.total - len(pool.idle) + len(pool.waiters)


class Balancer:
    """Picks one candidate by the configured strategy."""

    __slots__ = ("_prng", "_turn", "strategy")

    def __init__(self, strategy: str, seed: bytes) -> None:
        self.strategy = strategy
        self._prng = XorShift(seed)
        self._turn = 0

    def pick(self, candidates: Sequence[P]) -> P:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        strategy = self.strategy
        if strategy == "random":  # the default, tested first
            return candidates[self._prng.below(n)]
        if strategy == "round_robin":
            self._turn += 1
            return candidates[self._turn % n]
        if strategy == "least_active_connections":
            # Ties (an idle cluster) rotate, so equal hosts share the load instead of the
            # first one taking every sequential client.
            loads = [load(pool) for pool in candidates]
            least = min(loads)
            ties = [pool for pool, pool_load in zip(candidates, loads, strict=True) if pool_load == least]
            self._turn += 1
            return ties[self._turn % len(ties)]
        return candidates[self._prng.below(n)]
