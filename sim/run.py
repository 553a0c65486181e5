"""One run of one scenario with one seed: build the world, play it, judge it.

Phases, in virtual time: the workload runs for ``duration`` while the faults
play; then the workloads are told to stop, every fault is over (links
healed, hangs resumed, replay running), and ``settle`` seconds give the
proxy time to recover: clients must finish, bans must lift, servers must be
clean. The event log of the run (every incarnation of the proxy plus the
simulator's notes) is hashed: the same seed must give the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pgdog_ev.config import Config
from pgdog_ev.config.loader import load_config_text
from sim.apphost import AppHost
from sim.faults import FAULTS, Fault, note
from sim.invariants import Invariants
from sim.pghost import PgHost
from sim.proxyhost import LogCapture, ProxyHost
from sim.scenario import Scenario
from sim.workloads import WORKLOADS, Context
from sim.world import EPOCH, World
from state.events import EventLog, Kind, LogHeader, Machine
from state.reasons import Reason

APP_USER = "app"
APP_DB = "app"
APP_PASSWORD = "secret"
ADMIN_PASSWORD = "admin-secret"
#: Workloads begin after this much virtual time, so pools and monitors are up.
START = 0.05


class MemorySink:
    """The run's event log kept whole in memory (the digest and the written file come from it)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def __call__(self, view: memoryview) -> None:
        self.data += view


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


DEFAULT_GENERAL: dict[str, Any] = {
    "pooler_mode": "transaction",
    "default_pool_size": 4,
    "checkout_timeout": 2000,
    "connect_timeout": 1000,
    "healthcheck_interval": 300,
    "idle_healthcheck_interval": 300,
    "idle_healthcheck_delay": 0,
    "healthcheck_timeout": 500,
    "ban_timeout": 1000,
    "load_balancing_strategy": "random",
    "stats_period": 1000,
}


def proxy_config(sc: Scenario, hosts: list[PgHost], world: World) -> Config:
    general = dict(DEFAULT_GENERAL)
    general["auth_type"] = {"password": "plain"}.get(sc.client_auth, sc.client_auth)
    if sc.roles == "auto":
        general.update({"lsn_check_delay": 0, "lsn_check_interval": 200, "lsn_check_timeout": 500})
    general.update(sc.general)
    lines = ["[general]", 'host = "0.0.0.0"', "port = 6432"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in general.items()]
    for i, host in enumerate(hosts):
        role = "auto" if sc.roles == "auto" else ("primary" if i == 0 else "replica")
        lines += ["", "[[databases]]", f'name = "{APP_DB}"', f'host = "{host.address}"', f"port = {host.port}",
                  f'role = "{role}"']
    lines += ["", "[admin]", f'password = "{ADMIN_PASSWORD}"']
    users = ["[[users]]", f'name = "{APP_USER}"', f'database = "{APP_DB}"', f'password = "{APP_PASSWORD}"']
    users += [f"{k} = {_toml_value(v)}" for k, v in sc.users.items()]
    return load_config_text("\n".join(lines) + "\n", "\n".join(users) + "\n", entropy=world.entropy, env={})


@dataclass
class RunResult:
    scenario: str
    seed: int
    mutant: str | None
    violations: list[Any]
    digest: str
    log: bytes
    header: LogHeader
    sim_seconds: float
    wall_seconds: float
    steps: int
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


