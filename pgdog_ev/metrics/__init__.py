"""OpenMetrics and health endpoints, served over HTTP from the daemon's own reactor."""

from pgdog_ev.metrics.endpoints import Endpoints
from pgdog_ev.metrics.names import ALL_METRICS, exported_samples

__all__ = ["ALL_METRICS", "Endpoints", "exported_samples"]
