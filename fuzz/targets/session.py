"""The production client and server machines, fed arbitrary bytes through the sans-IO test kit.

Three targets, each on a fresh ProxyRig (tests/unit/statekit.py: one pool, fake clock, fake
sockets) with the Responder (fuzz/responder.py) answering for PostgreSQL:

* ``client_session``: a logged-in client sends the input (after two parameter bytes: the
  chunking seed, and flags for session mode, timer ticks, a final EOF,
  ``session_state = "refuse"`` and ``prepared_statements`` "full" or "disabled");
* ``client_login``: a new client sends the input from its first byte (startup packet,
  SSLRequest, passwords, SASL messages), against trust, cleartext, MD5 or SCRAM;
* ``server_session``: a logged-in client sends a well-formed request chosen by the input, and the
  server answers with the rest of the input (flags: session mode, a tick, a final EOF,
  ``session_state = "refuse"``).

Oracles: nothing raises out of ``on_bytes``/``on_closed``/timers (the machines must turn any
input into an ErrorResponse and a close); every transition of every machine is in its table;
nothing is written to a closed socket; what the client receives splits into whole messages
whenever the servers sent whole messages; a client closed for a protocol violation got an
ErrorResponse as its last message; a closed client holds no server and waits in no queue.
``client_session`` also feeds the same bytes whole and in the seeded chunking with the servers
answering only at the end: the client must receive the same bytes and end in the same state
either way; a third run lets the servers answer (and timers fire) between reads.
"""

from __future__ import annotations

import random

from fuzz.chunks import split
from fuzz.oracle import check
from fuzz.responder import Responder
from fuzz.source import ByteSource
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer
from pgdog_ev.wire.startup import GSSENCRequest, SSLRequest, parse_startup, startup_length
from state.client import ClientSession, ClientState
from state.events import Machine
from state.reasons import Reason
from state.server import TRANSITIONS as SERVER_TRANSITIONS
from state.server import ServerState
from tests.unit.statekit import (
    FakeStream,
    ProxyRig,
    check_transitions,
    client_transitions,
    feed,
    ready_client,
    rig,
)

# Rounds of answering per step: a request and its hidden settings sync take a few, a pipeline
# of held requests one per request. Far more means the proxy and the server never stop talking.
SETTLE_ROUNDS = 5000
TICKS = (0.05, 1.0, 90.0)
AUTH_METHODS = ("trust", "cleartext", "md5", "scram")


class Session:
    """One rig, its client and a Responder per server connection."""

    def __init__(self, mode: str, auth: str = "trust", **settings: str) -> None:
        self.rig: ProxyRig = rig(mode, auth, **settings)
        self.world = self.rig.world
        self.responders: dict[int, Responder] = {}
        # Off while a target feeds a server's answer itself.
        self.answering = True

    def settle(self) -> None:
        """Log in new servers and answer requests until nothing moves."""
        for _ in range(SETTLE_ROUNDS):
            moved = False
            for server in list(self.world.pool_io.opened):
                if server.state is ServerState.CONNECTING:
                    self.rig.backend(server).login(self.rig.server_auth)
                    moved = True
                if self.answering:
                    responder = self.responders.get(server.id)
                    if responder is None:
                        responder = self.responders[server.id] = Responder(self.world, server)
                    moved = responder.pump() or moved
            if not moved:
                return
        raise AssertionError(f"the proxy and its servers still talk after {SETTLE_ROUNDS} rounds")

    def tick(self, dt: float) -> None:
        self.world.tick(dt)
        self.settle()

    def check(self, client: ClientSession, whole_servers: bool = True, negotiations: int = 0) -> bytes:
        """The invariants every target checks at the end; returns what the client received.
        ``negotiations``: SSLRequests/GSSENCRequests sent first, each answered by one byte."""
        client_transitions(self.world)
        check_transitions(self.world, Machine.SERVER, SERVER_TRANSITIONS, ServerState.CONNECTING)
        stream: FakeStream = client.io  # type: ignore[assignment]
        check(stream.sent_after_close == 0, "bytes written to a closed client socket")
        for server in self.world.pool_io.opened:
            check(server.io.sent_after_close == 0, f"bytes written to closed server {server.id}")  # type: ignore[attr-defined]
        received = bytes(stream.sent)
        for _ in range(negotiations):
            check(received[:1] in (b"N", b""), f"an encryption request answered {received[:1]!r}")
            received = received[1:]
        framer = Framer(1 << 30)
        try:
            messages = framer.feed(received)
        except ProtocolViolation:
            messages = []
            check(not whole_servers, "the client received a bad message length")
        if whole_servers:
            check(framer.pending() == 0, "the client received a partial message")
        if client.state is ClientState.CLOSED:
            if client.close_reason is Reason.PROTOCOL_VIOLATION and whole_servers:
                check(messages and messages[-1][0] == ord("E"), "closed for a protocol violation without an error")
            for server in self.world.pool_io.opened:
                check(server.client is not client, f"closed client still holds server {server.id}")
            check(client not in self.rig.pool.waiters, "closed client still waits for a server")
        return received


