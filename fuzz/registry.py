"""The fuzz targets by name: where each lives and how large its inputs may grow.

Targets are named by module path and imported on demand, so the atheris worker can start
instrumenting before the code under test is first imported, and ``python -m fuzz list`` stays
cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import NamedTuple

TargetFunction = Callable[[bytes], None]


class Target(NamedTuple):
    name: str
    ref: str  # "module:function"
    # Largest input libFuzzer makes (-max_len); seeds may be larger and are then cut.
    max_len: int
    summary: str

    def load(self) -> TargetFunction:
        module, _, function = self.ref.partition(":")
        return getattr(importlib.import_module(module), function)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("frontend_stream", "fuzz.targets.wire:frontend_stream", 16384,
               "client-to-proxy messages: scanner vs model under chunkings, C/Python twins, parsers"),
        Target("backend_stream", "fuzz.targets.wire:backend_stream", 16384,
               "server-to-proxy messages: scanner vs model under chunkings, C/Python twins, parsers"),
        Target("startup_packet", "fuzz.targets.startup:startup_packet", 4096,
               "StartupMessage, SSLRequest, GSSENCRequest, CancelRequest, options; build round trip"),
        Target("client_login", "fuzz.targets.session:client_login", 4096,
               "a new client's first bytes through the client machine (trust/cleartext/md5/scram)"),
        Target("client_session", "fuzz.targets.session:client_session", 8192,
               "a logged-in client's bytes through the client and server machines"),
        Target("server_session", "fuzz.targets.session:server_session", 8192,
               "a server's answer bytes through the server and client machines"),
        Target("copy_in", "fuzz.targets.copy:copy_in", 8192,
               "CopyData/CopyDone/CopyFail streams through a COPY FROM STDIN"),
        Target("sql_analyze", "fuzz.targets.sql:sql_analyze", 2048,
               "session-state SQL analysis: never raises, cache = uncached, prefilter sound"),
        Target("sql_route", "fuzz.targets.sql:sql_route", 2048,
               "read/write routing: never raises, cache = stages by hand, fast path = parser"),
        Target("set_parser", "fuzz.targets.settings:set_parser", 2048,
               "SET/RESET/SET LOCAL/set_config values as fixed points; settings tracker vs model"),
        Target("config_files", "fuzz.targets.config:config_files", 16384,
               "pgdog.toml + users.toml bytes through the file loader"),
        Target("config_mutate", "fuzz.targets.config:config_mutate", 256,
               "structured edits of the example configs through the loader"),
        Target("admin_parser", "fuzz.targets.admin:admin_parser", 1024,
               "admin command text: split, parse, SET through apply_override"),
        Target("admin_console", "fuzz.targets.admin:admin_console", 1024,
               "admin command text through the console of an in-process daemon"),
        Target("tls_stream", "fuzz.targets.tls:tls_stream", 4096,
               "TLS from a hostile client: first flights, plaintext after a handshake, bad records"),
        Target("worker_channel", "fuzz.targets.channel:worker_channel", 8192,
               "the workers' length-prefixed JSON frames: any chunking, bad frames, fixed points"),
    )
}


def get(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise SystemExit(f"unknown fuzz target {name!r}; targets: {', '.join(TARGETS)}") from None
