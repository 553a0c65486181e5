"""``pgdog-ev events``: decode, filter and print an event log as a timeline.

Filters combine with AND.  ``--machine`` and ``--kind`` take names (case-insensitive) or numbers,
comma-separated for several.  ``--since``/``--until`` are seconds relative to the start of the log
(the ``+12.345678s`` column).  Exit status: 0 ok, 1 unreadable/corrupt file, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import deque
from collections.abc import Iterator

from pgdog_ev.eventlog.format import format_record, record_to_json, relative_seconds
from pgdog_ev.eventlog.reader import LogStream, rotated_set
from state.events import Kind, LogHeader, Machine, Record

__all__ = ["events_main"]

PROG = "pgdog-ev events"


class _UsageError(Exception):
    pass


def _parse_names(text: str, enum_cls: type, what: str) -> set[int]:
    out: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.lstrip("-").isdigit():
            out.add(int(item))
            continue
        try:
            out.add(int(enum_cls[item.upper()]))
        except KeyError:
            choices = ", ".join(m.name.lower() for m in enum_cls)
            raise _UsageError(f"unknown {what} {item!r} (choose from: {choices}, or a number)") from None
    if not out:
        raise _UsageError(f"empty --{what}")
    return out


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Print a pgdog-ev event log as a timeline.")
    p.add_argument("file", metavar="FILE", help="event log file")
    p.add_argument("--all-rotated", action="store_true", help="also read FILE.N ... FILE.1 (oldest first)")
    p.add_argument(
        "--machine", help="machine name(s)/number(s): " + ",".join(m.name.lower() for m in Machine)
    )
    p.add_argument("--id", type=int, help="machine instance id")
    p.add_argument("--kind", help="record kind name(s)/number(s), e.g. transition,checkout")
    p.add_argument(
        "--since", type=float, metavar="SECONDS", help="only records at or after this relative time"
    )
    p.add_argument(
        "--until", type=float, metavar="SECONDS", help="only records at or before this relative time"
    )
    p.add_argument("--tail", type=int, metavar="N", help="only the last N matching records")
    p.add_argument("--format", choices=("text", "json"), default="text")
    return p


def _empty(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False  # reported when it is opened


def _matching(
    stream: LogStream,
    machines: set[int] | None,
    ident: int | None,
    kinds: set[int] | None,
    since: float | None,
    until: float | None,
) -> Iterator[Record]:
    header = stream.header
    for rec in stream:
        if machines is not None and rec.machine not in machines:
            continue
        if ident is not None and rec.id != ident:
            continue
        if kinds is not None and rec.kind not in kinds:
            continue
        if since is not None or until is not None:
            t = relative_seconds(rec, header)
            if since is not None and t < since:
                continue
            if until is not None and t > until:
                continue
        yield rec


def events_main(argv: list[str]) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        machines = _parse_names(args.machine, Machine, "machine") if args.machine else None
        kinds = _parse_names(args.kind, Kind, "kind") if args.kind else None
        if args.tail is not None and args.tail < 0:
            raise _UsageError("--tail must be >= 0")
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    paths = rotated_set(args.file) if args.all_rotated else [args.file]
    if not paths:
        print(f"{PROG}: error: {args.file}: no such file (nor rotated files)", file=sys.stderr)
        return 1
    if args.all_rotated:
        # A daemon killed between rotating and writing the new header leaves an empty file; it
        # holds nothing, so it must not stop the files around it from being read.
        paths = [p for p in paths if not _empty(p)]
        if not paths:
            print(f"{PROG}: error: {args.file}: no events (every file is empty)", file=sys.stderr)
            return 1

    as_json = args.format == "json"

    def render(rec: Record, header: LogHeader) -> str:
        if as_json:
            return json.dumps(record_to_json(rec, header))
        return format_record(rec, header)

    out = sys.stdout
    tail: deque[str] | None = deque(maxlen=args.tail) if args.tail is not None else None
    status = 0
    try:
        for path in paths:
            try:
                with LogStream(path) as stream:
                    for rec in _matching(stream, machines, args.id, kinds, args.since, args.until):
                        line = render(rec, stream.header)
                        if tail is not None:
                            tail.append(line)
                        else:
                            out.write(line + "\n")
                    if stream.truncated:
                        print(f"{PROG}: warning: {path}: truncated trailing record ignored", file=sys.stderr)
            except BrokenPipeError:
                raise
            except OSError as exc:
                print(f"{PROG}: error: {path}: {exc.strerror or exc}", file=sys.stderr)
                status = 1
                break
            except ValueError as exc:
                print(f"{PROG}: error: {path}: {exc}", file=sys.stderr)
                status = 1
                break
        if tail is not None:
            for line in tail:
                out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        # Reader went away (e.g. `| head`): stop quietly and keep the interpreter from complaining.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    return status
