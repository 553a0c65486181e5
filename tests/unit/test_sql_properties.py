"""Properties: analyze() never raises, the fast path is sound, and SET values round-trip.

A true round trip needs a server (SET, then read the setting back). Without one, the check is
that the value reported for ``SET name TO ...`` is a fixed point: writing it back as
``SET name TO <value>`` (list settings) or ``SET name TO '<value>'`` (others) yields the same
Statement, and ``SELECT set_config(name, value, false)`` reports the same name and value.

Known exceptions, excluded from generation:
- an empty list item: PostgreSQL stores ``SET search_path = ''`` as ``""``, which does not
  parse back (a zero-length quoted identifier);
- list items over 63 bytes: quoted identifiers are truncated to NAMEDATALEN-1 when re-parsed,
  while the original string literal was not;
- NUL characters: a Query message is a C string, so no statement can contain one.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pgdog_ev.sql.analysis import Analysis, Kind, QueryCache, Statement
from pgdog_ev.sql.guc_text import quote_identifier
from pgdog_ev.sql.parse import parse_analysis
from pgdog_ev.sql.prefilter import needs_parse
from tests.unit.test_sql_statements import CASES

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NO_NUL = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def check_analysis(result: Analysis) -> None:
    assert isinstance(result, Analysis)
    assert result.statements, result
    if result.error is not None:
        assert result.statements == (Statement(Kind.OTHER),)


@FAST
@given(st.text())
@example("\udc80 SET a = 1")  # lone surrogate from a lenient decoder
@example("SET a = 1\x00; SET b = 2")
@example("(" * 20_000 + "SELECT set_config('a','b',false)")
def test_arbitrary_text_never_raises(text: str) -> None:
    check_analysis(QueryCache().analyze(text))


STATEMENTS = [case[0] for case in CASES] + [
    "SELECT 1",
    "INSERT INTO t VALUES ('a;b')",
    "UPDATE t SET a = 'SET b = 1'",
    "SELECT $$;SET x=1;$$",
    "PREPARE p AS SELECT 1",
    "CREATE TABLE t (temp int)",
    "SELECT a INTO TEMP t FROM x",
    "EXPLAIN ANALYZE SELECT pg_advisory_lock(1)",
]
NOISE = st.sampled_from(["", " ", "\n", "/* c */", "/* a /* b */ c */", "-- x\n", "-- x\r", "(", "\t"])
TOKENS = st.sampled_from(
    ["SET", "RESET", "SELECT", "set_config(", "pg_advisory_lock(", "'a'", "1", ";", "/*", "*/", "--",
     "\n", "(", ")", ",", "TEMP", "INTO", "CREATE", "TABLE", "t", "BEGIN", "PREPARE", "AS", "TO", "=",
     "DEFAULT", "LOCAL", "$$", '"', "x", "DECLARE", "CURSOR", "WITH", "HOLD", "FOR", "COPY", "FROM",
     "STDIN", "ALL", "pg_temp.", "false", "true"]
)  # fmt: skip


@st.composite
def statement_batches(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(NOISE, st.sampled_from(STATEMENTS)), min_size=1, max_size=4))
    return ";".join(noise + sql for noise, sql in parts) + draw(st.sampled_from(["", ";", " ; "]))


@FAST
@given(st.one_of(statement_batches(), st.lists(TOKENS, max_size=25).map(" ".join)))
def test_fast_path_is_sound(text: str) -> None:
    """Whenever the prefilter skips the parser, the parser would have found only OTHER."""
    check_analysis(QueryCache().analyze(text))
    if not needs_parse(text):
        assert all(s.kind is Kind.OTHER for s in parse_analysis(text).statements), text


@FAST
@given(
    st.lists(st.tuples(NOISE.filter(lambda n: n != "("), st.sampled_from(STATEMENTS)), min_size=1, max_size=4)
)
def test_batch_matches_statements_analyzed_one_by_one(parts: list[tuple[str, str]]) -> None:
    whole = QueryCache().analyze(";".join(noise + sql for noise, sql in parts))
    one_by_one = tuple(s for _, sql in parts for s in QueryCache().analyze(sql).statements)
    assert whole.error is None
    if all(s.kind is Kind.OTHER for s in one_by_one):
        # The fast path answers one OTHER for however many plain statements there are.
        assert {s.kind for s in whole.statements} == {Kind.OTHER}
    else:
        assert whole.statements == one_by_one


NAMES = st.one_of(
    st.sampled_from(["statement_timeout", "application_name", "work_mem", "timezone", "lock_timeout"]),
    st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
    .filter(lambda s: quote_identifier(s) == s)  # not a keyword
    .map(lambda s: "pgdog_t." + s),
)


@FAST
@given(NAMES, st.text(NO_NUL, max_size=40))
def test_scalar_value_round_trips(name: str, value: str) -> None:
    first = QueryCache().analyze(f"SET {name} TO {literal(value)}").statements
    assert first == (Statement(Kind.SET, name, value),)
    again = QueryCache().analyze(f"SET {name} TO {literal(value)}").statements
    assert again == first
    via_function = QueryCache().analyze(f"SELECT set_config({literal(name)}, {literal(value)}, false)")
    assert via_function.statements == (Statement(Kind.SET_CONFIG, name, value),)


@FAST
@given(NAMES, st.integers(-(10**15), 10**15))
def test_integer_value_round_trips(name: str, number: int) -> None:
    (statement,) = QueryCache().analyze(f"SET {name} = {number}").statements
    assert statement == Statement(Kind.SET, name, str(number))
    assert QueryCache().analyze(f"SET {name} TO {statement.value}").statements == (statement,)


@FAST
@given(NAMES, st.from_regex(r"-?[0-9]{1,6}\.[0-9]{1,6}", fullmatch=True))
def test_numeric_value_keeps_its_spelling(name: str, number: str) -> None:
    (statement,) = QueryCache().analyze(f"SET {name} = {number}").statements
    assert statement == Statement(Kind.SET, name, number)
    assert QueryCache().analyze(f"SET {name} TO {statement.value}").statements == (statement,)


LIST_ITEM = st.text(NO_NUL, min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 63)


@st.composite
def spelled_items(draw: st.DrawFn) -> tuple[list[str], str]:
    """Items plus one way to write them: quoted identifier, string literal or bare word."""
    items = draw(st.lists(LIST_ITEM, min_size=1, max_size=4))
    spelled = []
    for item in items:
        styles = [quoted(item), literal(item)]
        if quote_identifier(item) == item:
            styles.append(item)
        spelled.append(draw(st.sampled_from(styles)))
    return items, ", ".join(spelled)


@FAST
@given(st.sampled_from(["search_path", "temp_tablespaces"]), spelled_items())
def test_list_value_round_trips(name: str, items_and_sql: tuple[list[str], str]) -> None:
    items, spelled = items_and_sql
    (statement,) = QueryCache().analyze(f"SET {name} TO {spelled}").statements
    assert statement == Statement(Kind.SET, name, ", ".join(quote_identifier(i) for i in items))
    assert statement.value is not None
    assert QueryCache().analyze(f"SET {name} TO {statement.value}").statements == (statement,)
    via_function = QueryCache().analyze(f"SELECT set_config('{name}', {literal(statement.value)}, false)")
    assert via_function.statements == (Statement(Kind.SET_CONFIG, name, statement.value),)