class Run:
    """The hosts of one run and the operations faults perform on them."""

    def __init__(self, sc: Scenario, seed: int) -> None:
        from sim.fakepg import make_server

        self.sc = sc
        self.world = World(seed)
        self.sink = MemorySink()
        self.events = EventLog(capacity=1 << 15, sink=self.sink)
        self.injections = 0
        self.pgs: list[PgHost] = []
        for i in range(sc.hosts):
            primary = self.pgs[0].database if i else None
            server = make_server(self.world, sc, primary=primary, name=f"pg{i}",
                                 user=APP_USER, password=APP_PASSWORD, database=APP_DB)
            self.pgs.append(PgHost(self.world, f"pg{i}", server))
        # Hosts an add_host fault brings in later are left out of the first configuration.
        added = {spec["host"] for spec in sc.faults if spec["kind"] == "add_host"}
        self.configured = [pg for pg in self.pgs if pg.name not in added]
        self.config = proxy_config(sc, self.configured, self.world)
        self.proxy = ProxyHost(self.world, self.config, self.events)
        self.app = AppHost(self.world, self.proxy.address, 6432, request_timeout=sc.request_timeout)
        self.invariants = Invariants(self)
        self.world.after_step.append(self.invariants.step)
        self.faults_end = EPOCH
        self.primary_name = "pg0"
        # Hosts a reload added under require_healthcheck_on_discovery that have not answered a
        # health check since: name -> the host's count of answered `;` at the reload.
        self.unchecked: dict[str, int] = {}

    def primary(self) -> PgHost | None:
        """The host that should hold every acknowledged commit: pg0, or the last one promoted."""
        return self.pg(self.primary_name)

    def host(self, name: str) -> Any:
        if name == "proxy":
            return self.proxy
        return self.pg(name)

    def pg(self, name: str) -> PgHost:
        return self.pgs[int(name[2:])]

    def restart(self, name: str) -> None:
        if name == "proxy":
            if self.proxy.reactor is None:
                self.proxy.start()
            return
        self.pg(name).restart()

    def promote(self, name: str) -> None:
        """Like an HA manager: catch up from what the old primary durably wrote, then promote."""
        host = self.pg(name)
        db = host.database
        db.catch_up(self.world.now())
        db.promote(self.world.now())
        self.primary_name = name
        for other in self.pgs:
            if other is not host and other.database.in_recovery:
                other.database.follow(db)

    def add_host(self, name: str) -> None:
        """Write the host into the proxy's configuration and reload it (SIGHUP); a proxy that is
        down at the time starts with the new configuration."""
        host = self.pg(name)
        if host in self.configured:
            return
        self.configured = [pg for pg in self.pgs if pg in self.configured or pg is host]
        config = proxy_config(self.sc, self.configured, self.world)
        self.config = self.proxy.config = config
        general = config.general
        if general.require_healthcheck_on_discovery and general.ban_timeout > 0 and self.proxy.daemon is not None:
            self.unchecked[name] = host.database.stats.get("probe", 0)
        daemon = self.proxy.daemon
        if daemon is not None:
            daemon.reload_config = lambda: config
            daemon.reload()

    def rejoin(self, name: str, primary: str) -> None:
        host = self.pg(name)
        host.crash()
        host.database.follow(self.pg(primary).database)
        host.restart()

    # -- playing --------------------------------------------------------------------------

    def schedule(self) -> None:
        world = self.world
        t0 = EPOCH
        for pg in self.pgs:
            pg.start()
        self.proxy.start()
        options = self.sc.client_options
        for kind, count in self.sc.clients.items():
            script = WORKLOADS[kind]
            ctx = Context(self.app, options.get(kind, {}))
            for _ in range(count):
                self.app.spawn(kind, lambda d, s=script, c=ctx: s(d, c), t0 + START + world.uniform([0, 0.2]))
        prev = t0
        end = t0
        for spec in self.sc.faults:
            cls: type[Fault] = FAULTS[spec["kind"]]
            at = t0 + world.uniform(spec["at"]) if "at" in spec else prev + world.uniform(spec["after"])
            stop = cls.schedule(self, spec, at)
            prev = at
            end = max(end, stop, at)
        self.faults_end = end

    def stop_workloads(self) -> None:
        note(self, Reason.SIM_WORKLOAD_STOP, "app")
        self.app.stopping = True
        # Whatever a scenario left broken on purpose is mended: the settle phase judges recovery.
        for link in list(self.world.net.links.values()):
            self.world.net.heal(link.a, link.b)
        for pg in self.pgs:
            pg.hang(False)
            pg.server.delay = 0.0
            pg.database.replay_paused = False
        self.faults_end = max(self.faults_end, self.world.now())

    def play(self) -> None:
        self.schedule()
        world = self.world
        stop_at = max(EPOCH + self.sc.duration, self.faults_end)
        world.at(stop_at, self.stop_workloads)
        world.run_until(stop_at)
        if not world.violations:
            world.run_until(stop_at + self.sc.settle)
        self.events.emit(world.now(), Kind.NOTE, Machine.SIM, 0, 0, 0, Reason.SIM_END, 0)
        if not world.violations:
            self.invariants.final()
        self.events.flush()


def run(sc: Scenario, seed: int, mutant: str | None = None) -> RunResult:
    """Play ``sc`` with ``seed`` (and a mutant, if named) and judge it."""
    from sim.mutants import applied

    wall = time.perf_counter()
    logger = logging.getLogger("pgdog_ev")
    run_ = Run(sc, seed)
    capture = LogCapture(lambda msg: run_.world.violation("internal-error", msg))
    saved = (logger.level, logger.propagate)
    logger.addHandler(capture)
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    try:
        with applied(mutant):
            run_.play()
    finally:
        logger.removeHandler(capture)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    data = bytes(run_.sink.data)
    header = ProxyHost.header(run_.world, run_.config)
    return RunResult(
        scenario=sc.name,
        seed=seed,
        mutant=mutant,
        violations=list(run_.world.violations),
        digest=hashlib.sha256(data).hexdigest(),
        log=data,
        header=header,
        sim_seconds=run_.world.now() - EPOCH,
        wall_seconds=time.perf_counter() - wall,
        steps=run_.world.steps,
        stats=run_.invariants.summary(),
    )
