"""Opening and closing the daemon's HTTP endpoints (metrics and health) from [general].

Both ports are bound at start and kept until the process exits (changing them needs a restart,
like the client port). They stay open through the shutdown drain, so the health endpoint can say
`down` while clients finish instead of refusing connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pgdog_ev.metrics.exposition import MetricsEndpoint
from pgdog_ev.metrics.health import HealthEndpoint
from pgdog_ev.metrics.http import Handler, HttpServer

if TYPE_CHECKING:
    from loop.reactor import Reactor
    from pgdog_ev.config import Config, General
    from pgdog_ev.eventlog.filesink import RotatingFileSink
    from pgdog_ev.proxy.directory import Directory
    from state.events import EventLog

log = logging.getLogger("pgdog_ev.metrics")

#: PgDog binds its health endpoint to every address; there is no key for it.
HEALTH_HOST = "0.0.0.0"


class EndpointHost(Protocol):
    config: Config
    reactor: Reactor
    directory: Directory
    events: EventLog
    sink: RotatingFileSink | None
    stopping: bool


class Endpoints:
    """The HTTP servers [general] asks for: openmetrics_port and healthcheck_port."""

    def __init__(self) -> None:
        self.metrics: HttpServer | None = None
        self.health: HttpServer | None = None

    @classmethod
    def open(cls, host: EndpointHost) -> Endpoints:
        """Bind what is configured; an OSError names the key, host and port that failed."""
        g = host.config.general
        return cls.serve(host.reactor, g, lambda: MetricsEndpoint(host, g.openmetrics_namespace or ""),
                         lambda: HealthEndpoint(host))

    @classmethod
    def serve(cls, reactor: Reactor, g: General, metrics: Callable[[], Handler],
              health: Callable[[], Handler]) -> Endpoints:
        """Bind what ``g`` configures with these handlers (the supervisor of several workers has its
        own, which ask the workers)."""
        endpoints = cls()
        try:
            if g.openmetrics_port is not None:
                endpoints.metrics = _serve(reactor, "openmetrics_port", g.openmetrics_host, g.openmetrics_port,
                                           metrics())
            if g.healthcheck_port is not None:
                endpoints.health = _serve(reactor, "healthcheck_port", HEALTH_HOST, g.healthcheck_port, health())
        except OSError:
            endpoints.close()
            raise
        return endpoints

    def close(self) -> None:
        for server in (self.metrics, self.health):
            if server is not None:
                server.close()
        self.metrics = self.health = None


def _serve(reactor: Reactor, key: str, host: str, port: int, handler: Handler) -> HttpServer:
    try:
        server = HttpServer(reactor, host, port, handler, name=key)
    except OSError as exc:
        raise OSError(exc.errno, f"{key}: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    log.info("%s: serving HTTP on %s:%d", key, host, server.port, extra={"addr": f"{host}:{server.port}"})
    return server
