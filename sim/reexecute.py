"""``pgdog-ev replay --reexecute FILE [-c pgdog.toml] [-u users.toml]``: run a captured daemon again.

FILE is an event log written with ``capture_inputs = true``; its inputs are in ``FILE.inputs``
(:mod:`pgdog_ev.capture`). The production :class:`~pgdog_ev.daemon.Daemon` is built again, with
the captured configuration, on a reactor that has no sockets and no clock of its own
(:mod:`sim.reexec_io`): every captured input is fed in order with the clock set to the reading
the captured run saw, entropy returns the captured draws, timers fire when a captured firing names
them and queued callbacks run at the captured callback points. The transitions the re-executed
daemon emits are then compared with the event log's (kind, machine, id, from, to, a, b; not times
or sequence numbers; the log's notes about the capture itself are left out).

A capture that stopped early (``capture_max_bytes``, a write error, the daemon killed, or a
connection that switched to TLS, whose bytes are not recorded) re-executes up to there and is
compared with the same prefix of the log.

Exit status: 0 identical, 1 divergent, 2 usage error or unreadable input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import struct
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from pgdog_ev.capture.format import (
    CANCEL,
    CONNECT_DEFERRED,
    CaptureFile,
    In,
    InputRecord,
    decode_connect,
    decode_redacted,
    read_capture,
)
from pgdog_ev.capture.recorder import INPUTS_SUFFIX
from pgdog_ev.config import Config, ConfigError
from pgdog_ev.daemon import Daemon
from pgdog_ev.eventlog.format import format_record
from pgdog_ev.eventlog.reader import LogStream, rotated_set
from pgdog_ev.metrics import Endpoints
from pgdog_ev.sdnotify import SystemdNotifier
from sim.reexec_config import ConfigSource, ReexecError, password_body
from sim.reexec_io import FakeSocket, ReplayReactor
from state.client import ClientState
from state.events import EventLog, Kind, LogHeader, Machine, Record, decode_records
from state.reasons import Reason

__all__ = ["Outcome", "Reexecution", "compare", "reexecute_main"]

PROG = "pgdog-ev replay --reexecute"
#: The event log's notes about the capture itself: the re-executed daemon does not capture.
CAPTURE_NOTES = frozenset({int(Reason.CAPTURE_STARTED), int(Reason.CAPTURE_FULL), int(Reason.CAPTURE_FAILED)})
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_CLIENT = int(Machine.CLIENT)
_SERVER = int(Machine.SERVER)
#: Inputs consumed while another input is handled, not fed in their own right.
_NESTED = frozenset({In.ENTROPY, In.CONFIG, In.CONFIG_FAILED})


class ReplayDaemon(Daemon):
    """The production daemon, minus what serves the outside world: no metrics endpoint."""

    def _open_endpoints(self) -> Endpoints:
        return Endpoints()


class _ProblemLog(logging.Handler):
    """The daemon's internal-error log lines (a caught exception) are problems of the re-execution."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "internal error" in record.getMessage():
            detail = f" ({record.exc_info[1]!r})" if record.exc_info else ""
            self.problems.append(f"logged: {record.getMessage()}{detail}")


@dataclass
class Outcome:
    fed: int = 0
    stop: str = ""
    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unreexecutable: list[str] = field(default_factory=list)
    timers_fired: int = 0
    timers_unmatched: int = 0
    callbacks: int = 0


