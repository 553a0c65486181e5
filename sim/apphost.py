"""The application host: where the fake clients run, and what they have been told.

Its history is the ground truth the invariants compare the databases with:
which commits the proxy acknowledged, which writes were abandoned before a
COMMIT was ever sent (they must never become visible), which outcomes are
unknown (the connection died after COMMIT was sent), and how long each
request waited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sim.pgclient import ClientDriver, Script
from sim.world import Host, SimReactor, World


@dataclass
class History:
    #: (table, key) -> value of every commit the proxy acknowledged.
    acked: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Commits whose outcome is unknown: the connection died after COMMIT went out.
    maybe: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Writes whose transaction never got a COMMIT (rolled back, failed, or the client vanished).
    never: set[tuple[str, int]] = field(default_factory=set)
    #: counter key -> (acknowledged increments, increments with unknown outcome).
    counters: dict[int, list[int]] = field(default_factory=dict)
    gave_up: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    committed: int = 0

    def error(self, sqlstate: str | None) -> None:
        key = sqlstate or "?"
        self.errors[key] = self.errors.get(key, 0) + 1


class AppHost(Host):
    def __init__(self, world: World, proxy_address: str, proxy_port: int, *, name: str = "app",
                 request_timeout: float = 30.0, connect_timeout: float = 5.0) -> None:
        self.world = world
        self.name = name
        self.vnode = world.net.add_node(name)
        self.reactor: SimReactor | None = world.new_reactor(self.vnode)
        self.proxy_address = proxy_address
        self.proxy_port = proxy_port
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.clients: list[ClientDriver] = []
        self.history = History()
        #: Requests that went unanswered for request_timeout: (client, kind, waited, at).
        self.hangs: list[tuple[int, str, float, float]] = []
        self.stopping = False
        world.add_host(self)

    def spawn(self, kind: str, script: Callable[[ClientDriver], Script], at: float) -> ClientDriver:
        driver = ClientDriver(self, len(self.clients) + 1, kind, script)
        self.clients.append(driver)
        self.world.at(at, driver.start)
        return driver

    def stop(self) -> bool:
        """Workloads poll this: once True they finish their current transaction and leave."""
        return self.stopping

    def hung(self, driver: ClientDriver, waited: float) -> None:
        self.history.gave_up += 1
        self.hangs.append((driver.cid, driver.kind, waited, self.world.now()))

    def unfinished(self) -> list[ClientDriver]:
        return [c for c in self.clients if not c.finished]
