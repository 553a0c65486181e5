"""The metrics endpoint's answer: a private registry rendered in the format the scraper asked for.

A private CollectorRegistry, never prometheus_client's global one: a second daemon in the same
process (tests) or a library registering its own metrics must not leak into this endpoint.
"""

from __future__ import annotations

from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from pgdog_ev.metrics.collector import MetricsHost, PrefixedCollector, ProxyCollector
from pgdog_ev.metrics.http import Request, Response

#: The classic text format; prometheus_client's own constant moved on to 1.0.0 (UTF-8 names),
#: which older scrapers refuse, and our names need none of it.
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def build_registry(host: MetricsHost, namespace: str = "") -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(host, namespace))
    registry.register(PrefixedCollector(ProcessCollector(registry=None), namespace))
    return registry


def wants_openmetrics(accept: str) -> bool:
    """True if the Accept header lists application/openmetrics-text with a non-zero q."""
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() != "application/openmetrics-text":
            continue
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            continue
    return False


def render(registry: CollectorRegistry, request: Request) -> Response:
    """The registry in the format ``request`` asks for (OpenMetrics, else the classic text)."""
    if wants_openmetrics(request.headers.get("accept", "")):
        return Response(200, generate_openmetrics(registry), OPENMETRICS_TYPE)
    return Response(200, generate_text(registry), TEXT_TYPE)


class MetricsEndpoint:
    """HTTP handler: renders the registry on the calling (reactor) thread."""

    def __init__(self, host: MetricsHost, namespace: str = "") -> None:
        self.registry = build_registry(host, namespace)

    def __call__(self, request: Request) -> Response:
        return render(self.registry, request)
