"""The untyped first packets of a connection: StartupMessage, SSLRequest, GSSENCRequest,
CancelRequest, and whatever else a port scanner or a confused client sends first.

Input: the bytes a client sends before authentication; packets are cut off the front the way
the client session does (declared length first, then the packet). Oracles: only
ProtocolViolation escapes the parsers; a parsed packet builds back to the same bytes (a
StartupMessage only when it carried no ``_pq_.`` options, whose values are dropped by design);
the ``options`` parameter parses or fails with ProtocolViolation, and every setting it yields
has a non-empty name.
"""

from __future__ import annotations

from fuzz.oracle import check
from pgdog_ev.wire import startup as su
from pgdog_ev.wire.errors import ProtocolViolation

# A client gets one packet before SSL/GSS negotiation and one after; more is already garbage.
MAX_PACKETS = 4


def _rebuild(packet: su.StartupPacket) -> bytes | None:
    if isinstance(packet, su.SSLRequest):
        return su.build_ssl_request()
    if isinstance(packet, su.GSSENCRequest):
        return su.build_gssenc_request()
    if isinstance(packet, su.CancelRequest):
        return su.build_cancel_request(packet.pid, packet.secret)
    if packet.protocol_options:
        return None
    return su.build_startup(packet.params, packet.version)


def _options(text: str) -> None:
    try:
        settings = su.parse_options(text)
    except ProtocolViolation as exc:
        check(exc.sqlstate, "a ProtocolViolation without SQLSTATE")
        return
    check(all(settings), "parse_options gave a setting with an empty name")


def startup_packet(data: bytes) -> None:
    buf = data
    for _ in range(MAX_PACKETS):
        try:
            length = su.startup_length(buf)
        except ProtocolViolation:
            return
        if length is None or len(buf) < length:
            return
        packet_bytes, buf = buf[:length], buf[length:]
        try:
            packet = su.parse_startup(packet_bytes)
        except ProtocolViolation as exc:
            check(exc.sqlstate and str(exc), "a ProtocolViolation without SQLSTATE or message")
            return
        again = _rebuild(packet)
        check(again is None or again == packet_bytes, f"{type(packet).__name__} does not build back to its bytes")
        if isinstance(packet, su.StartupMessage):
            check(packet.user, "a StartupMessage without a user was accepted")
            _options(packet.options)
            split = su.split_options(packet.options)
            check(all(arg is not None for arg in split), "split_options gave None")
        # The parser takes any buffer type the transports hand it.
        for kind in (bytearray, memoryview):
            check(su.parse_startup(kind(packet_bytes)) == packet, f"parse_startup({kind.__name__}) differs")
