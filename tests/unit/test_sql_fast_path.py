"""The prefilter: ordinary statements are classified without ever calling the parser."""

from __future__ import annotations

import re

import pglast
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgdog_ev.sql import prefilter
from pgdog_ev.sql.analysis import OTHER_ANALYSIS, Kind, QueryCache
from pgdog_ev.sql.cache import PLAIN_MEMO_LIMIT, PLAIN_MEMO_MAX_CHARS
from pgdog_ev.sql.prefilter import first_keyword, leading_word, mentions_session_functions, needs_parse

BIG_ROWS = ",".join(f"({i}, 'value number {i}', now(), 'x_y')" for i in range(40_000))
PLAIN = [
    "SELECT 1",
    "select * from users where id = $1",
    "  (SELECT a FROM t) UNION (SELECT b FROM u)",
    "INSERT INTO t (a, b, c, d) VALUES " + BIG_ROWS,
    "UPDATE t SET a = 1 WHERE b = 2",
    "DELETE FROM t WHERE id IN (" + ",".join(str(i) for i in range(100_000)) + ")",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "VALUES (1), (2)",
    "SHOW search_path",
    "EXPLAIN SELECT 1",
    "SELECT 1; SELECT 2;",
    "SELECT 1;\n  ;  INSERT INTO t VALUES (1);",
    "TRUNCATE t",
    "CREATE TABLE t (a int)",
    "SELECT temperature FROM readings",  # "temp" without INTO
    "SELECT a INTO b FROM c",  # INTO without "temp"
    "DECLARE c CURSOR FOR SELECT 1",
    "-- SET a = 1\nSELECT 1",
    "/* BEGIN */ SELECT 1",
    "",
]


@pytest.fixture
def no_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(sql: str) -> object:
        raise AssertionError(f"parser called for {sql[:60]!r}")

    monkeypatch.setattr(pglast, "parse_sql", explode)


@pytest.mark.parametrize("sql", PLAIN, ids=[s[:40] for s in PLAIN])
def test_plain_statements_never_parse(no_parser: None, sql: str) -> None:
    cache = QueryCache()
    assert cache.analyze(sql) is OTHER_ANALYSIS
    assert (cache.fast_path, cache.misses, cache.hits, cache.size) == (1, 0, 0, 0)


def test_fast_path_counter_and_shared_constant(no_parser: None) -> None:
    cache = QueryCache()
    for _ in range(5):
        assert cache.analyze("SELECT 1") is OTHER_ANALYSIS
    assert cache.fast_path == 5 and cache.parse_time_ns == 0 and cache.entries() == []


def test_remembered_plain_texts_stay_bounded_and_exact() -> None:
    cache = QueryCache()
    for i in range(PLAIN_MEMO_LIMIT * 3):
        assert cache.analyze(f"SELECT {i}") is OTHER_ANALYSIS
        assert len(cache._plain) <= PLAIN_MEMO_LIMIT
    long_text = "SELECT " + "1 + " * PLAIN_MEMO_MAX_CHARS + "1"
    assert cache.analyze(long_text) is OTHER_ANALYSIS and long_text not in cache._plain
    # A text that needs the parser is never taken for plain, however often it repeats.
    for _ in range(3):
        assert cache.analyze("SELECT set_config('a.b', '1', false)") is not OTHER_ANALYSIS
    assert cache.fast_path == PLAIN_MEMO_LIMIT * 3 + 1 and cache.misses == 1 and cache.hits == 2
    cache.clear()
    assert not cache._plain


def test_fast_path_works_with_caching_disabled(no_parser: None) -> None:
    cache = QueryCache(0)
    assert cache.analyze("SELECT 1") is OTHER_ANALYSIS
    assert cache.fast_path == 1


@pytest.mark.parametrize(
    "sql",
    [
        "SET a = 1",
        "  reset all",
        "(BEGIN",  # leading parenthesis skipped; the server reports the syntax error
        "/* a /* nested */ */ Commit",
        "-- c\r\nSTART TRANSACTION",
        "-- comment ending at CR only\rSET a = 1",
        "SELECT 1; SET a = 1",
        "SELECT 1;/* x */LISTEN a",
        "SELECT set_config('a', 'b', false)",
        "SELECT PG_ADVISORY_LOCK(1)",
        "INSERT INTO t SELECT pg_advisory_lock(1)",
        "CREATE TEMP TABLE t (a int)",
        "create TEMPORARY view v as select 1",
        "SELECT 1 INTO TEMP t",
        "SELECT 1; SELECT 1 INTO TEMP t",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "do $$ begin end $$",
        "CALL p()",
        "COPY t FROM STDIN",
        "LOAD 'x'",
        "NOTIFY a",
    ],
)
def test_session_candidates_need_parse(sql: str) -> None:
    assert needs_parse(sql)


