"""The files of one event log, read as one stream and grouped into daemon runs.

A rotated set (``FILE.N ... FILE.1 FILE``) can hold more than one daemon run: the sink rotates
an existing file away at startup, so after a restart ``FILE.1`` ends the previous run.  Files of
one run carry the very same header (the sink writes the header bytes it made at startup into
every file), so a change of header is a change of run.  Machine ids and sequence numbers start
again in every run; a reader that kept them across a restart would mix two unrelated client 3s.

Times: every record gets one ``t``, seconds from the start of the oldest run read, computed
through the wall clock (``clock_epoch_ns + now_ns``).  Within a single run that is exactly the
``+12.345678s`` column of ``pgdog-ev events``; across runs it still orders records on one axis,
which each run's own monotonic clock could not.

Damage: all headers are checked before anything is printed, so an unreadable file fails the whole
command at once (:class:`LogSetError`) instead of after half a timeline.  A record whose
sequence number does not grow is corruption (the writer numbers records consecutively and writes
them in order), and raises too.  Softer findings (an empty file, a truncated last record, missing
sequence numbers) are collected as warnings and shown, because the rest is still worth reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from pgdog_ev.eventlog.reader import LogStream
from state.events import RECORD_SIZE, LogHeader, Record

__all__ = ["Entry", "Gap", "LogSet", "LogSetError", "Run", "RunStart"]


class LogSetError(Exception):
    """A file cannot be read or is corrupt; the message names it and says why."""


@dataclass
class Run:
    """One daemon run: consecutive files with the same header."""

    index: int  # 1, 2, ... in the order read (oldest first)
    header: LogHeader
    paths: list[str] = field(default_factory=list)

    @property
    def start_wall_ns(self) -> int:
        """Wall-clock time at which this run's log started."""
        return self.header.clock_epoch_ns + self.header.monotonic_start_ns


@dataclass(frozen=True, slots=True)
class RunStart:
    """Marks the first record of a run in the stream."""

    run: Run
    t: float  # the run's log start, in seconds from the base


@dataclass(frozen=True, slots=True)
class Gap:
    """Sequence numbers ``first`` .. ``last`` of ``run`` are in none of the files read."""

    run: Run
    first: int
    last: int
    at_start: bool  # before the oldest record of the run: rotated away, the usual case


@dataclass(frozen=True, slots=True)
class Entry:
    """One record, with its run and its time in seconds from the base."""

    run: Run
    rec: Record
    t: float


class LogSet:
    """The given files (oldest first), opened and checked; iterate :meth:`stream` for the rest."""

    def __init__(self, paths: list[str]) -> None:
        if not paths:
            raise LogSetError("no event log files")
        self.paths = list(paths)
        self.warnings: list[str] = []
        self.runs: list[Run] = []
        self._files: list[tuple[str, Run]] = []
        for path in self.paths:
            header = self._header(path)
            if header is None:
                continue
            if not self.runs or self.runs[-1].header != header:
                self.runs.append(Run(len(self.runs) + 1, header))
            self.runs[-1].paths.append(path)
            self._files.append((path, self.runs[-1]))
        if not self.runs:
            raise LogSetError(f"{self.paths[-1]}: no events (every file is empty)")
        self.base_wall_ns = self.runs[0].start_wall_ns

    def _header(self, path: str) -> LogHeader | None:
        try:
            if os.path.isdir(path):
                raise LogSetError(f"{path}: is a directory, not an event log")
            if os.path.getsize(path) == 0:
                # A daemon that stopped before its first flush leaves an empty file: nothing to
                # read, but nothing wrong with the other files either.
                self._warn(f"{path}: empty file skipped")
                return None
            with LogStream(path, chunk_records=1) as stream:
                return stream.header
        except OSError as exc:
            raise LogSetError(f"{path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise LogSetError(f"{path}: {exc}") from None

    def _warn(self, text: str) -> None:
        if text not in self.warnings:  # a second pass finds the same things
            self.warnings.append(text)

    def seconds(self, run: Run, now_ns: int) -> float:
        """Seconds from the base of a record of ``run`` stamped ``now_ns``."""
        return (run.header.clock_epoch_ns + now_ns - self.base_wall_ns) / 1e9

    def stream(self) -> Iterator[RunStart | Gap | Entry]:
        """Every record in order, with a RunStart before each run's first and a Gap wherever
        sequence numbers are missing.  Raises LogSetError on corruption or a read error."""
        current: Run | None = None
        expect = 0
        for path, run in self._files:
            if run is not current:
                current = run
                expect = 0
                yield RunStart(run, self.seconds(run, run.header.monotonic_start_ns))
            index = 0
            try:
                with LogStream(path) as stream:
                    for rec in stream:
                        seq = rec.seq
                        if seq != expect:
                            if seq < expect:
                                raise LogSetError(
                                    f"{path}: corrupt record (number {index} in the file): sequence number "
                                    f"{seq} after {expect - 1} (numbers only grow)"
                                )
                            yield Gap(run, expect, seq - 1, expect == 0)
                        expect = seq + 1
                        index += 1
                        yield Entry(run, rec, (run.header.clock_epoch_ns + rec.now_ns - self.base_wall_ns) / 1e9)
                    if stream.truncated:
                        self._warn(f"{path}: truncated last record ignored (shorter than {RECORD_SIZE} bytes)")
            except OSError as exc:
                raise LogSetError(f"{path}: {exc.strerror or exc}") from None
            except ValueError as exc:
                raise LogSetError(f"{path}: {exc}") from None