class Reexecution:
    """Feeds one capture through a fresh daemon; :meth:`run` returns what it emitted."""

    def __init__(self, capture: CaptureFile, source: ConfigSource, config: Config,
                 logged_in: frozenset[int] = frozenset()) -> None:
        self.capture = capture
        self.source = source
        self.config = config
        self.logged_in = logged_in
        self.records = capture.records
        self.pos = -1
        self.out = Outcome()
        self.reactor: ReplayReactor | None = None
        self.daemon: ReplayDaemon | None = None
        self.events = EventLog(capacity=1 << 16, sink=self._collect)
        self._entropy: deque[tuple[int, bytes]] = deque()
        self._configs: deque[InputRecord] = deque()
        self._connects: dict[int, tuple[int, int]] = {}
        self._finals: dict[tuple[int, int], list[int]] = {}
        self._passwords: dict[int, bytes | None] = {}
        for index, rec in enumerate(self.records):
            kind = rec.kind
            if kind == In.ENTROPY:
                self._entropy.append((index, rec.payload))
            elif kind in (In.CONFIG, In.CONFIG_FAILED):
                self._configs.append(rec)
            elif kind == In.CONNECT:
                code, flags, seq = decode_connect(rec.payload)
                self._connects.setdefault(seq, (code, flags))
            elif kind in (In.CLOSED, In.ERROR):
                self._finals.setdefault((rec.machine, rec.id), []).append(index)

    # -- what the stand-ins ask --------------------------------------------------------------

    def _collect(self, view: memoryview) -> None:
        self.out.records += decode_records(bytes(view))

    def close_is_deferred(self, key: tuple[int, int]) -> bool:
        return any(index > self.pos for index in self._finals.get(key, ()))

    def connect_result(self, seq: int) -> tuple[int, int] | None:
        return self._connects.get(seq)

    def _draw(self, n: int) -> bytes:
        if not self._entropy:
            self.out.problems.append(f"input #{self.pos}: entropy: {n} bytes asked for, none left in the capture")
            return bytes(n)
        index, data = self._entropy.popleft()
        if index < self.pos:
            self.out.problems.append(f"input #{self.pos}: entropy draw captured during input #{index}")
        if len(data) != n:
            self.out.problems.append(f"input #{self.pos}: entropy: {n} bytes asked for, captured draw "
                                     f"(input #{index}) has {len(data)}")
            data = (data + bytes(n))[:n]
        return data

    def _reload_config(self) -> Config:
        if not self._configs:
            self.out.problems.append(f"input #{self.pos}: a reload with no captured configuration")
            raise ConfigError("no captured configuration for this reload")
        rec = self._configs.popleft()
        if rec.kind == In.CONFIG_FAILED:
            raise ConfigError(rec.payload.decode("utf-8", "replace"))
        texts = json.loads(rec.payload)
        try:
            config = self.source.build(texts, texts["digest"], f"reload at input #{self.pos}")
            self.out.notes += self.source.notes
            return config
        except ReexecError:
            pass
        try:
            # Files given with -c/-u describe the start; a reload read other files.
            return ConfigSource(None, None).build(texts, texts["digest"], f"reload at input #{self.pos}")
        except ReexecError as exc:
            self.out.problems.append(f"input #{self.pos}: {exc}")
            raise ConfigError(str(exc)) from None

    def _exception(self, exc: BaseException, context: str) -> None:
        self.out.problems.append(f"input #{self.pos}: exception in {context}: {exc!r}")

    # -- running ------------------------------------------------------------------------------

    def _build(self, rec: InputRecord) -> None:
        header = self.capture.header
        reactor = self.reactor = ReplayReactor(self, rec.now_ns / 1e9)
        fields = {f.name for f in dataclasses.fields(LogHeader)}
        log_header = LogHeader(**{k: v for k, v in header.log_header.items() if k in fields})
        self.daemon = ReplayDaemon(
            self.config,
            reload_config=self._reload_config if header.reloadable else None,
            entropy=self._draw,
            reactor=reactor,
            header=log_header,
            events=self.events,
            notifier=SystemdNotifier(None, pid=0),
        )
        reactor.exception_sink = self._exception

    def run(self) -> Outcome:
        logger = logging.getLogger("pgdog_ev")
        handler = _ProblemLog(self.out.problems)
        propagate = logger.propagate
        logger.addHandler(handler)
        logger.propagate = False  # the daemon's warnings are the captured run's, not news
        try:
            self._run()
        finally:
            logger.removeHandler(handler)
            logger.propagate = propagate
        self.events.flush()
        if self.reactor is not None:
            self.out.timers_fired = self.reactor.timers_fired
            self.out.timers_unmatched = self.reactor.timers_unmatched
            self.out.callbacks = self.reactor.callbacks_run
        return self.out

    def _run(self) -> None:
        out = self.out
        for index, rec in enumerate(self.records):
            self.pos = index
            kind = rec.kind
            if kind in _NESTED:
                continue
            if kind == In.CONNECT and decode_connect(rec.payload)[1] & CONNECT_DEFERRED:
                continue
            if kind == In.INIT:
                self._build(rec)
                out.fed += 1
                continue
            reactor = self.reactor
            if reactor is None:
                out.problems.append(f"input #{index}: {_kind(kind)} before INIT")
                out.stop = "no INIT record"
                return
            reactor.set_time(rec.now_ns / 1e9)
            if kind == In.TLS:
                what = "client" if rec.machine == _CLIENT else "server"
                out.stop = f"{what} {rec.id} switched to TLS at input #{index}"
                return
            if kind == In.END:
                return
            out.fed += 1
            self._feed(index, rec, reactor)
        if not out.stop:
            out.stop = self.capture.ending

    def _feed(self, index: int, rec: InputRecord, reactor: ReplayReactor) -> None:
        kind = rec.kind
        daemon = self.daemon
        assert daemon is not None
        if kind == In.TIMER:
            (when,) = _F64.unpack(rec.payload)
            reactor.fire_timer(rec.id, when)
        elif kind == In.CALLBACKS:
            reactor.run_callbacks()
        elif kind in (In.READ, In.READ_REDACTED, In.EOF, In.ERROR, In.CLOSED):
            transport = reactor.transports.get((rec.machine, rec.id))
            if transport is None or transport.closed:
                state = "unknown" if transport is None else "closed"
                self.out.problems.append(f"input #{index}: {In(kind).name} for {state} connection "
                                         f"{_name(rec.machine)}:{rec.id}")
                return
            if kind == In.READ:
                transport.feed(rec.payload)
            elif kind == In.READ_REDACTED:
                transport.feed(self._unmask(index, rec, transport))
            elif kind == In.EOF:
                transport.feed_eof()
            elif kind == In.ERROR:
                (code,) = _I32.unpack(rec.payload)
                transport.feed_error(OSError(code, os.strerror(code)))
            else:
                transport.feed_closed()
        elif kind == In.CONNECT:
            code, flags, seq = decode_connect(rec.payload)
            connector = reactor.connectors.get(seq)
            if connector is None:
                self.out.problems.append(f"input #{index}: CONNECT of {_name(rec.machine)}:{rec.id} (connect #{seq}), "
                                         "never started here")
                return
            if _tag_key(connector.tag, seq) != (rec.machine, rec.id):
                self.out.problems.append(f"input #{index}: connect #{seq} was {_name(rec.machine)}:{rec.id} in the "
                                         f"captured run, {connector.tag!r} here")
            connector.complete(code, flags)
        elif kind == In.ACCEPT:
            daemon._accept(FakeSocket(f"client#{rec.id}"), ("replay", rec.id))  # type: ignore[arg-type]
            if (rec.machine, rec.id) not in reactor.transports:
                self.out.problems.append(f"input #{index}: accepted client {rec.id} got another id here")
        elif kind == In.START:
            (port,) = _U32.unpack(rec.payload)
            reactor.listen_port = port or None
            daemon.start()
        elif kind == In.SIGNAL:
            if not reactor.deliver_signal(rec.id):
                self.out.problems.append(f"input #{index}: signal {rec.id} has no handler here")
        elif kind == In.FINISH:
            daemon._finish()
        else:
            self.out.problems.append(f"input #{index}: unknown input kind {kind}")

    def _unmask(self, index: int, rec: InputRecord, transport: Any) -> bytes:
        spans, data = decode_redacted(rec.payload)
        chunk = bytearray(data)
        cid = rec.id
        session = getattr(transport.get_protocol(), "session", None)
        for span in spans:
            if span.body_pos == 0:
                body = None
                if cid in self.logged_in:
                    body = password_body(session, span.body_len)
                    if body is None:
                        why = (f"client {cid}: its masked password cannot be rebuilt "
                               "(give the real users.toml with -u)")
                        if why not in self.out.unreexecutable:
                            self.out.unreexecutable.append(why)
                self._passwords[cid] = body
            body = self._passwords.get(cid)
            if body is not None:
                chunk[span.offset : span.offset + span.length] = body[span.body_pos : span.body_pos + span.length]
        return bytes(chunk)


