"""The daemon side of input capture: ``loop.recorder`` hooks that write ``<event_log>.inputs``.

Installed by the daemon before anything else is built (so entropy drawn while building the pools
is recorded too), it swaps the reactor's clock for a :class:`loop.clock.SampledClock`, which
moves only at the start of a pass and before timers are collected; every input record carries
that reading, so re-execution can give the code the very times it saw. (Timers may fire up to one
pass late compared with a free-running clock: a pass takes microseconds to a few milliseconds.)

What is recorded, each with the clock: client accepts; the bytes of every read of a client,
server or CancelRequest connection, chunk by chunk, with client passwords masked (see
:mod:`.redact`); EOFs and socket errors caused by the peer (not the ``connection_lost(None)``
that follows our own close, which re-execution derives); closes that waited for their output;
connect results; timer firings (heap seq and deadline); the start of each pass's callback phase;
signals; entropy draws; reloads. A connection that switches to TLS gets a ``TLS`` record and
nothing more of its bytes: re-execution stops there.

Budget: records that start the handling of an input check ``capture_max_bytes`` first; when it is
used up an ``END budget`` record is written and capture stops (re-execution then covers the
prefix). Records made while an input is being handled (entropy, a connect completed at once, a
reload's files) are always written, so the file may pass the budget by those few bytes. A write
error stops capture the same way (``END error`` if it can still be written) and is logged once.

Cost when capture is off: the reactor checks ``recorder is None`` three times per pass, a
transport once per read, and nothing else changes.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import os
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from loop.clock import SampledClock
from loop.timers import TimerHandle
from pgdog_ev.capture.format import (
    CONNECT_DEFERRED,
    CONNECT_TIMEOUT,
    CONNECT_TIMER,
    HEAD_SIZE,
    LOOP,
    RECORD_HEAD,
    CaptureHeader,
    In,
    Span,
    encode_connect,
    encode_redacted,
)
from pgdog_ev.capture.redact import Markers, PasswordScanner, mask, redact_env, redact_toml_text
from state.events import LogHeader, Machine

if TYPE_CHECKING:
    from pgdog_ev.config import Config

__all__ = ["INPUTS_SUFFIX", "InputCapture", "capture_header"]

#: The capture of event log ``X`` is ``X.inputs``.
INPUTS_SUFFIX = ".inputs"

_CLIENT = int(Machine.CLIENT)
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


def _errno(exc: BaseException | None) -> int:
    if isinstance(exc, TimeoutError) and not getattr(exc, "errno", None):
        return errno_mod.ETIMEDOUT
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) else errno_mod.EIO


class InputCapture:
    """Writes every input of the reactor it is installed on (``install``) to ``path``."""

    def __init__(
        self,
        path: str,
        header: CaptureHeader,
        max_bytes: int,
        *,
        auth_type: Callable[[], str],
        past_auth: Callable[[Any], bool],
        on_stop: Callable[[str, str], None] | None = None,
        buffer_size: int = 1 << 20,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.active = False
        self.stopped: str | None = None
        self.written = 0
        self.records = 0
        self.error: str | None = None
        self._auth_type = auth_type
        self._past_auth = past_auth
        self._on_stop = on_stop
        self._scanners: dict[int, PasswordScanner] = {}
        self._reactor: Any = None
        self.clock: SampledClock | None = None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        except OSError:
            pass
        self._file: Any = os.fdopen(fd, "wb", buffering=buffer_size)
        head = header.encode()
        self._file.write(head)
        self.written = len(head)
        self.active = True

    # -- installing ----------------------------------------------------------------------

    def install(self, reactor: Any) -> None:
        """Take over the reactor's clock and hooks; records INIT (the first clock reading)."""
        self._reactor = reactor
        self.clock = SampledClock(reactor.clock)
        reactor.clock = self.clock
        reactor.recorder = self
        self._write(In.INIT, LOOP, 0, b"", top=False)

    def _detach(self) -> None:
        reactor = self._reactor
        if reactor is not None and reactor.recorder is self:
            reactor.recorder = None
            # Back to the free-running clock; sampled time never runs ahead of it.
            assert self.clock is not None
            reactor.clock = self.clock.base

    # -- writing -------------------------------------------------------------------------

    def _write(self, kind: int, machine: int, ident: int, payload: bytes | bytearray | memoryview = b"",
               *, top: bool = True) -> None:
        if not self.active:
            return
        size = HEAD_SIZE + len(payload)
        if top and self.written + size > self.max_bytes:
            self.stop("budget")
            return
        assert self.clock is not None
        try:
            self._file.write(RECORD_HEAD.pack(kind, machine, ident, self.clock.ns, len(payload)))
            if payload:
                self._file.write(payload)
        except OSError as exc:
            self._fail(exc)
            return
        self.written += size
        self.records += 1

    def _fail(self, exc: OSError) -> None:
        self.error = f"input capture write to {self.path} failed: {exc.strerror or exc}; capture stopped"
        self.stop("error")

    def stop(self, reason: str) -> None:
        """Write the END marker (if the file still takes it) and stop recording."""
        if not self.active:
            return
        self.active = False
        self.stopped = reason
        if reason != "error":
            payload = reason.encode()
            assert self.clock is not None
            try:
                self._file.write(RECORD_HEAD.pack(In.END, LOOP, 0, self.clock.ns, len(payload)) + payload)
                self.written += HEAD_SIZE + len(payload)
                self._file.flush()
            except OSError as exc:
                self.error = f"input capture write to {self.path} failed: {exc.strerror or exc}"
        self._scanners.clear()
        self._detach()
        if self._on_stop is not None:
            self._on_stop(reason, self.error or "")

    def flush(self) -> None:
        if self.active:
            try:
                self._file.flush()
            except OSError as exc:
                self._fail(exc)

    def close(self) -> None:
        self.active = False
        self._detach()
        f = self._file
        if f is not None:
            self._file = None
            try:
                f.close()
            except OSError:
                pass

    # -- the daemon's inputs -------------------------------------------------------------

    def on_start(self, port: int | None) -> None:
        if self.clock is not None:
            self.clock.sample()
        self._write(In.START, LOOP, 0, _U32.pack(port or 0))

    def on_finish(self) -> None:
        if self.clock is not None and self.active:
            self.clock.sample()
        self._write(In.FINISH, LOOP, 0, top=False)

    def on_accept(self, cid: int, live: Callable[[], Any] | None = None) -> None:
        """Client ``cid`` accepted; ``live`` (ids of the clients still open) lets the password
        scanners of clients that left before logging in be dropped now and then."""
        if not self.active:
            return
        self._write(In.ACCEPT, _CLIENT, cid)
        if not self.active:
            return
        scanners = self._scanners
        if live is not None and len(scanners) >= 256 and cid % 256 == 0:
            keep = live()
            for old in [c for c in scanners if c not in keep]:
                del scanners[old]
        scanners[cid] = PasswordScanner(redact=self._auth_type() != "scram")

    def on_tls(self, machine: int, ident: int) -> None:
        if machine == _CLIENT:
            self._scanners.pop(ident, None)
        self._write(In.TLS, machine, ident, top=False)

    def on_config(self, payload: bytes) -> None:
        self._write(In.CONFIG, LOOP, 0, payload, top=False)

    def on_config_failed(self, message: str) -> None:
        self._write(In.CONFIG_FAILED, LOOP, 0, message.encode("utf-8", "replace"), top=False)

    def entropy(self, source: Callable[[int], bytes]) -> Callable[[int], bytes]:
        """``source`` with every draw recorded."""

        def draw(n: int) -> bytes:
            data = source(n)
            if self.active:
                self._write(In.ENTROPY, LOOP, 0, data, top=False)
            return data

        return draw

    # -- loop.recorder hooks ----------------------------------------------------------------

    def on_pass(self) -> None:
        self.clock.sample()  # type: ignore[union-attr]

    def on_timers(self) -> None:
        self.clock.sample()  # type: ignore[union-attr]

    def on_timer(self, handle: TimerHandle) -> None:
        self._write(In.TIMER, LOOP, handle.seq, _F64.pack(handle.when))

    def on_callbacks(self, count: int) -> None:
        self._write(In.CALLBACKS, LOOP, 0, _U32.pack(count))

    @staticmethod
    def _key(transport: Any) -> tuple[int, int] | None:
        return getattr(transport.get_protocol(), "capture_id", None)

    def on_read(self, transport: Any, data: memoryview) -> None:
        protocol = transport.get_protocol()
        key = getattr(protocol, "capture_id", None)
        if key is None or not self.active:
            return
        machine, ident = key
        if machine == _CLIENT:
            scanner = self._scanners.get(ident)
            if scanner is not None:
                if scanner.dead or self._past_auth(protocol):
                    del self._scanners[ident]
                else:
                    spans = scanner.feed(data)
                    if spans:
                        self._write_redacted(ident, spans, data)
                        return
        self._write(In.READ, machine, ident, data)

    def _write_redacted(self, cid: int, spans: list[Span], data: memoryview) -> None:
        chunk = bytearray(data)
        for span in spans:
            end = span.offset + span.length
            chunk[span.offset : end] = mask(chunk[span.offset : end])
        self._write(In.READ_REDACTED, _CLIENT, cid, encode_redacted(spans, chunk))

    def on_eof(self, transport: Any) -> None:
        key = self._key(transport)
        if key is not None:
            self._write(In.EOF, key[0], key[1])

    def on_error(self, transport: Any, exc: Exception) -> None:
        key = self._key(transport)
        if key is not None:
            self._write(In.ERROR, key[0], key[1], _I32.pack(_errno(exc)))

    def on_closed(self, transport: Any) -> None:
        key = self._key(transport)
        if key is not None:
            self._write(In.CLOSED, key[0], key[1])

    def on_connect(self, connector: Any, exc: Exception | None, deferred: bool, timer: bool) -> None:
        flags = (CONNECT_DEFERRED if deferred else 0) | (CONNECT_TIMER if timer else 0)
        code = 0
        if exc is not None:
            code = _errno(exc)
            if isinstance(exc, TimeoutError):
                flags |= CONNECT_TIMEOUT
        tag = connector.tag
        # A (machine, id) tag names the connection; a machine alone is numbered by its connector.
        machine, ident = tag if isinstance(tag, tuple) else (tag or LOOP, connector.seq)
        self._write(In.CONNECT, machine, ident, encode_connect(code, flags, connector.seq), top=not deferred)

    def on_signal(self, signum: int) -> None:
        self._write(In.SIGNAL, LOOP, signum)