def test_first_keyword_skips_noise() -> None:
    assert first_keyword("  /* a /* b */ c */ -- d\n ( (Select 1") == "select"
    assert first_keyword("SELECT 1; SET a", 9) == "set"
    assert first_keyword("/* unterminated") == ""
    assert first_keyword("'literal'") == ""
    assert first_keyword("") == ""


# Texts made of what the head and hint rules look at: words, the hint words in any case, the
# non-ASCII letters a case-insensitive regex matches to ASCII ones (dotless i, dotted capital
# I, long s, Kelvin sign), and the whitespace and punctuation that end words.
_PIECES = st.sampled_from(
    ["select", "SET", "_", "_config", "_CONFIG", "_advisory", "_adv\u0131sory", "_advi\u017fory",
     "conf\u0130g", "\u212a", " ", "\t", "\n", "\r", "\f", "\v", "(", "--", "/*", "*/", ";", "$", "9",
     "a", "Z", "\u00e9", "x_1"]
)  # fmt: skip
_TEXTS = st.lists(_PIECES, max_size=12).map("".join)
_HEAD = re.compile(r"[ \t\r\n]*([A-Za-z_][A-Za-z_0-9$]*)")


@settings(max_examples=500, deadline=None)
@given(_TEXTS)
def test_leading_word_is_the_head_regex(text: str) -> None:
    """The loop finds the word the regex it replaced finds, and no word where it found none."""
    start, end = leading_word(text)
    head = _HEAD.match(text)
    if head is None:
        assert start == end
    else:
        assert (start, end) == head.span(1)


@settings(max_examples=500, deadline=None)
@given(_TEXTS)
def test_function_hint_by_substring_is_the_regex(text: str) -> None:
    """needs_parse looks for set_config/advisory by substring in ASCII texts and by regex
    elsewhere: together exactly the regex's answer."""
    assert prefilter._mentions_function_hint(text, text.lower()) == mentions_session_functions(text)
    if mentions_session_functions(text):
        assert needs_parse(text)


def test_session_statement_is_parsed_and_cached() -> None:
    cache = QueryCache()
    analysis = cache.analyze("SET a = 1")
    assert analysis.statements[0].kind is Kind.SET
    assert (cache.fast_path, cache.misses, cache.size) == (0, 1, 1)
    assert cache.parse_time_ns > 0


# -- plain_statement: the byte-level shortcut for a Query's text -----------------------------

_BYTE_PIECES = st.sampled_from(
    ["select", "SeLeCt", "insert", "UPDATE", "delete", "with", "WITH", "set", "begin", "selects",
     "with_", "select1", "select$", "into", "INTO", "temp", "TEMP", "_config", "_CoNfIg", "_advisory",
     "_ADVISORY", "_confi", "_", "pgbench_accounts", " ", "\t", "\n", "\r", "\f", "(", "--", "/*", "*/",
     ";", "; ", ";\n;", "'", "$1", "9", "a", "\u00e9", "\u0130", "\u017f", "\x00", "@", "`", "_`dvisory"]
)  # fmt: skip
_BYTE_TEXTS = st.lists(_BYTE_PIECES, max_size=10).map("".join)


@settings(max_examples=2000, deadline=None)
@given(_BYTE_TEXTS)
def test_plain_statement_never_passes_what_needs_parse_would_parse(text: str) -> None:
    raw = text.encode("utf-8", "surrogateescape")
    if prefilter.plain_statement(raw):
        assert not needs_parse(text), text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_plain_statement_on_arbitrary_bytes(tail: bytes) -> None:
    for head in (b"select ", b"WITH ", b"insert"):
        raw = head + tail
        if prefilter.plain_statement(raw):
            assert not needs_parse(raw.decode("utf-8", "surrogateescape")), raw


@pytest.mark.parametrize(
    "text",
    [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
        "select 1",
        "  \n\tSELECT a FROM t;;  ; \n",
        "INSERT INTO pgbench_history (tid) VALUES (1)",
        "update t set a = 1",
        "DELETE FROM t",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "SELECT temperature FROM readings",
        "SELECT a INTO b FROM c",
    ],
)
def test_plain_statement_passes_the_common_texts(text: str) -> None:
    assert prefilter.plain_statement(text.encode())
    assert not needs_parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT set_config('a', 'b', false)",
        "SELECT pg_advisory_lock(1)",
        "select PG_ADVISORY_XACT_LOCK(1)",
        "SELECT * INTO TEMP t FROM u",
        "SELECT 1; SET a = 1",
        "SET a = 1",
        "BEGIN",
        "(SELECT 1)",
        "/* c */ SELECT 1",
        "SELECT 'é'",
        "selectx 1",
        "",
    ],
)
def test_plain_statement_leaves_the_rest_to_the_full_rules(text: str) -> None:
    assert not prefilter.plain_statement(text.encode())