def _name(machine: int) -> str:
    return {_CLIENT: "client", _SERVER: "server", CANCEL: "cancel"}.get(machine, str(machine))


def _tag_key(tag: Any, seq: int) -> tuple[int, int]:
    """The (machine, id) the recorder writes for a connector's tag (see InputCapture.on_connect)."""
    if isinstance(tag, tuple):
        return tag[0], tag[1]
    return (tag or 0), seq


def _kind(kind: int) -> str:
    try:
        return In(kind).name
    except ValueError:
        return f"kind {kind}"


# --- the event log side ------------------------------------------------------------------------


@dataclass
class LoggedRun:
    records: list[Record]
    paths: list[str]
    truncated: bool
    header: LogHeader


def read_run(path: str, want: dict[str, Any]) -> LoggedRun:
    """The records of the daemon run whose header is ``want``, from ``path`` and its rotated files."""
    if not os.path.exists(path):
        raise ReexecError(f"{path}: no such event log")
    chosen: list[str] = []
    header: LogHeader | None = None
    for p in rotated_set(path):
        try:
            with LogStream(p) as stream:
                h = stream.header
        except (OSError, ValueError) as exc:
            if p == path:
                raise ReexecError(f"{path}: {exc}") from None
            continue
        if {k: v for k, v in dataclasses.asdict(h).items() if k in want} == want:
            chosen.append(p)
            header = h
    if header is None:
        raise ReexecError(f"{path}: the input capture belongs to another daemon run than this event log "
                          "(the log was rotated or restarted since)")
    records: list[Record] = []
    truncated = False
    for p in chosen:
        try:
            with LogStream(p) as stream:
                records += stream
                truncated = stream.truncated
        except (OSError, ValueError) as exc:
            raise ReexecError(f"{p}: {exc}") from None
    return LoggedRun(records, chosen, truncated, header)