def _read_text(path: str | None, markers: Markers) -> tuple[str | None, int]:
    if path is None:
        return None, 0
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    except (OSError, UnicodeDecodeError):
        return None, 0
    return redact_toml_text(raw, markers)


def config_texts(config: Config, env: Mapping[str, str], markers: Markers | None = None) -> tuple[dict[str, Any], int]:
    """The redacted files (and environment) a Config was read from, as the capture stores them.

    A file that cannot be read again or rewritten is stored as None: re-execution then needs it
    given on its command line."""
    markers = markers if markers is not None else Markers()
    pgdog, n1 = _read_text(config.config_path, markers)
    users, n2 = _read_text(config.users_path, markers)
    env_out, n3 = redact_env(env, markers)
    texts = {"pgdog_toml": pgdog, "users_toml": users, "config_path": config.config_path,
             "users_path": config.users_path, "env": env_out, "digest": config.digest,
             "event_log": config.general.event_log}
    return texts, n1 + n2 + n3


def capture_header(config: Config, log_header: LogHeader, env: Mapping[str, str], code_version: str,
                   max_bytes: int, reloadable: bool) -> CaptureHeader:
    texts, redactions = config_texts(config, env)
    return CaptureHeader(
        code_version=code_version,
        config_digest=config.digest,
        pgdog_toml=texts["pgdog_toml"],
        users_toml=texts["users_toml"],
        config_path=config.config_path,
        users_path=config.users_path,
        event_log=config.general.event_log,
        env=texts["env"],
        log_header=dataclasses.asdict(log_header),
        max_bytes=max_bytes,
        redactions=redactions,
        reloadable=reloadable,
    )
