"""Building a fake node for a simulator scenario: its data, disk, replication lag and roles.

Every random choice (what a crash keeps of unsynced WAL, a replica's lag,
salts and cancel keys) is drawn from the world's seeded PRNG, so a seed
replays the same nodes.
"""

from __future__ import annotations

from typing import Any

from sim.disk import VirtualDisk
from sim.fakepg.auth import MD5, PASSWORD, SCRAM, TRUST, AuthSpec, UserAuth
from sim.fakepg.database import Database
from sim.fakepg.server import FakeServer

TABLES = ("kv", "counters")
# Counter rows exist from the start (workloads UPDATE them; keys are client ids).
COUNTER_ROWS = 10_000
_METHODS = {"md5": MD5, "scram": SCRAM, "scram-sha-256": SCRAM, "password": PASSWORD, "plain": PASSWORD,
            "cleartext": PASSWORD, "trust": TRUST}


def auth_method(name: str) -> str:
    try:
        return _METHODS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown backend auth method {name!r} (known: {', '.join(sorted(_METHODS))})") from None


def make_server(
    world: Any,
    sc: Any,
    *,
    primary: Database | None = None,
    name: str,
    user: str,
    password: str,
    database: str,
    port: int = 5432,
) -> FakeServer:
    """A node for ``sc`` (sim.scenario.Scenario): a primary, or a replica of ``primary``.

    ``world`` provides ``rng`` (random.Random), ``entropy(n)`` and ``uniform(spec)``.
    """
    rng = world.rng
    disk = VirtualDisk(choose=lambda n: rng.randint(0, n))
    if primary is None:
        db = Database(TABLES, rows={"counters": dict.fromkeys(range(1, COUNTER_ROWS + 1), 0)}, name=name,
                      disk=disk)
    else:
        db = Database(primary=primary, name=name, disk=disk,
                      lag=world.uniform(getattr(sc, "replication_lag", 0.0)))
    method = auth_method(getattr(sc, "backend_auth", "md5"))
    auth = AuthSpec(users={user: UserAuth(method, password)}, default=None)
    return FakeServer(db, auth, entropy=world.entropy, port=port, databases=(database,))
