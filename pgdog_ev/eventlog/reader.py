"""Read event-log files written by :class:`pgdog_ev.eventlog.filesink.RotatingFileSink`.

A trailing partial record (the daemon died mid-write) is ignored and reported through the
``truncated`` flag.  A bad header raises ValueError; I/O problems raise OSError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from state.events import HEADER_MAGIC, RECORD, RECORD_SIZE, LogHeader, Record

__all__ = ["LogFile", "LogStream", "read_file", "read_files", "rotated_set"]

_PREFIX_LEN = len(HEADER_MAGIC) + 4
_make = Record._make


@dataclass
class LogFile:
    header: LogHeader
    records: list[Record] = field(repr=False)
    truncated: bool
    path: str


class LogStream:
    """Streaming reader: ``header`` is available at once; iterate for records in constant memory.

    ``truncated`` is meaningful after iteration finished.  Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], chunk_records: int = 8192) -> None:
        self.path = os.fspath(path)
        self.truncated = False
        self._chunk = max(1, chunk_records) * RECORD_SIZE
        self._f = open(self.path, "rb")  # noqa: SIM115
        try:
            prefix = self._f.read(_PREFIX_LEN)
            if len(prefix) == _PREFIX_LEN and prefix.startswith(HEADER_MAGIC):
                length = int.from_bytes(prefix[len(HEADER_MAGIC) :], "little")
                prefix += self._f.read(length)
            self.header, consumed = LogHeader.decode(prefix)
            assert consumed == len(prefix)
        except BaseException:
            self._f.close()
            raise

    def __iter__(self) -> Iterator[Record]:
        f = self._f
        rest = b""
        while True:
            data = f.read(self._chunk)
            if not data:
                break
            if rest:
                data = rest + data
            whole = len(data) - len(data) % RECORD_SIZE
            rest = data[whole:]
            if whole:
                yield from map(_make, RECORD.iter_unpack(memoryview(data)[:whole]))
        self.truncated = bool(rest)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> LogStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_file(path: str | os.PathLike[str]) -> LogFile:
    with LogStream(path) as stream:
        records = list(stream)
        return LogFile(stream.header, records, stream.truncated, stream.path)


def read_files(paths: list[str]) -> list[LogFile]:
    return [read_file(p) for p in paths]


def rotated_set(path: str | os.PathLike[str]) -> list[str]:
    """Existing files of a rotated log, oldest first: ``path.N, ..., path.1, path``."""
    path = os.fspath(path)
    directory, base = os.path.split(path)
    pattern = re.compile(re.escape(base) + r"\.([0-9]+)")
    try:
        names = os.listdir(directory or ".")
    except OSError:
        names = []
    numbered = sorted(
        ((int(m.group(1)), name) for name in names if (m := pattern.fullmatch(name))), reverse=True
    )
    out = [os.path.join(directory, name) if directory else name for _, name in numbered]
    if os.path.exists(path):
        out.append(path)
    return out
