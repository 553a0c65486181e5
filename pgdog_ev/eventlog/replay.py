"""``pgdog-ev replay FILE``: an event log told as an incident timeline, or the state at one moment.

``pgdog-ev events`` prints records; ``replay`` is for the person debugging an incident.  It reads
the whole rotated set by default (``FILE.N`` ... ``FILE.1``, ``FILE``, oldest first), because an
incident rarely respects a rotation boundary, and marks each daemon run it finds (ids start again
after a restart).  Every line names machines as ``client:17``/``server:3``/``pool:2``/
``cluster:1`` and says what happened in words.

``--client/--server/--pool`` keep the records *about* those machines, not only the ones they
wrote: the pool's CHECKOUT of client 17, the server transition that names it, the records of the
server it holds while it holds it; for a pool also the records of its servers and of the clients
holding them.  Several filters add up (records about any of them).  Daemon-wide records (start,
reload, shutdown) are always kept, for context.  ``--at T`` prints the state of every machine at T
instead (see :mod:`pgdog_ev.eventlog.snapshot`).

Times (``--since``, ``--until``, ``--at``) are seconds from the start of the log (the ``+s``
column) or wall-clock ISO times.  Exit status: 0 ok, 1 unreadable or corrupt input, 2 usage error.

``--reexecute`` hands the log to the simulator (``sim.reexecute.reexecute_main``), which runs the
production machines again on the captured inputs; it lives in ``sim/`` and is imported only then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from pgdog_ev.eventlog.format import record_to_json
from pgdog_ev.eventlog.logset import Entry, Gap, LogSet, LogSetError, Run, RunStart
from pgdog_ev.eventlog.reader import rotated_set
from pgdog_ev.eventlog.snapshot import Focus, snapshot_json, snapshot_text
from pgdog_ev.eventlog.timeline import describe, subject
from pgdog_ev.eventlog.timespec import TimeSpec, parse_time, wall_text
from pgdog_ev.eventlog.world import Memberships, Mentions, World
from state import registry

__all__ = ["replay_main"]

PROG = "pgdog-ev replay"
REEXECUTE_FLAG = "--reexecute"


class _UsageError(Exception):
    pass


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Print a pgdog-ev event log as an incident timeline, or the state of every machine "
        "at one moment (--at). Reads the rotated files FILE.N ... FILE.1 before FILE (oldest first) "
        "by default; --no-rotated reads FILE alone.",
        epilog="TIME is seconds from the start of the log (the +s column, e.g. 12.5) or a wall-clock ISO "
        "time (e.g. 2026-11-21T10:00:03Z; UTC when no zone is given). Filters of different machines add "
        "up. Exit status: 0 ok, 1 unreadable or corrupt log, 2 usage error.",
    )
    p.add_argument("file", metavar="FILE", help="event log file (the live one; its rotated files are read too)")
    rot = p.add_mutually_exclusive_group()
    rot.add_argument("--all-rotated", action="store_true",
                     help="read FILE.N ... FILE.1 then FILE, oldest first (the default)")
    rot.add_argument("--no-rotated", action="store_true", help="read FILE only")
    for name in ("client", "server", "pool"):
        p.add_argument(f"--{name}", action="append", default=[], metavar="N",
                       help=f"only records about {name} N and the machines it deals with "
                       "(repeatable, or comma-separated)")
    p.add_argument("--since", metavar="TIME", help="only records at or after TIME")
    p.add_argument("--until", metavar="TIME", help="only records at or before TIME")
    p.add_argument("--at", metavar="TIME", help="print the state of every machine at TIME instead of a timeline")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default) or json: one object per line with named fields")
    p.add_argument("--wall", action="store_true", help="text: start each line with its wall-clock time too")
    p.add_argument(REEXECUTE_FLAG, action="store_true",
                   help="re-execute the log in the simulator (sim.reexecute) instead; other arguments go to it")
    return p


def _ids(values: list[str], what: str) -> frozenset[int]:
    out: set[int] = set()
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if not item.isdigit() or int(item) <= 0:
                raise _UsageError(f"--{what}: {item!r} is not a {what} id (a positive number)")
            out.add(int(item))
    if values and not out:
        raise _UsageError(f"--{what}: no id given")
    return frozenset(out)


def _time(text: str | None, option: str) -> TimeSpec | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise _UsageError(f"{option}: {exc}") from None


def _reexecute(argv: list[str]) -> int:
    """Hand over to the simulator's re-execution; argv without the flag."""
    rest = list(argv)
    rest.remove(REEXECUTE_FLAG)
    try:
        from sim.reexecute import reexecute_main
    except ModuleNotFoundError as exc:
        if exc.name not in ("sim", "sim.reexecute"):
            raise
        print(f"{PROG}: error: {REEXECUTE_FLAG} needs the simulator's re-execution (module sim.reexecute), "
              "which is not installed in this build", file=sys.stderr)
        return 2
    except ImportError as exc:
        if exc.name != "sim.reexecute" or "reexecute_main" not in str(exc):
            raise
        print(f"{PROG}: error: {REEXECUTE_FLAG}: sim.reexecute has no reexecute_main", file=sys.stderr)
        return 2
    return reexecute_main(rest)