def _run_client(stream: bytes, chunks: list[bytes], mode: str, bits: int, seed: int,
                interleave: bool) -> tuple[bytes, str]:
    """Feed ``chunks``; with ``interleave`` the servers answer (and timers tick) between reads,
    otherwise only once everything was read."""
    prepared = "full" if bits & 16 else "disabled" if bits & 32 else "extended"
    session = Session(mode, session_state="refuse" if bits & 8 else "pin", prepared_statements=prepared)
    client, _driver = ready_client(session.rig)
    received_at_login = len(client.io.sent)  # type: ignore[attr-defined]
    rng = random.Random(seed)
    for chunk in chunks:
        if client.state is ClientState.CLOSED:
            break
        feed(client, session.world.now, chunk)
        if interleave:
            session.settle()
            if bits & 2 and rng.random() < 0.25:
                session.tick(rng.choice(TICKS))
    session.settle()
    if bits & 4 and client.state is not ClientState.CLOSED:
        client.on_closed(session.world.now)
        session.settle()
    if client.state is ClientState.CLOSED:
        for server in session.world.pool_io.opened:
            # Every request was answered: nothing is left for the cleanup to wait for.
            check(server.state is not ServerState.CLEANING,
                  f"server {server.id} still cleaning after the client left (owed: {list(server.owed)})")
    received = session.check(client)
    return received[received_at_login:], client.state.name


def client_session(data: bytes) -> None:
    src = ByteSource(data)
    seed = src.byte()
    bits = src.byte()
    mode = "session" if bits & 1 else "transaction"
    stream = src.rest()
    chunks = split(stream, seed)
    whole = _run_client(stream, [stream] if stream else [], mode, bits, seed, interleave=False)
    chunked = _run_client(stream, chunks, mode, bits, seed, interleave=False)
    check(chunked == whole, f"chunking changed the outcome: {whole[1]} vs {chunked[1]}")
    _run_client(stream, chunks, mode, bits, seed, interleave=True)


def _negotiations(stream: bytes) -> int:
    """How many SSLRequest/GSSENCRequest packets lead ``stream`` and get a one-byte 'N' (the
    proxy refuses each kind once, as PostgreSQL does; asking again gets an ErrorResponse)."""
    count = pos = 0
    seen: set[type] = set()
    while True:
        try:
            length = startup_length(stream[pos:])
            if length is None or len(stream) - pos < length:
                return count
            packet = parse_startup(stream[pos : pos + length])
        except ProtocolViolation:
            return count
        if not isinstance(packet, SSLRequest | GSSENCRequest) or type(packet) in seen:
            return count
        seen.add(type(packet))
        count += 1
        pos += length


def client_login(data: bytes) -> None:
    src = ByteSource(data)
    seed = src.byte()
    auth = src.choice(AUTH_METHODS)
    bits = src.byte()
    stream = src.rest()
    session = Session("session" if bits & 1 else "transaction", auth)
    client = session.world.new_client(login_timeout_ms=5000)
    for chunk in split(stream, seed):
        if client.state is ClientState.CLOSED:
            break
        feed(client, session.world.now, chunk)
        session.settle()
    if bits & 2:
        session.tick(10.0)  # past the login timeout
    if bits & 4 and client.state is not ClientState.CLOSED:
        client.on_closed(session.world.now)
        session.settle()
    session.check(client, negotiations=_negotiations(stream))


# Requests a well-behaved client sends before the server's answer (the input) arrives.
REQUESTS = (
    fe.query("SELECT 1"),
    fe.query("BEGIN"),
    fe.parse("", "SELECT $1", [23]) + fe.bind("", "", [0], [b"1"], [0]) + fe.describe("P", "")
    + fe.execute("", 0) + fe.sync(),
    fe.parse("s1", "SELECT 1") + fe.sync(),
    fe.query("COPY t FROM STDIN"),
    fe.query("COPY t TO STDOUT"),
    fe.function_call(1, [], [], 0),
    # With session_state = "refuse" (flag 8) the LISTEN is refused in its turn: the answer meets
    # the stand-in Parse sent in its place.
    fe.parse("", "SELECT 1") + fe.bind("", "", [], [], []) + fe.execute("", 0)
    + fe.parse("", "LISTEN ch") + fe.bind("", "", [], [], []) + fe.execute("", 0) + fe.sync(),
    # Queries behind an unsynced batch: a no-op Close goes ahead of each, and an error before it
    # means the server skips the Query (and the named Parse) with no ReadyForQuery.
    fe.parse("", "SELECT 1") + fe.bind("", "", [], [], []) + fe.execute("", 0) + fe.query("SELECT 2")
    + fe.parse("s2", "SELECT 2") + fe.query("LISTEN ch") + fe.sync(),
)


def server_session(data: bytes) -> None:
    src = ByteSource(data)
    seed = src.byte()
    bits = src.byte()
    request = src.choice(REQUESTS)
    answer = src.rest()
    session = Session("session" if bits & 1 else "transaction", session_state="refuse" if bits & 8 else "pin")
    client, _driver = ready_client(session.rig)
    # A first query logs a server in, so the request below goes straight to it.
    feed(client, session.world.now, fe.query("SELECT 0"))
    session.settle()
    session.answering = False
    feed(client, session.world.now, request)
    session.settle()
    for server in session.world.pool_io.opened:
        if server.client is client:
            server.io.take_raw()  # type: ignore[attr-defined]
            for chunk in split(answer, seed):
                if server.state is ServerState.CLOSED:
                    break
                feed(server, session.world.now, chunk)
            break
    session.answering = True
    if bits & 2:
        session.tick(2.0)
    if client.state is not ClientState.CLOSED:
        feed(client, session.world.now, fe.query("SELECT 2"))
        session.settle()
    if bits & 4 and client.state is not ClientState.CLOSED:
        client.on_closed(session.world.now)
        session.settle()
    session.check(client, whole_servers=False)
