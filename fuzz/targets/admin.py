"""The admin console: command text into commands, and commands run against a daemon.

``admin_parser``: the text of an admin Query through ``split_statements`` and ``parse``; a SET
goes on through ``apply_override`` as the console's SET does. Oracles: only AdminSyntaxError
(parse) and ConfigError (SET) escape; a statement piece splits back into itself; a command's
verb is upper case (an empty one, from ``''``, is merely unknown) and a SET has a key and a non-empty value; a SET that is accepted
survives SHOW CONFIG -> SET (its rendered value sets the same [general]).

``admin_console``: the same text through ``AdminConsole.query`` of a daemon built in process
from the example configuration (a reactor on a manual clock, no listener, no server
connections), after the same bytes went through the SQL analysis cache as a client's Query (so
SHOW QUERY_CACHE shows what a client can put there). Oracles: no exception; the answer splits into whole messages, every DataRow has as
many values as the RowDescription before it has columns, every ErrorResponse has a SQLSTATE and
a message, and the answer ends with CommandComplete, EmptyQueryResponse or ErrorResponse.
"""

from __future__ import annotations

from pathlib import Path

from fuzz.oracle import check
from fuzz.source import ByteSource
from fuzz.targets.config import EXAMPLES
from pgdog_ev.admin.parser import AdminSyntaxError, parse, split_statements
from pgdog_ev.config import Config, ConfigError, General, load_config_text
from pgdog_ev.config.general_set import apply_override
from pgdog_ev.config.schema import general_spec
from pgdog_ev.wire import backend as be
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer

GENERAL = General()


def admin_parser(data: bytes) -> None:
    text = ByteSource(data).text()
    for piece in split_statements(text):
        check(piece and piece == piece.strip(), f"split_statements gave {piece!r}")
        check(split_statements(piece) == [piece], f"{piece!r} splits again into {split_statements(piece)}")
        try:
            command = parse(piece)
        except AdminSyntaxError as exc:
            check(str(exc), "an AdminSyntaxError without a message")
            continue
        check(command.verb == command.verb.upper(), f"verb {command.verb!r} is not upper case")
        if command.verb != "SET":
            continue
        check(len(command.args) == 2 and command.args[1], f"SET args {command.args}")
        key, value = command.args
        try:
            updated = apply_override(GENERAL, key, value)
        except ConfigError as exc:
            check(exc.file == "SET" and str(exc), f"admin SET error without its source: {exc}")
            continue
        spec = general_spec(key)
        check(spec is not None, f"SET {key} accepted an unknown key")
        assert spec is not None
        rendered = spec.render(getattr(updated, spec.name))
        # Quoted, as a person copying SHOW CONFIG's text would (the quotes keep its spaces).
        check(apply_override(updated, key, f"'{rendered}'") == updated, f"SET {key} TO '{rendered}' (SHOW's text) differs")


class _AdminClient:
    """What the console reads of an admin client."""

    id = 9001
    user = "admin"
    peer = "127.0.0.1:5555"

    def __init__(self) -> None:
        self.errors = 0
        self.replies: list[bytes] = []

    def admin_reply(self, now: float, payload: bytes) -> None:
        self.replies.append(payload)


_config: Config | None = None


def _example_config() -> Config:
    global _config
    if _config is None:
        pgdog = Path(EXAMPLES / "pgdog.toml").read_text()
        users = Path(EXAMPLES / "users.toml").read_text()
        _config = load_config_text(pgdog, users, entropy=lambda n: bytes(n), env={})
    return _config


def check_answer(payload: bytes) -> None:
    framer = Framer(1 << 30)
    try:
        messages = framer.feed(payload)
    except ProtocolViolation as exc:
        raise AssertionError(f"the console answered a bad message: {exc}") from exc
    check(framer.pending() == 0, "the console answered a partial message")
    check(messages, "the console answered nothing")
    columns: int | None = None
    for mtype, body in messages:
        if mtype == be.ROW_DESCRIPTION:
            columns = len(be.parse_row_description(body))
        elif mtype == be.DATA_ROW:
            check(columns is not None and len(be.parse_data_row(body)) == columns, "a DataRow does not fit its columns")
        elif mtype in (be.ERROR_RESPONSE, be.NOTICE_RESPONSE):
            fields = be.parse_error_fields(body)
            check(fields.get("C") and fields.get("M"), f"an error without SQLSTATE or message: {fields}")
        elif mtype == be.COMMAND_COMPLETE:
            be.parse_command_complete(body)
            columns = None
    check(messages[-1][0] in (be.COMMAND_COMPLETE, be.EMPTY_QUERY_RESPONSE, be.ERROR_RESPONSE),
          f"the answer ends with {chr(messages[-1][0])!r}")


def admin_console(data: bytes) -> None:
    from loop.clock import ManualClock
    from loop.reactor import Reactor
    from pgdog_ev.daemon import Daemon
    from pgdog_ev.sql.analysis import default_cache
    from state.client_routing import decode_text
    from state.events import EventLog

    # The input is also a Query some client sent earlier: SHOW QUERY_CACHE lists it as the
    # proxy decoded it (leniently: bad bytes become lone surrogates).
    cache = default_cache()
    cache.clear()
    cache.analyze(decode_text(data))
    text = ByteSource(data).text()
    reactor = Reactor(clock=ManualClock(100.0))
    try:
        daemon = Daemon(_example_config(), reactor=reactor, events=EventLog(capacity=1024), entropy=bytes)
        client = _AdminClient()
        reply = daemon.console.query(reactor.now(), client, text)  # type: ignore[arg-type]
        if reply is None:
            reactor.run_until(lambda: bool(client.replies), 0.5)
            if not client.replies:
                return  # PAUSE waits for servers that never come home: nothing to check
            reply = client.replies[0]
        check_answer(reply)
    finally:
        reactor.close()
