"""Scenario files are checked like the proxy's configuration: errors name the file and the key."""

from __future__ import annotations

import pytest

from sim import scenario as scenarios

BASE = {"clients": {"writer": 1}}


def parse(**doc: object) -> scenarios.Scenario:
    return scenarios.parse({**BASE, **doc}, "test.yaml")


def test_every_shipped_scenario_loads() -> None:
    for name in scenarios.names():
        sc = scenarios.load(name)
        assert sc.description, f"{name} has no description"
        assert sc.clients


@pytest.mark.parametrize(("doc", "message"), [
    ({"bogus": 1}, "test.yaml: bogus: unknown key"),
    ({"hosts": 0}, "test.yaml: hosts: expected an integer from 1 to 8"),
    ({"roles": "maybe"}, "test.yaml: roles: expected 'static' or 'auto'"),
    ({"clients": {"dancer": 1}}, "test.yaml: clients.dancer: unknown workload"),
    ({"clients": {"writer": -1}}, "test.yaml: clients.writer: expected a count"),
    ({"faults": [{"kind": "meteor", "at": 1}]}, "test.yaml: faults[0].kind: unknown fault 'meteor'"),
    ({"faults": [{"kind": "crash", "host": "pg0"}]}, "faults[0]: give exactly one of 'at'"),
    ({"faults": [{"kind": "crash", "host": "pg7", "at": 1}]}, "faults[0].host: unknown host 'pg7'"),
    ({"faults": [{"kind": "hang", "host": "pg0", "at": 1}]}, "fault 'hang' needs 'duration'"),
    ({"faults": [{"kind": "crash", "host": "pg0", "at": [3, 1]}]}, "faults[0].at: range must be [low, high]"),
    ({"duration": "long"}, "test.yaml: duration: expected a number"),
    ({"backend_auth": "kerberos"}, "test.yaml: backend_auth: expected one of"),
])
def test_bad_scenarios_are_refused_with_the_file_and_key(doc: dict, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse(**doc)
    assert message in str(info.value)


def test_an_unknown_scenario_name_lists_the_known_ones() -> None:
    with pytest.raises(scenarios.ScenarioError, match=r"known: .*replica_crash"):
        scenarios.load("no_such_scenario")
