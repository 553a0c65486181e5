"""Deliberately broken proxies: proof that the simulator can fail.

Each mutant replaces one production mechanism for the length of a run (the
original is restored afterwards, even on error) with the kind of bug it
exists to catch. ``tests/unit/test_sim_mutants.py`` asserts that every
mutant is caught, by the invariant named here, within a bounded number of
seeds of its scenario; if a change made the simulator blind to one of these
bugs, that test fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pgdog_ev import native
from pgdog_ev.proxy.directory import Directory
from state.client import ClientSession
from state.cluster import Cluster
from state.reasons import Reason
from state.server import ServerSession


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    scenario: str
    #: Invariants any of which counts as catching it.
    caught_by: tuple[str, ...]
    patch: Callable[[], list[tuple[Any, str, Any]]]


def _skip_rollback() -> list[tuple[Any, str, Any]]:
    original = ServerSession._continue_cleaning

    def continue_cleaning(self: ServerSession, now: float) -> None:
        # Pretend the abandoned transaction is over: no ROLLBACK, straight back to the pool.
        self.txn_status = b"I"
        original(self, now)

    return [(ServerSession, "_continue_cleaning", continue_cleaning)]


def _writes_ignore_roles() -> list[tuple[Any, str, Any]]:
    original = Cluster.checkout

    def checkout(self: Cluster, now: float, client: Any, write: bool, replica: bool = False,
                 deadline: float | None = None) -> Any:
        return original(self, now, client, False, replica, deadline)

    return [(Cluster, "checkout", checkout)]


def _never_unban() -> list[tuple[Any, str, Any]]:
    original = Cluster.unban

    def unban(self: Cluster, now: float, pool: Any, reason: Reason) -> bool:
        if reason is Reason.UNBAN_EXPIRED:
            return False
        return original(self, now, pool, reason)

    return [(Cluster, "unban", unban)]


def _reuse_mid_transaction() -> list[tuple[Any, str, Any]]:
    original_ready = ClientSession.on_server_ready
    original_clean = ServerSession.clean

    def on_server_ready(self: ClientSession, now: float, server: ServerSession, status: bytes) -> None:
        # Treat "in a transaction" as "idle": the server goes back to the pool between statements.
        original_ready(self, now, server, b"I")

    def clean(self: ServerSession) -> bool:
        return not self.owed and not self.unsynced and not self.copy_in and not self.cancels_in_flight

    _ = original_clean
    return [(ClientSession, "on_server_ready", on_server_ready), (ServerSession, "clean", property(clean))]


def _ignore_bans() -> list[tuple[Any, str, Any]]:
    original = Cluster._compute_targets

    def compute_targets(self: Cluster, replica: bool, exclude: Any) -> list[Any]:
        saved = self.bans
        self.bans = {}
        try:
            return original(self, replica, exclude)
        finally:
            self.bans = saved

    return [(Cluster, "_compute_targets", compute_targets)]


def _discovery_ignored() -> list[tuple[Any, str, Any]]:
    def discovered(self: Cluster, now: float, pools: list[Any]) -> None:
        return  # hosts a reload adds serve reads at once, checked or not

    return [(Cluster, "discovered", discovered)]


def _cancel_wrong_client() -> list[tuple[Any, str, Any]]:
    def cancel(self: Directory, now: float, pid: int, secret: bytes) -> None:
        # Key checked, then the wrong session cancelled: the next busy client after the owner.
        for cid in sorted(self.clients):
            client = self.clients[cid]
            if cid != pid and client.server is not None:
                client.cancel_request(now)
                return

    return [(Directory, "cancel", cancel)]


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    Mutant("skip_rollback", "abandoned transactions go back to the pool without ROLLBACK", "client_abandon",
           ("dirty-checkin", "abandoned-committed", "leaked-transaction"), _skip_rollback),
    Mutant("writes_ignore_roles", "writes are routed like reads, ignoring host roles", "replica_crash",
           ("write-to-replica",), _writes_ignore_roles),
    Mutant("never_unban", "a ban never expires, even when the host is healthy again", "replica_crash",
           ("ban-not-lifted",), _never_unban),
    Mutant("reuse_mid_transaction", "a server is returned to the pool while its transaction is open",
           "pool_exhaustion", ("dirty-checkin", "lost-commit", "leaked-transaction", "counter"),
           _reuse_mid_transaction),
    Mutant("ignore_bans", "reads keep going to banned hosts", "flapping_health",
           ("banned-host",), _ignore_bans),
    Mutant("cancel_wrong_client", "a CancelRequest cancels another client's query", "cancel_race",
           ("cancel",), _cancel_wrong_client),
    Mutant("discovery_ignored", "require_healthcheck_on_discovery does nothing: a host a reload adds serves reads "
           "before any health check", "replica_added", ("unchecked-host",), _discovery_ignored),
)}


@contextlib.contextmanager
def applied(name: str | None) -> Iterator[Mutant | None]:
    """Install mutant ``name`` (None: none) for the duration of the block."""
    if name is None:
        yield None
        return
    mutant = MUTANTS.get(name)
    if mutant is None:
        raise KeyError(f"unknown mutant {name!r} (known: {', '.join(MUTANTS)})")
    if native.STATUS == "compiled":
        # Compiled callers reach the methods directly: a replaced one would never run.
        raise RuntimeError(f"mutant {name!r} needs the state machines' sources: run with {native.PURE_ENV}=1")
    patches = mutant.patch()
    saved = [(owner, attr, owner.__dict__[attr]) for owner, attr, _ in patches]
    try:
        for owner, attr, value in patches:
            setattr(owner, attr, value)
        yield mutant
    finally:
        for owner, attr, value in saved:
            setattr(owner, attr, value)
