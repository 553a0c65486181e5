"""Fixtures of the chaos tests: one toxiproxy server and one primary with a streaming replica per
test process (module scope). The summary of every case at the end of the run is printed by
tests/conftest.py (under pytest-xdist only the root conftest is loaded by the controller)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.chaos.workloads import READ_ROWS, read_payload
from tests.conftest import APP_USER
from tests.harness.replicas import ReplicaSet, build_replica_set
from tests.harness.toxi import ToxiproxyServer


@dataclass
class Rig:
    toxi: ToxiproxyServer
    servers: ReplicaSet


def _create_tables(rs: ReplicaSet) -> None:
    values = ",".join(f"({i}, '{read_payload(i)}')" for i in range(1, READ_ROWS + 1))
    rs.sql(rs.primary, f"""
        CREATE TABLE chaos_acks (id bigint PRIMARY KEY, who text NOT NULL, at timestamptz DEFAULT now());
        CREATE TABLE chaos_reads (id int PRIMARY KEY, payload text NOT NULL);
        INSERT INTO chaos_reads VALUES {values};
        CREATE TABLE chaos_bench (case_no int NOT NULL, client int NOT NULL);
        GRANT ALL ON chaos_acks, chaos_reads, chaos_bench TO {APP_USER};
    """)
    rs.sync()


@pytest.fixture(scope="module")
def chaos_rig() -> Iterator[Rig]:
    toxi = ToxiproxyServer().start()
    rs = build_replica_set("chaos", replicas=1)
    try:
        _create_tables(rs)
        yield Rig(toxi, rs)
    finally:
        toxi.stop()
        rs.cleanup()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: a fault injected through toxiproxy while workloads run")
