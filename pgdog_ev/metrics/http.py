"""A tiny HTTP/1.x server on the daemon's reactor, for the metrics and health endpoints.

Why not http.server or prometheus_client's server: both run in a thread, and what they would
report (pools, sessions, counters) is mutated by the reactor thread without locks. Served from
the reactor, a response is rendered between two events, so it can never see a half-made change.

Deliberately small: one request per connection (the answer says `Connection: close`), no request
bodies, no chunking, no keep-alive. Any path is answered (as PgDog does). GET and HEAD only;
garbage gets 400, other methods 405, an oversized request 431, and a connection that has not
finished within `timeout` (a slowloris, or a reader that never reads) is dropped, so a
misbehaving scraper can hold neither memory nor descriptors for long. At most `max_connections`
are open at once: a new connection evicts the oldest, so connections held open on purpose
(slowloris) cannot lock a real scraper out, which answers in milliseconds and is never the oldest.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from loop.protocol import Protocol

if TYPE_CHECKING:
    from loop.listener import Listener
    from loop.reactor import Reactor
    from loop.timers import TimerHandle
    from loop.transport import SocketTransport

log = logging.getLogger("pgdog_ev.http")

#: Longest request head accepted (request line and headers); scrapers send a few hundred bytes.
MAX_REQUEST = 8192
#: Seconds a connection may live, from accept to the last byte of the answer leaving.
DEFAULT_TIMEOUT = 10.0
#: Connections open at once per endpoint; at the limit a new one evicts the oldest.
MAX_CONNECTIONS = 64

_REQUEST_LINE = re.compile(rb"([A-Za-z]+) (\S+) HTTP/1\.([0-9])")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
ALLOWED_METHODS = ("GET", "HEAD")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    #: Header names lower-cased; repeated headers joined with ", " (RFC 9110 5.3).
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Later:
    """An answer that is not ready yet: the handler of a daemon with several workers has to ask them.

    ``start(reply)`` is called once, from the reactor, and must arrange for ``reply(response)`` to
    be called once, later, from the reactor. The connection's timeout still applies meanwhile.
    """

    start: Callable[[Callable[[Response], None]], None]


Handler = Callable[[Request], "Response | Later"]


class BadRequest(Exception):
    """The request cannot be understood; carries the status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parse_head(head: bytes) -> Request:
    """Parse a request head (without the blank line). Raises BadRequest."""
    lines = head.replace(b"\r\n", b"\n").rstrip(b"\r").split(b"\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise BadRequest(400, "malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest(400, "malformed header line")
        try:
            text = value.strip(b" \t").decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            raise BadRequest(400, "undecodable header") from None
        key = name.decode("ascii").lower()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    method = match.group(1).decode("ascii")
    if method not in ALLOWED_METHODS:
        raise BadRequest(405, f"method {method} not allowed")
    return Request(method, match.group(2).decode("latin-1"), headers)


def encode_response(response: Response, head_only: bool = False) -> bytes:
    """Status line, headers and (unless HEAD) the body; always `Connection: close`."""
    try:
        phrase = HTTPStatus(response.status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {response.status} {phrase}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def _error(status: int, reason: str) -> Response:
    extra = (("Allow", ", ".join(ALLOWED_METHODS)),) if status == 405 else ()
    return Response(status, f"{reason}\n".encode(), headers=extra)


class HttpConnection(Protocol):
    """One HTTP connection: read one request head, answer it, close."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: SocketTransport | None = None
        self.buffer = bytearray()
        self.answered = False
        self._timer: TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._timer = self.server.reactor.call_later(self.server.timeout, self._timed_out)

    def data_received(self, data: memoryview) -> None:
        if self.answered:
            return  # a body or a pipelined request: ignored, the connection closes
        self.buffer += data
        end = self._head_end()
        if end < 0:
            if len(self.buffer) > self.server.max_request:
                self._answer(_error(431, "request too large"))
            return
        if end > self.server.max_request:
            self._answer(_error(431, "request too large"))
            return
        try:
            request = parse_head(bytes(self.buffer[:end]))
        except BadRequest as exc:
            self._answer(_error(exc.status, str(exc)))
            return
        head_only = request.method == "HEAD"
        try:
            response = self.server.handler(request)
        except Exception:
            log.exception("internal error answering %s on the %s endpoint", request.method, self.server.name)
            response = _error(500, "internal error")
        if isinstance(response, Later):
            self.answered = True  # whatever else arrives is ignored, as after an answer
            try:
                response.start(lambda later: self._answer(later, head_only=head_only))
            except Exception:
                log.exception("internal error answering %s on the %s endpoint", request.method, self.server.name)
                self._answer(_error(500, "internal error"), head_only=head_only)
            return
        self._answer(response, head_only=head_only)

    def _head_end(self) -> int:
        """Offset of the blank line ending the head, or -1; accepts bare LF like most servers."""
        crlf = self.buffer.find(b"\r\n\r\n")
        lf = self.buffer.find(b"\n\n")
        if crlf >= 0 and (lf < 0 or crlf < lf):
            return crlf
        return lf

    def _answer(self, response: Response, head_only: bool = False) -> None:
        self.answered = True
        self.buffer = bytearray()
        transport = self.transport
        if transport is None:
            return
        transport.write(encode_response(response, head_only))
        # The timer stays armed: a client that never reads the answer is dropped at the deadline.
        transport.close()

    def eof_received(self) -> None:
        """The client stopped sending before a full request: nothing to answer."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        self.server.connections.pop(self, None)

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class HttpServer:
    """A listening socket whose connections are answered by ``handler``, on ``reactor``."""

    def __init__(
        self,
        reactor: Reactor,
        host: str,
        port: int,
        handler: Handler,
        *,
        name: str,
        timeout: float = DEFAULT_TIMEOUT,
        max_request: int = MAX_REQUEST,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.reactor = reactor
        self.handler = handler
        self.name = name
        self.timeout = timeout
        self.max_request = max_request
        self.max_connections = max_connections
        # Insertion-ordered (a dict used as a set): the first one is the oldest.
        self.connections: dict[HttpConnection, None] = {}
        self.evicted = 0
        self.listener: Listener | None = reactor.listen(host, port, self._accept, backlog=128)

    @property
    def port(self) -> int | None:
        return self.listener.port if self.listener is not None else None

    def _accept(self, sock: socket.socket, addr: Any) -> None:
        if len(self.connections) >= self.max_connections:
            oldest = next(iter(self.connections))
            del self.connections[oldest]
            self.evicted += 1
            oldest.abort()
        conn = HttpConnection(self)
        self.connections[conn] = None
        self.reactor.transport(sock, conn, read_buffer_size=4096)

    def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for conn in list(self.connections):
            conn.abort()
