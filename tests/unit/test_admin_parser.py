"""The admin console's command reader: splitting a Query into statements and each into a Command."""

from __future__ import annotations

import pytest

from pgdog_ev.admin.parser import AdminSyntaxError, Command, parse, split_statements


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SHOW POOLS", ["SHOW POOLS"]),
        ("SHOW POOLS;", ["SHOW POOLS"]),
        ("  PAUSE ; SHOW POOLS ;; ", ["PAUSE", "SHOW POOLS"]),
        ("", []),
        (" ; ;\n", []),
        ("SET application_name TO 'a;b'; RELOAD", ["SET application_name TO 'a;b'", "RELOAD"]),
        ('PAUSE "my;db"; RESUME "my;db"', ['PAUSE "my;db"', 'RESUME "my;db"']),
        # A quote of the other kind inside quotes does not end them.
        ("SET k TO '\";'; SHOW VERSION", ["SET k TO '\";'", "SHOW VERSION"]),
        ("SHOW\nCLIENTS;\nSHOW SERVERS", ["SHOW\nCLIENTS", "SHOW SERVERS"]),
    ],
)
def test_split_statements(text: str, expected: list[str]) -> None:
    assert split_statements(text) == expected


def test_split_statements_unterminated_quote_keeps_the_rest() -> None:
    assert split_statements("SET k TO 'a;b") == ["SET k TO 'a;b"]


@pytest.mark.parametrize(
    ("statement", "verb", "args"),
    [
        ("SHOW POOLS", "SHOW", ("pools",)),
        ("show pools", "SHOW", ("pools",)),
        ("Show Stats_Averages", "SHOW", ("stats_averages",)),
        ("SHOW CLIENTS id, state", "SHOW", ("clients", "id,", "state")),
        ("SHOW EVENTS 5", "SHOW", ("events", "5")),
        ("PAUSE", "PAUSE", ()),
        ("pause App", "PAUSE", ("app",)),
        ('PAUSE "MyDb"', "PAUSE", ("MyDb",)),
        ("RESUME app app2", "RESUME", ("app", "app2")),
        ("MAINTENANCE ON app", "MAINTENANCE", ("on", "app")),
        ("RELOAD", "RELOAD", ()),
        ("SELECT 1", "SELECT", ("1",)),
        # Words that only start with SET are not SET.
        ("SETTINGS please", "SETTINGS", ("please",)),
    ],
)
def test_parse_words(statement: str, verb: str, args: tuple[str, ...]) -> None:
    command = parse(statement)
    assert (command.verb, command.args) == (verb, args)
    assert command.text == statement.strip()


@pytest.mark.parametrize(
    ("statement", "key", "value"),
    [
        ("SET checkout_timeout TO 300", "checkout_timeout", "300"),
        ("set Checkout_Timeout to 300", "checkout_timeout", "300"),
        ("SET checkout_timeout = 300", "checkout_timeout", "300"),
        ("SET checkout_timeout=300", "checkout_timeout", "300"),
        ("SET log_level TO 'pgdog=debug, info'", "log_level", "'pgdog=debug, info'"),
        ("SET  pooler_mode\tTO  Session  ", "pooler_mode", "Session"),
        ("SET\nidle_timeout\nTO\n5", "idle_timeout", "5"),
    ],
)
def test_parse_set_keeps_the_value_as_written(statement: str, key: str, value: str) -> None:
    assert parse(statement) == Command("SET", (key, value), statement.strip())


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SET", "expected SET <setting> TO <value>"),
        ("SET checkout_timeout", "expected SET <setting> TO <value>"),
        ("SET checkout_timeout 300", "expected SET <setting> TO <value>"),
        ("SET 1abc TO 5", "expected SET <setting> TO <value>"),
        ("SET checkout_timeout TO", "SET checkout_timeout: a value is required"),
        ("SET checkout_timeout =   ", "SET checkout_timeout: a value is required"),
        ("", "empty command"),
        ("   ", "empty command"),
    ],
)
def test_parse_errors(statement: str, message: str) -> None:
    with pytest.raises(AdminSyntaxError, match=message.replace("[", r"\[")):
        parse(statement)


def test_split_then_parse_runs_every_statement_in_order() -> None:
    commands = [parse(s) for s in split_statements("pause app; SET default_pool_size TO 5; show pools")]
    assert [(c.verb, c.args) for c in commands] == [
        ("PAUSE", ("app",)),
        ("SET", ("default_pool_size", "5")),
        ("SHOW", ("pools",)),
    ]
