"""Scenario files: a topology, a proxy configuration, a workload and a fault schedule.

A scenario is YAML in ``sim/scenarios/``. Times in it are seconds of virtual
time; wherever a time or duration is given as ``[low, high]`` the seed picks
it, so every seed plays a different version of the same story. Errors name
the file and the key, as the proxy's own configuration errors do.

    name: replica_crash
    description: A replica dies during reads and comes back; it is banned, then unbanned.
    duration: 10            # seconds the workload runs
    settle: 6               # seconds after the last fault for recovery and liveness
    hosts: 3                # pg0 is the primary, the others replicate from it
    roles: static           # static: primary/replica in the config; auto: LSN detection
    replication_lag: 0.002
    backend_auth: md5       # trust | md5 | scram-sha-256 | password
    client_auth: md5
    general: {ban_timeout: 1000}   # extra [general] keys for the proxy
    clients: {writer: 2, reader: 4}
    faults:
      - {kind: crash, host: pg1, at: [2, 4]}
      - {kind: restart, host: pg1, after: [1, 3]}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from sim.faults import FAULTS
from sim.workloads import WORKLOADS

SCENARIO_DIR = os.path.join(os.path.dirname(__file__), "scenarios")
AUTH_METHODS = ("trust", "md5", "scram-sha-256", "password")


class ScenarioError(ValueError):
    pass


@dataclass
class Scenario:
    name: str
    path: str
    description: str = ""
    duration: float = 10.0
    settle: float = 8.0
    hosts: int = 1
    roles: str = "static"
    replication_lag: Any = 0.002
    backend_auth: str = "md5"
    client_auth: str = "md5"
    general: dict[str, Any] = field(default_factory=dict)
    users: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, int] = field(default_factory=dict)
    client_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    request_timeout: float = 30.0
    seeds: int = 0  # how many seeds `make sim` runs (0: the runner's default)

    def with_changes(self, clients: dict[str, int] | None = None,
                     faults: list[dict[str, Any]] | None = None) -> Scenario:
        """A smaller copy, for shrinking."""
        copy = Scenario(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        if clients is not None:
            copy.clients = clients
        if faults is not None:
            copy.faults = faults
        return copy


_KEYS = set(Scenario.__dataclass_fields__) - {"path"}


def _fail(path: str, key: str, message: str) -> ScenarioError:
    return ScenarioError(f"{path}: {key}: {message}")


def _number(path: str, key: str, value: Any, *, allow_range: bool = True) -> Any:
    if isinstance(value, bool):
        raise _fail(path, key, f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise _fail(path, key, f"must be >= 0, got {value}")
        return value
    if allow_range and isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        if not 0 <= value[0] <= value[1]:
            raise _fail(path, key, f"range must be [low, high] with 0 <= low <= high, got {value}")
        return value
    raise _fail(path, key, f"expected a number{' or [low, high]' if allow_range else ''}, got {value!r}")


def parse(doc: Any, path: str) -> Scenario:
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown key (known: {', '.join(sorted(_KEYS))})")
    name = doc.get("name") or os.path.splitext(os.path.basename(path))[0]
    sc = Scenario(name=str(name), path=path)
    sc.description = str(doc.get("description", ""))
    for key in ("duration", "settle", "request_timeout"):
        if key in doc:
            setattr(sc, key, float(_number(path, key, doc[key], allow_range=False)))
    if "replication_lag" in doc:
        sc.replication_lag = _number(path, "replication_lag", doc["replication_lag"])
    hosts = doc.get("hosts", 1)
    if not isinstance(hosts, int) or isinstance(hosts, bool) or not 1 <= hosts <= 8:
        raise _fail(path, "hosts", f"expected an integer from 1 to 8, got {hosts!r}")
    sc.hosts = hosts
    roles = doc.get("roles", "static")
    if roles not in ("static", "auto"):
        raise _fail(path, "roles", f"expected 'static' or 'auto', got {roles!r}")
    sc.roles = roles
    for key in ("backend_auth", "client_auth"):
        value = doc.get(key, getattr(sc, key))
        if value not in AUTH_METHODS:
            raise _fail(path, key, f"expected one of {', '.join(AUTH_METHODS)}, got {value!r}")
        setattr(sc, key, value)
    for key in ("general", "users", "client_options"):
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise _fail(path, key, f"expected a mapping, got {value!r}")
        setattr(sc, key, dict(value))
    clients = doc.get("clients", {})
    if not isinstance(clients, dict) or not clients:
        raise _fail(path, "clients", "expected a mapping of workload name to count")
    for kind, count in clients.items():
        if kind not in WORKLOADS:
            raise _fail(path, f"clients.{kind}", f"unknown workload (known: {', '.join(WORKLOADS)})")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise _fail(path, f"clients.{kind}", f"expected a count >= 0, got {count!r}")
    sc.clients = dict(clients)
    faults = doc.get("faults", [])
    if not isinstance(faults, list):
        raise _fail(path, "faults", "expected a list")
    for i, fault in enumerate(faults):
        where = f"faults[{i}]"
        if not isinstance(fault, dict) or "kind" not in fault:
            raise _fail(path, where, "expected a mapping with a 'kind'")
        cls = FAULTS.get(fault["kind"])
        if cls is None:
            raise _fail(path, f"{where}.kind", f"unknown fault {fault['kind']!r} (known: {', '.join(FAULTS)})")
        if ("at" in fault) == ("after" in fault):
            raise _fail(path, where, "give exactly one of 'at' (from the start) or 'after' (the previous fault)")
        for key in ("at", "after", "duration"):
            if key in fault:
                _number(path, f"{where}.{key}", fault[key])
        cls.validate(fault, sc, f"{path}: {where}")
    sc.faults = [dict(f) for f in faults]
    seeds = doc.get("seeds", 0)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 0:
        raise _fail(path, "seeds", f"expected an integer >= 0, got {seeds!r}")
    sc.seeds = seeds
    return sc


def load(name_or_path: str) -> Scenario:
    """A scenario by file path or by name in sim/scenarios/."""
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(SCENARIO_DIR, name_or_path + ("" if name_or_path.endswith(".yaml") else ".yaml"))
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise ScenarioError(f"no scenario {name_or_path!r} (looked for {path}; known: {', '.join(names())})") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse(doc, path)


def names() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(SCENARIO_DIR) if f.endswith(".yaml"))