class _Scan:
    """What a first pass over the files learns: each run's memberships (server -> pool,
    pool -> cluster), when each run started and the log's time span.

    It also reads every record once before anything is printed, so a corrupt file fails the
    command without half a timeline on the screen."""

    def __init__(self, logset: LogSet) -> None:
        self.memberships: dict[int, Memberships] = {}
        self.start: dict[int, float] = {}
        self.first_t: float | None = None
        self.last_t: float | None = None
        learn = None
        for item in logset.stream():
            if isinstance(item, Entry):
                if self.first_t is None:
                    self.first_t = item.t
                self.last_t = item.t
                assert learn is not None
                learn(item.rec)
            elif isinstance(item, RunStart):
                known = self.memberships[item.run.index] = Memberships()
                learn = known.learn
                self.start[item.run.index] = item.t


def _run_banner(run: Run, logset: LogSet, t: float) -> str:
    h = run.header
    restarted = " (the daemon restarted: ids start again)" if run.index > 1 else ""
    who = f"pgdog-ev {h.code_version or '?'} pid {h.pid}" + (f" on {h.hostname}" if h.hostname else "")
    digest = f", config {h.config_digest[:12]}" if h.config_digest else ""
    return (f"=== run {run.index} of {len(logset.runs)}{restarted}: {who}, log started "
            f"{wall_text(run.start_wall_ns)} ({t:+.6f}s){digest}")


def _run_json(run: Run, logset: LogSet, t: float) -> dict:
    h = run.header
    return {"type": "run", "run": run.index, "runs": len(logset.runs), "t": t,
            "wall": wall_text(run.start_wall_ns), "pid": h.pid, "hostname": h.hostname,
            "code_version": h.code_version, "config_digest": h.config_digest, "seed": h.seed,
            "files": list(run.paths)}


def _gap_text(gap: Gap) -> str:
    span = f"#{gap.first}" if gap.first == gap.last else f"#{gap.first}..#{gap.last}"
    if gap.at_start:
        return f"... records {span} of run {gap.run.index} are not in these files (rotated away before the oldest kept file)"
    return f"... records {span} of run {gap.run.index} are missing (a file of the set is missing or damaged)"


def _wanted(mentions: Mentions, focus: Focus) -> bool:
    if focus.all or mentions.daemon:
        return True
    return bool(
        (focus.clients and not focus.clients.isdisjoint(mentions.clients))
        or (focus.servers and not focus.servers.isdisjoint(mentions.servers))
        or (focus.pools and not focus.pools.isdisjoint(mentions.pools))
    )


