"""Fake PostgreSQL servers for the deterministic simulator: sans-IO, real protocol bytes.

``Database`` holds one node's data, WAL (on a ``sim.disk.VirtualDisk``), role
and replication; ``FakeServer`` is the postmaster of a node (roles, knobs,
cancel keys) and opens a ``BackendSession`` per connection.
"""

from sim.fakepg.auth import MD5, PASSWORD, SCRAM, TRUST, AuthSpec, UserAuth
from sim.fakepg.database import Database
from sim.fakepg.factory import make_server
from sim.fakepg.server import CounterEntropy, FakeServer
from sim.fakepg.session import BackendSession, Phase
from sim.fakepg.wal import PreparedXact, WalRecord

__all__ = [
    "MD5",
    "PASSWORD",
    "SCRAM",
    "TRUST",
    "AuthSpec",
    "BackendSession",
    "CounterEntropy",
    "Database",
    "FakeServer",
    "Phase",
    "PreparedXact",
    "UserAuth",
    "WalRecord",
    "make_server",
]