def logged_in_clients(records: Sequence[Record]) -> frozenset[int]:
    """Clients whose authentication succeeded in the log."""
    return frozenset(
        r.id for r in records
        if r.kind == Kind.TRANSITION and r.machine == _CLIENT and r.frm == ClientState.AUTH and r.to != ClientState.CLOSED
    )


def _key(r: Record) -> tuple[int, ...]:
    return (r.kind, r.machine, r.id, r.frm, r.to, r.a, r.b)


def _is_capture_note(r: Record) -> bool:
    return r.kind == Kind.NOTE and r.machine == Machine.DAEMON and r.a in CAPTURE_NOTES


@dataclass
class Comparison:
    compared: int
    divergence: int | None  # index (in the filtered sequences) of the first difference
    logged: list[Record]
    replayed: list[Record]
    note: str = ""


def compare(logged: Sequence[Record], replayed: Sequence[Record], *, complete: bool) -> Comparison:
    """First difference of the two record sequences; ``complete``: both cover the whole run, so
    one being longer is a difference too (otherwise the shorter is compared as a prefix)."""
    logged = [r for r in logged if not _is_capture_note(r)]
    replayed = list(replayed)
    n = min(len(logged), len(replayed))
    for i in range(n):
        if _key(logged[i]) != _key(replayed[i]):
            return Comparison(i, i, logged, replayed)
    if len(logged) == len(replayed):
        return Comparison(n, None, logged, replayed)
    if complete:
        return Comparison(n, n, logged, replayed,
                          note="the event log has more records" if len(logged) > n else "re-execution emitted more")
    side = "the event log goes on past the captured inputs" if len(logged) > n else \
        "the event log ends before re-execution did"
    return Comparison(n, None, logged, replayed, note=side)


# --- the command -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Re-execute a daemon run captured with capture_inputs = true: feed FILE.inputs "
        "through the production state machines and compare the transitions with the event log FILE.",
        epilog="Exit status: 0 identical, 1 divergent, 2 usage error or unreadable input.",
    )
    p.add_argument("file", metavar="FILE", help="the event log (its inputs are FILE.inputs)")
    p.add_argument("-c", "--config", metavar="PGDOG_TOML",
                   help="the real pgdog.toml instead of the captured (redacted) one")
    p.add_argument("-u", "--users", metavar="USERS_TOML",
                   help="the real users.toml instead of the captured (redacted) one: needed to re-execute "
                   "SCRAM logins and masked cleartext passwords")
    p.add_argument("--inputs", metavar="PATH", help="the input capture (default FILE.inputs)")
    p.add_argument("--context", type=int, default=4, metavar="N", help="records shown around a divergence")
    return p


def _preflight(capture: CaptureFile, source: ConfigSource, logged: Sequence[Record], config: Config) -> list[str]:
    """What the redacted configuration will not let re-execute, known before running."""
    notes: list[str] = []
    if "users.toml" not in source.redacted and "pgdog.toml" not in source.redacted:
        return notes
    auth = config.general.auth_type
    clients = sorted(logged_in_clients(logged))
    if auth == "scram" and clients and "users.toml" in source.redacted:
        shown = ", ".join(map(str, clients[:10])) + (" ..." if len(clients) > 10 else "")
        notes.append(f"clients {shown}: logged in with SCRAM, which needs the real users.toml (-u)")
    # PostgreSQL's first answers: 'N'/'S' to an SSLRequest, then AuthenticationSASL naming the mechanism.
    scram_servers: list[int] = []
    reads: dict[int, int] = {}
    for rec in capture.records:
        if rec.kind == In.READ and rec.machine == _SERVER and reads.get(rec.id, 0) < 3:
            reads[rec.id] = reads.get(rec.id, 0) + 1
            if rec.payload[:1] == b"R" and b"SCRAM-SHA-256" in rec.payload[:64] and rec.id not in scram_servers:
                scram_servers.append(rec.id)
    if scram_servers:
        shown = ", ".join(map(str, scram_servers[:10])) + (" ..." if len(scram_servers) > 10 else "")
        files = " and ".join(source.redacted)
        notes.append(f"servers {shown}: PostgreSQL asked for SCRAM, which needs the real passwords "
                     f"({files} held in the capture are redacted; give them with -c/-u)")
    return notes


