"""Rotating file sink for :class:`state.events.EventLog`.

File layout: one :class:`~state.events.LogHeader` at the start of every file, followed by 48-byte
records.  ``path`` is the live file; on rotation ``path`` -> ``path.1`` -> ``path.2`` ... and at
most ``keep`` rotated files are kept (``keep=0`` keeps none).  At startup any existing ``path`` is
rotated away first, so every file holds exactly one header, at its start.

Files are split at record boundaries and never grow past ``max_bytes`` (unless the header plus a
single record is already larger).  Disk errors never raise into the proxy: the first ``OSError``
is reported once through ``on_error``, ``broken`` becomes True and later writes are dropped.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from importlib import metadata

from state.events import RECORD_SIZE, LogHeader

__all__ = ["DEFAULT_MAX_BYTES", "RotatingFileSink", "make_header"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def make_header(config_digest: str = "", seed: int = 0, code_version: str | None = None) -> LogHeader:
    """Header for a production log whose ``now`` values come from ``time.monotonic()``."""
    if code_version is None:
        try:
            code_version = metadata.version("pgdog-ev")
        except metadata.PackageNotFoundError:
            code_version = "unknown"
    mono = time.monotonic_ns()
    wall = time.time_ns()
    return LogHeader(
        code_version=code_version,
        config_digest=config_digest,
        seed=seed,
        clock_epoch_ns=wall - mono,
        monotonic_start_ns=mono,
        pid=os.getpid(),
        hostname=socket.gethostname(),
    )


class RotatingFileSink:
    """Callable sink: ``sink(view)`` appends the bytes of ``view`` to the current log file."""

    def __init__(
        self,
        path: str,
        header: LogHeader,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = 4,
        on_error: Callable[[str], None] | None = None,
        buffer_size: int = 1 << 20,
    ) -> None:
        self.path = os.fspath(path)
        self.header = header
        self.max_bytes = max_bytes
        self.keep = max(0, keep)
        self.on_error = on_error
        self.broken = False
        self.error: str | None = None
        self.closed = False
        self.rotations = 0
        self.bytes_written = 0
        self._header_bytes = header.encode()
        self._buffer_size = buffer_size
        self._file = None
        self._size = 0
        try:
            if os.path.lexists(self.path):
                self._shift_files()
            self._open()
        except OSError as exc:
            self._fail("cannot open", exc)

    # -- internals ------------------------------------------------------------------------------
    def _shift_files(self) -> None:
        path = self.path
        if self.keep == 0:
            os.remove(path)
            return
        for i in range(self.keep, 1, -1):
            src = f"{path}.{i - 1}"
            if os.path.lexists(src):
                os.replace(src, f"{path}.{i}")
        os.replace(path, f"{path}.1")

    def _open(self) -> None:
        f = open(self.path, "wb", buffering=self._buffer_size)  # noqa: SIM115
        self._file = f
        f.write(self._header_bytes)
        self._size = len(self._header_bytes)

    def _rotate(self) -> None:
        f = self._file
        self._file = None
        if f is not None:
            f.close()
        self._shift_files()
        self._open()
        self.rotations += 1

    def _fail(self, what: str, exc: OSError) -> None:
        f = self._file
        self._file = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
        if self.broken:
            return
        self.broken = True
        self.error = f"event log {what} {self.path}: {exc.strerror or exc}; event logging to file disabled"
        if self.on_error is not None:
            try:
                self.on_error(self.error)
            except Exception:
                pass

    # -- sink API -------------------------------------------------------------------------------
    def __call__(self, view: memoryview | bytes | bytearray) -> None:
        f = self._file
        if f is None:
            return
        mv = memoryview(view).cast("B")
        n = mv.nbytes
        try:
            if self._size + n <= self.max_bytes:
                f.write(mv)
                self._size += n
                self.bytes_written += n
                return
            off = 0
            while off < n:
                take = (self.max_bytes - self._size) // RECORD_SIZE * RECORD_SIZE
                if take <= 0:
                    if self._size > len(self._header_bytes):
                        self._rotate()
                        continue
                    take = RECORD_SIZE  # a file always gets at least one record
                chunk = mv[off : off + take]
                assert self._file is not None
                self._file.write(chunk)
                self._size += len(chunk)
                self.bytes_written += len(chunk)
                off += len(chunk)
        except OSError as exc:
            self._fail("write to", exc)

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._fail("flush of", exc)

    def fsync(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                self._fail("fsync of", exc)

    def close(self) -> None:
        self.closed = True
        f = self._file
        if f is None:
            return
        try:
            f.flush()
        except OSError as exc:
            self._fail("flush of", exc)
            return
        self._file = None
        try:
            f.close()
        except OSError as exc:
            self._fail("close of", exc)

    def __enter__(self) -> RotatingFileSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
