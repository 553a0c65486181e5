"""COPY FROM STDIN through the proxy: CopyData, CopyDone and CopyFail with arbitrary chunking.

pgdog-ev has no row-level COPY splitter (sharding beyond one shard is not built): a COPY is
framed by the client's MessageScanner, which streams CopyData bodies through (its table reads
them by header only) and reads CopyDone/CopyFail whole, while the server machine notes the
CopyInResponse. This target drives exactly that, in transaction or session mode.

Input: chunking seed, flags (session mode, extended protocol for the COPY statement, a final
EOF), then the client's bytes once the server said CopyInResponse. Oracles: those of the session
targets, plus: the server receives the client's messages byte for byte up to and including the
first CopyDone or CopyFail (when they are well formed), and feeding the stream whole or in chunks
gives the server and the client the same bytes.
"""

from __future__ import annotations

from fuzz.chunks import split
from fuzz.oracle import check
from fuzz.source import ByteSource
from fuzz.targets.session import Session
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer
from state.client import ClientState
from tests.unit.statekit import feed, ready_client

COPY_SQL = "COPY t (a, b) FROM STDIN"
SIMPLE = fe.query(COPY_SQL)
EXTENDED = fe.parse("", COPY_SQL) + fe.bind("", "", [], [], []) + fe.execute("", 0) + fe.sync()
MAX_MESSAGE = 1 << 20  # statekit's max_message_size


def _copy_prefix(stream: bytes) -> bytes | None:
    """The stream up to and including its first CopyDone/CopyFail, if it gets there cleanly."""
    pos = 0
    try:
        messages = Framer(MAX_MESSAGE).feed(stream)
    except ProtocolViolation:
        return None
    for mtype, body in messages:
        pos += 5 + len(body)
        if mtype in (fe.COPY_DONE, fe.COPY_FAIL):
            return stream[:pos]
        if mtype != fe.COPY_DATA:
            return None
    return None


def _run(stream: bytes, chunks: list[bytes], mode: str, request: bytes, eof: bool) -> tuple[bytes, bytes, str]:
    session = Session(mode)
    client, _driver = ready_client(session.rig)
    received_at_login = len(client.io.sent)  # type: ignore[attr-defined]
    feed(client, session.world.now, request)
    session.settle()
    servers = [s for s in session.world.pool_io.opened if s.client is client]
    check(servers and servers[0].copy_in, "the COPY did not start")
    server = servers[0]
    sent_before = len(server.io.sent)  # type: ignore[attr-defined]
    session.answering = False
    for chunk in chunks:
        if client.state is ClientState.CLOSED:
            break
        feed(client, session.world.now, chunk)
    to_server = bytes(server.io.sent[sent_before:])  # type: ignore[attr-defined]
    session.answering = True
    session.settle()
    if eof and client.state is not ClientState.CLOSED:
        client.on_closed(session.world.now)
        session.settle()
    received = session.check(client)
    return to_server, received[received_at_login:], client.state.name


def copy_in(data: bytes) -> None:
    src = ByteSource(data)
    seed = src.byte()
    bits = src.byte()
    mode = "session" if bits & 1 else "transaction"
    request = EXTENDED if bits & 2 else SIMPLE
    stream = src.rest()
    whole = _run(stream, [stream] if stream else [], mode, request, bool(bits & 4))
    chunked = _run(stream, split(stream, seed), mode, request, bool(bits & 4))
    check(whole == chunked, "chunking changed what the server or the client received")
    prefix = _copy_prefix(stream)
    if prefix is not None:
        check(whole[0].startswith(prefix), "the server did not receive the COPY stream verbatim")