def _ending(capture: CaptureFile, outcome: Outcome) -> str:
    stop = outcome.stop or capture.ending
    return {
        "finished": "the daemon stopped cleanly",
        "budget": "capture_max_bytes was used up (the run is re-executed up to there)",
        "error": "a write error stopped the capture (re-executed up to there)",
        "cut": "the capture ends without FINISH (the daemon did not stop cleanly)",
    }.get(stop, stop)


def _show(out: TextIO, title: str, records: Sequence[Record], at: int, context: int, header: LogHeader) -> None:
    print(f"  {title}:", file=out)
    lo, hi = max(0, at - context), min(len(records), at + context + 1)
    if lo >= hi:
        print("      (no record)", file=out)
    for i in range(lo, hi):
        mark = ">" if i == at else " "
        print(f"    {mark} {format_record(records[i], header)}", file=out)
    if at >= len(records):
        print("    > (no record here)", file=out)


def reexecute_main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    inputs = args.inputs or args.file + INPUTS_SUFFIX
    try:
        try:
            capture = read_capture(inputs)
        except FileNotFoundError:
            raise ReexecError(f"{inputs}: no input capture (was capture_inputs = true?)") from None
        except (OSError, ValueError) as exc:
            raise ReexecError(f"{inputs}: {exc}") from None
        want = capture.header.log_header
        if not want:
            raise ReexecError(f"{inputs}: the capture names no event log run")
        run = read_run(args.file, want)
        source = ConfigSource(args.config, args.users)
        h = capture.header
        texts = {"pgdog_toml": h.pgdog_toml, "users_toml": h.users_toml, "config_path": h.config_path,
                 "users_path": h.users_path, "env": h.env, "event_log": h.event_log}
        config = source.build(texts, h.config_digest, "start")
        start_notes = list(source.notes)
        if not capture.records or capture.records[0].kind != In.INIT:
            raise ReexecError(f"{inputs}: the capture holds no inputs")
    except ReexecError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return 2
    logged = run.records
    first_seq = logged[0].seq if logged else 0
    if first_seq != 0:
        print(f"{PROG}: error: {args.file}: the first records of this run were rotated away (it starts at "
              f"#{first_seq}); raise event_log_keep or event_log_max_bytes", file=err)
        return 2
    unreexecutable = _preflight(capture, source, logged, config)
    outcome = Reexecution(capture, source, config, logged_in_clients(logged)).run()
    outcome.unreexecutable[:0] = unreexecutable
    outcome.notes[:0] = start_notes
    complete = outcome.stop == "finished" and not run.truncated and not capture.truncated
    result = compare(logged, outcome.records, complete=complete)

    print(f"re-execution of {args.file}", file=out)
    print(f"  inputs: {outcome.fed} fed of {len(capture.records)} captured; {_ending(capture, outcome)}", file=out)
    print(f"  timers fired: {outcome.timers_fired}"
          + (f" ({outcome.timers_unmatched} captured firings had no timer here: timers of parts that do not "
             "run here, such as the metrics endpoint or systemd pings, or a divergence)"
             if outcome.timers_unmatched else "")
          + f"; callbacks run: {outcome.callbacks}", file=out)
    print(f"  records compared: {result.compared} (event log {len(result.logged)}, re-execution "
          f"{len(result.replayed)}{'; ' + result.note if result.note else ''})", file=out)
    for note in outcome.notes:
        print(f"  note: {note}", file=out)
    for note in outcome.unreexecutable:
        print(f"  not re-executable: {note}", file=out)
    shown = outcome.problems[:20]
    for problem in shown:
        print(f"  problem: {problem}", file=out)
    if len(outcome.problems) > len(shown):
        print(f"  problem: ... {len(outcome.problems) - len(shown)} more", file=out)
    if result.divergence is None:
        print("  result: identical", file=out)
        return 0
    at = result.divergence
    seq = result.logged[at].seq if at < len(result.logged) else None
    print(f"  result: DIVERGENT at record {at}" + (f" (event log #{seq})" if seq is not None else ""), file=out)
    _show(out, "event log", result.logged, at, args.context, run.header)
    _show(out, "re-execution", result.replayed, at, args.context, run.header)
    return 1


def main() -> None:  # pragma: no cover - for python -m sim.reexecute
    sys.exit(reexecute_main())


if __name__ == "__main__":  # pragma: no cover
    main()
