"""TLS for both sides of the proxy, on the stdlib ``ssl`` module driven through memory BIOs.

``context`` builds the SSLContexts from ``[general]`` (and rebuilds them on reload); ``stream`` is
the sans-IO TLS session; ``transport`` splices a session between a loop transport and the
connection object when a connection switches to TLS.
"""

from pgdog_ev.tls.context import NO_TLS, TlsConfigError, TlsContexts, build_tls, rebuild_tls
from pgdog_ev.tls.stream import TlsError, TlsStream
from pgdog_ev.tls.transport import TlsTransport

__all__ = [
    "NO_TLS",
    "TlsConfigError",
    "TlsContexts",
    "TlsError",
    "TlsStream",
    "TlsTransport",
    "build_tls",
    "rebuild_tls",
]
