"""The ``<event_log>.inputs`` file: a header, then length-prefixed input records.

Header: ``MAGIC`` (8 bytes), u32 little-endian length ``L``, ``L`` bytes of UTF-8 JSON (sorted
keys): ``format_version``, ``code_version``, ``config_digest``, the redacted ``pgdog_toml`` and
``users_toml`` texts (None when the daemon ran without that file), ``config_path``,
``users_path``, ``event_log`` (as resolved), the redacted ``env`` (``PGDOG_*``, ``RUST_LOG``,
``USER``), ``log_header`` (the event log's header fields, which tie the two files together),
``max_bytes``, ``redactions`` (how many secret values were replaced) and ``reloadable``.

Records: ``RECORD_HEAD`` = ``(kind u8, machine u8, id u64, now_ns i64, length u32)`` then
``length`` payload bytes. ``now_ns`` is the reactor clock the code saw at that input (the clock only
moves at recorded points while capturing, see ``loop.clock.SampledClock``); ``now_ns / 1e9`` is that
reading exactly. Machines are those of the event log (1 client, 2 server) plus ``CANCEL`` for the
connection that carries a CancelRequest to PostgreSQL; loop-level records use machine 0.

The last record is ``FINISH`` (the daemon stopped cleanly) or ``END`` (capture stopped early, the
payload says why: ``budget`` when ``capture_max_bytes`` was used up, ``error`` after a write
failure). A file without either was cut short (the daemon died); its complete records still count.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

__all__ = [
    "CANCEL",
    "CONNECT",
    "FORMAT_VERSION",
    "LOOP",
    "MAGIC",
    "RECORD_HEAD",
    "CaptureFile",
    "CaptureHeader",
    "In",
    "InputRecord",
    "Span",
    "decode_connect",
    "decode_redacted",
    "encode_connect",
    "encode_redacted",
    "read_capture",
]

MAGIC = b"PGDOGIN\x00"
FORMAT_VERSION = 1
_LEN = struct.Struct("<I")
RECORD_HEAD = struct.Struct("<BBQqI")  # 22 bytes
HEAD_SIZE = RECORD_HEAD.size

LOOP = 0  # machine of loop-level records (timers, callbacks, entropy, connects, signals)
CANCEL = 64  # machine of a CancelRequest connection (id: the number Reactor.connect gave its connector)


class In(IntEnum):
    """Input record kinds (``kind`` u8)."""

    INIT = 1  # the daemon is built: the first clock reading
    START = 2  # Daemon.start(); payload u32 listener port (0: a unix socket)
    ACCEPT = 3  # client ``id`` accepted
    READ = 4  # payload: the exact bytes the connection received in one read
    READ_REDACTED = 5  # the same with password bytes masked; see encode_redacted
    EOF = 6  # the peer shut down its side
    ERROR = 7  # the socket failed; payload i32 errno
    CLOSED = 8  # our close() completed after its output was flushed
    CONNECT = 9  # machine/id: the server (or CANCEL and the connector number); payload see encode_connect
    TIMER = 10  # id = the timer's heap seq; payload f64 deadline
    CALLBACKS = 11  # the queued callbacks run now; payload u32 count
    ENTROPY = 12  # payload: the bytes drawn
    SIGNAL = 13  # id = signal number
    TLS = 14  # this connection switched to TLS: nothing more of it is recorded
    CONFIG = 15  # a reload read these files; payload JSON {pgdog_toml, users_toml, env, digest}
    CONFIG_FAILED = 16  # a reload failed; payload: the error text
    FINISH = 17  # the daemon stopped; the last record
    END = 18  # capture stopped early; payload: why ("budget", "error")


class InputRecord(NamedTuple):
    kind: int
    machine: int
    id: int
    now_ns: int
    payload: bytes


class Span(NamedTuple):
    """Masked bytes of a READ_REDACTED chunk: ``length`` bytes at ``offset``, which are bytes
    ``body_pos``... of a PasswordMessage body of ``body_len`` bytes."""

    offset: int
    length: int
    body_pos: int
    body_len: int


_SPANS = struct.Struct("<H")
_SPAN = struct.Struct("<IIII")
_CONNECT = struct.Struct("<iBQ")
CONNECT_DEFERRED = 1  # completed inside Reactor.connect; delivered from the callback queue
CONNECT_TIMER = 2  # a timeout timer had been armed
CONNECT_TIMEOUT = 4  # failed by the connector's own timeout (TimeoutError)
CONNECT = (CONNECT_DEFERRED, CONNECT_TIMER, CONNECT_TIMEOUT)


def encode_redacted(spans: list[Span], data: bytes | bytearray) -> bytes:
    """u16 span count, ``count`` x (u32 offset, length, body_pos, body_len), then the chunk."""
    return _SPANS.pack(len(spans)) + b"".join(_SPAN.pack(*s) for s in spans) + bytes(data)


def decode_redacted(payload: bytes) -> tuple[list[Span], bytes]:
    (count,) = _SPANS.unpack_from(payload, 0)
    off = _SPANS.size
    spans = [Span(*_SPAN.unpack_from(payload, off + i * _SPAN.size)) for i in range(count)]
    return spans, payload[off + count * _SPAN.size :]


def encode_connect(errno: int, flags: int, seq: int) -> bytes:
    """i32 errno (0: connected), u8 flags (``CONNECT_*``), u64 the connector's number."""
    return _CONNECT.pack(errno, flags, seq)


