"""Fixtures of the chaos tests: one toxiproxy server and one primary with a streaming replica per
test process (module scope), and a summary of every case's injected fault and observations at the
end of the run (also under pytest-xdist, from each report's user properties)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.chaos.workloads import READ_ROWS, read_payload
from tests.conftest import APP_USER
from tests.harness.replicas import ReplicaSet, build_replica_set
from tests.harness.toxi import ToxiproxyServer

SUMMARY_KEY = "chaos"


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = []
    for key in ("passed", "failed"):
        for report in terminalreporter.stats.get(key, []):
            for name, value in getattr(report, "user_properties", []):
                if name == SUMMARY_KEY and report.when == "call":
                    lines.append((key, json.loads(value)))
    if not lines:
        return
    terminalreporter.section("chaos cases")
    for outcome, s in sorted(lines, key=lambda x: x[1]["case"]):
        terminalreporter.write_line(f"{s['case']} [{outcome}]: injected {s['injected']}")
        terminalreporter.write_line(f"    observed {s['observed']}")