def _timeline(
    logset: LogSet, scan: _Scan, focus: Focus, since: float | None, until: float | None, as_json: bool, wall: bool
) -> Iterator[str]:
    world = World()
    run: Run | None = None
    shown_run: Run | None = None
    run_start = 0.0
    pending_gaps: list[Gap] = []

    def heading() -> Iterator[str]:
        nonlocal shown_run
        assert run is not None
        if shown_run is not run:
            shown_run = run
            yield json.dumps(_run_json(run, logset, run_start)) if as_json else _run_banner(run, logset, run_start)
        for gap in pending_gaps:
            if as_json:
                yield json.dumps({"type": "gap", "run": gap.run.index, "first_seq": gap.first,
                                  "last_seq": gap.last, "rotated_away": gap.at_start})
            else:
                yield _gap_text(gap)
        pending_gaps.clear()

    everything = focus.all and since is None and until is None
    for item in logset.stream():
        if isinstance(item, RunStart):
            run, run_start = item.run, item.t
            world = World(scan.memberships.get(run.index))  # ids start again
            pending_gaps.clear()
            if everything:  # else a run is introduced by its first line shown
                yield from heading()
            continue
        if isinstance(item, Gap):
            pending_gaps.append(item)
            continue
        rec, t = item.rec, item.t
        in_window = (since is None or t >= since) and (until is None or t <= until)
        if in_window:
            mentions = world.mentions(rec)
            if _wanted(mentions, focus):
                yield from heading()
                subj, text = subject(rec), describe(rec, world)
                if as_json:
                    obj = {"type": "record", "run": item.run.index, **record_to_json(rec, item.run.header)}
                    obj.update(t=t, subject=subj, text=text, clients=list(mentions.clients),
                               servers=list(mentions.servers), pools=list(mentions.pools),
                               clusters=list(mentions.clusters))
                    yield json.dumps(obj)
                else:
                    stamp = f"{wall_text(logset.base_wall_ns + round(t * 1e9))} " if wall else ""
                    yield f"{stamp}{t:+.6f}s  {subj:<11} {text}"
        world.apply(rec, t)


def _snapshot(logset: LogSet, scan: _Scan, focus: Focus, at: float, as_json: bool) -> Iterator[str]:
    chosen = logset.runs[0]
    for run in logset.runs:
        if scan.start.get(run.index, 0.0) <= at:
            chosen = run
    world = World(scan.memberships.get(chosen.index))
    inside = False
    for item in logset.stream():
        if isinstance(item, RunStart):
            if inside:
                break
            inside = item.run is chosen
            continue
        if not inside or not isinstance(item, Entry):
            continue
        if item.t > at:
            break
        world.apply(item.rec, item.t)
    wall = wall_text(logset.base_wall_ns + round(at * 1e9))
    h = chosen.header
    ends = ""
    if scan.last_t is not None and at > scan.last_t:
        ends = f"; the log ends at {scan.last_t:+.6f}s"
    elif world.records == 0 and scan.first_t is not None:
        ends = f"; the first record is at {scan.first_t:+.6f}s"
    last = f", last record #{world.last_seq} at {world.last_t:+.6f}s" if world.last_t is not None else ""
    if as_json:
        head = {"at": at, "wall": wall, "run": chosen.index, "runs": len(logset.runs), "pid": h.pid,
                "last_seq": world.last_seq, "last_t": world.last_t, "log_first_t": scan.first_t,
                "log_last_t": scan.last_t}
        for obj in snapshot_json(world, at, head, focus):
            yield json.dumps(obj)
        return
    heading = (f"state at {at:+.6f}s ({wall}), run {chosen.index} of {len(logset.runs)} "
               f"(pid {h.pid}){last}{ends}")
    yield from snapshot_text(world, at, heading, focus)


def _write(lines: Iterator[str], out: TextIO) -> int:
    n = 0
    for line in lines:
        out.write(line + "\n")
        n += 1
    return n


def replay_main(argv: list[str]) -> int:
    args_before_sep = argv[: argv.index("--")] if "--" in argv else argv
    if REEXECUTE_FLAG in args_before_sep:
        return _reexecute(argv)
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        focus = Focus(_ids(args.client, "client"), _ids(args.server, "server"), _ids(args.pool, "pool"))
        since, until, at = _time(args.since, "--since"), _time(args.until, "--until"), _time(args.at, "--at")
        if at is not None and (since is not None or until is not None):
            raise _UsageError("--at prints one moment: it does not go with --since/--until")
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    registry.load_all()
    paths = [args.file] if args.no_rotated else rotated_set(args.file)
    if not paths:
        print(f"{PROG}: error: {args.file}: no such file (nor rotated files)", file=sys.stderr)
        return 1
    out = sys.stdout
    try:
        logset = LogSet(paths)
        scan = _Scan(logset)
        base = logset.base_wall_ns
        as_json = args.format == "json"
        if at is not None:
            lines = _snapshot(logset, scan, focus, at.relative(base), as_json)
        else:
            lines = _timeline(
                logset, scan, focus,
                since.relative(base) if since is not None else None,
                until.relative(base) if until is not None else None,
                as_json, args.wall,
            )
        if not _write(lines, out):
            print(f"{PROG}: no records match", file=sys.stderr)
        out.flush()
    except LogSetError as exc:
        out.flush()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly and keep the interpreter from complaining.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    for warning in logset.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return 0