def decode_connect(payload: bytes) -> tuple[int, int, int]:
    errno, flags, seq = _CONNECT.unpack(payload)
    return errno, flags, seq


@dataclass
class CaptureHeader:
    format_version: int = FORMAT_VERSION
    code_version: str = ""
    config_digest: str = ""
    pgdog_toml: str | None = None
    users_toml: str | None = None
    config_path: str | None = None
    users_path: str | None = None
    event_log: str = ""
    env: dict[str, str] = field(default_factory=dict)
    log_header: dict[str, Any] = field(default_factory=dict)
    max_bytes: int = 0
    redactions: int = 0
    #: The daemon could re-read its files (SIGHUP, admin RELOAD); False for an embedded Daemon.
    reloadable: bool = True

    def encode(self) -> bytes:
        payload = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode("utf-8")
        return MAGIC + _LEN.pack(len(payload)) + payload

    @classmethod
    def decode(cls, data: bytes) -> tuple[CaptureHeader, int]:
        """(header, bytes used); ValueError with a readable message when it is not one."""
        fixed = len(MAGIC) + _LEN.size
        if len(data) < fixed or data[: len(MAGIC)] != MAGIC:
            raise ValueError("not a pgdog-ev input capture (bad magic)")
        (length,) = _LEN.unpack_from(data, len(MAGIC))
        if len(data) < fixed + length:
            raise ValueError("truncated input capture header")
        try:
            fields = json.loads(data[fixed : fixed + length].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"corrupt input capture header: {exc}") from None
        if not isinstance(fields, dict):
            raise ValueError("corrupt input capture header: not an object")
        version = fields.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported input capture format version {version!r} (this build reads "
                             f"{FORMAT_VERSION})")
        known = set(cls.__dataclass_fields__)
        try:
            header = cls(**{k: v for k, v in fields.items() if k in known})
        except TypeError as exc:
            raise ValueError(f"corrupt input capture header: {exc}") from None
        return header, fixed + length


@dataclass
class CaptureFile:
    header: CaptureHeader
    records: list[InputRecord]
    #: "finished" (FINISH seen), the END reason ("budget", "error"), or "cut" (neither).
    ending: str
    #: A partial record at the end was ignored.
    truncated: bool


def read_capture(path: str) -> CaptureFile:
    """Read a whole capture file; ValueError when it is not one, OSError when unreadable."""
    with open(path, "rb") as f:
        data = f.read()
    header, pos = CaptureHeader.decode(data)
    records: list[InputRecord] = []
    unpack = RECORD_HEAD.unpack_from
    end = len(data)
    ending = "cut"
    truncated = False
    while pos < end:
        if end - pos < HEAD_SIZE:
            truncated = True
            break
        kind, machine, ident, now_ns, length = unpack(data, pos)
        start = pos + HEAD_SIZE
        if start + length > end:
            truncated = True
            break
        records.append(InputRecord(kind, machine, ident, now_ns, data[start : start + length]))
        pos = start + length
        if kind == In.FINISH:
            ending = "finished"
        elif kind == In.END:
            ending = records[-1].payload.decode("utf-8", "replace") or "end"
    return CaptureFile(header, records, ending, truncated)
