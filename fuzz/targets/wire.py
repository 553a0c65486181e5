"""Both directions of the wire after startup: client to proxy, server to proxy.

Input layout: five parameter bytes (chunking seed, callback rules, message size limit, action
table, run threshold), then the byte stream. A seed of five zero bytes followed by captured
traffic is that traffic read the way the proxy reads it (its tables, no size limit).

Oracles: the scanner under the whole stream, the seeded chunking and single bytes, each with the
C twin, the Python twin and no run skipping, matches the message-by-message model (callbacks,
forwarded bytes, errors); the Framer finds the same messages; every complete message goes
through the codec's parser for its type and, where a builder exists, rebuilds to the same bytes;
the two passrun twins stop at the same place from every message boundary.
"""

from __future__ import annotations

from fuzz.chunks import chunkings
from fuzz.roundtrip import BACKEND, FRONTEND, FRONTEND_EXTRA, check_message, check_statement_name
from fuzz.scanner_model import Rules, check_framer, check_scanner, check_twins
from fuzz.source import ByteSource
from pgdog_ev.wire import frontend as fe
from state.client import CLIENT_TABLE, MESSAGE_TABLE
from state.server import PROBE_TABLE, SERVER_TABLE

MAX_LENS = (1 << 30, 8192, 64, 4)
SKIP_MINS = (0, 5, 64)
ALL_PASS = bytearray(256)
FRONTEND_TABLES = (MESSAGE_TABLE, CLIENT_TABLE, ALL_PASS)
BACKEND_TABLES = (SERVER_TABLE, PROBE_TABLE, ALL_PASS)


def _stream(data: bytes, tables: tuple[bytearray, ...]) -> list[tuple[int, bytes]]:
    src = ByteSource(data)
    seed = src.byte()
    rules = Rules(src.byte())
    max_len = src.choice(MAX_LENS)
    table = src.choice(tables)
    skip_min = src.choice(SKIP_MINS)
    stream = src.rest()
    ways = chunkings(stream, seed)
    messages, error = check_scanner(stream, ways, table, rules, max_len, skip_min)
    check_framer(stream, ways, max_len, messages, error)

    def starts() -> list[int]:
        out, pos = [0], 0
        for _mtype, body in messages[:64]:
            pos += 5 + len(body)
            out.append(pos)
        return [*out, min(seed, len(stream))]

    check_twins(stream, table, max_len, starts)
    return messages


def frontend_stream(data: bytes) -> None:
    """Client-to-proxy bytes after startup."""
    for mtype, body in _stream(data, FRONTEND_TABLES):
        check_message(mtype, body, FRONTEND, FRONTEND_EXTRA)
        if mtype == fe.BIND:
            check_statement_name(body)


def backend_stream(data: bytes) -> None:
    """Server-to-proxy bytes, from the authentication request on."""
    for mtype, body in _stream(data, BACKEND_TABLES):
        check_message(mtype, body, BACKEND, {})
