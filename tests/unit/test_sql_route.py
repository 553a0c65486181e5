"""Read/write routing: a statement table, fast path == slow path on generated SQL, literals and
comments never fool the lexer, unparsable text is a write, and the cache's behaviour."""

from __future__ import annotations

import pglast
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pgdog_ev.sql.route as route_module
from pgdog_ev.sql.route import (
    Route,
    RouteCache,
    route,
    route_fast,
    route_lexical,
    route_prefilter,
    route_slow,
)
from pgdog_ev.sql.route_lexer import comment_hint, tokens
from pgdog_ev.sql.write_functions import WRITE_FUNCTIONS

W, R = True, False

# (sql, write, reason)
CASES: list[tuple[str, bool, str]] = [
    # plain reads
    ("SELECT 1", R, "select"),
    ("select * from users where id = 42", R, "select"),
    ("SELECT * FROM t WHERE name = 'bob' AND org = $1", R, "select"),
    ("SELECT count(*) FROM orders GROUP BY customer HAVING count(*) > 2", R, "select"),
    ("VALUES (1, 'a'), (2, 'b')", R, "select"),
    ("TABLE users", R, "select"),
    ("(SELECT 1) UNION (SELECT 2)", R, "select"),
    ("WITH x AS (SELECT 1 AS a) SELECT a FROM x", R, "select"),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", R, "select"),
    ("SELECT substring('abc' FROM 1 FOR 2)", R, "select"),
    ("SELECT * FROM information_schema.tables", R, "select"),
    ("SELECT lower(name), coalesce(a, 0), now() FROM t", R, "select"),
    ("SELECT nextval FROM t", R, "select"),  # a column, not a call
    ("SELECT 'INSERT INTO t VALUES (1)'", R, "select"),
    ("SELECT $$ DELETE FROM t $$", R, "select"),
    ("SELECT $tag$ FOR UPDATE $tag$", R, "select"),
    ("SELECT 1 /* FOR UPDATE */", R, "select"),
    ("SELECT 1 -- FOR UPDATE", R, "select"),
    ("SELECT 1 /* outer /* nested */ FOR UPDATE */", R, "select"),
    ("SELECT E'it\\'s FOR UPDATE'", R, "select"),
    ("SELECT 'it''s nextval(1)'", R, "select"),
    ('SELECT "INSERT" FROM "FOR"', R, "select"),
    ('SELECT "NEXTVAL"(1)', R, "select"),  # case-sensitive quoted name: not nextval
    ("SELECT * FROM t nextval(a, b)", R, "select"),  # a table alias with column names
    ("SELECT pg_sleep(0)", R, "select"),
    ("SELECT txid_current_if_assigned()", R, "select"),
    ("SELECT 1;", R, "select"),
    ("", R, "empty"),
    ("  ;  ; ", R, "empty"),
    ("/* only a comment */", R, "empty"),
    # SELECT that writes
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE", W, "select for update"),
    ("SELECT * FROM t FOR NO KEY UPDATE", W, "select for no key update"),
    ("SELECT * FROM t FOR SHARE", W, "select for share"),
    ("SELECT * FROM t FOR KEY SHARE", W, "select for key share"),
    ("SELECT * FROM t FOR UPDATE SKIP LOCKED", W, "select for update"),
    ("SELECT * FROM t FOR SHARE OF t NOWAIT", W, "select for share"),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", W, "select for update"),
    ("SELECT * INTO new_table FROM t", W, "select into"),
    ("SELECT nextval('s')", W, "volatile function nextval"),
    ("select NEXTVAL('s')", W, "volatile function nextval"),
    ("SELECT setval('s', 10)", W, "volatile function setval"),
    ("SELECT currval('s')", W, "volatile function currval"),
    ("SELECT lastval()", W, "volatile function lastval"),
    ("SELECT pg_catalog.nextval('s')", W, "volatile function nextval"),
    ('SELECT "nextval"(1)', W, "volatile function nextval"),
    ("SELECT nextval /* c */ ('s')", W, "volatile function nextval"),
    ("SELECT pg_advisory_lock(1)", W, "volatile function pg_advisory_lock"),
    ("SELECT pg_try_advisory_xact_lock(1)", W, "volatile function pg_try_advisory_xact_lock"),
    ("SELECT pg_notify('c', 'x')", W, "volatile function pg_notify"),
    ("SELECT set_config('a', 'b', false)", W, "volatile function set_config"),
    ("SELECT txid_current()", W, "volatile function txid_current"),
    ("SELECT pg_current_xact_id()", W, "volatile function pg_current_xact_id"),
    ("SELECT pg_create_logical_replication_slot('s', 'pgoutput')", W,
     "volatile function pg_create_logical_replication_slot"),
    ("SELECT pg_drop_replication_slot('s')", W, "volatile function pg_drop_replication_slot"),
    ("SELECT lo_create(0)", W, "volatile function lo_create"),
    ("SELECT lowrite(0, 'x')", W, "volatile function lowrite"),
    ("SELECT lo_unlink(42)", W, "volatile function lo_unlink"),
    ("SELECT dblink_exec('c', 'DELETE FROM t')", W, "volatile function dblink_exec"),
    ("SELECT pg_terminate_backend(123)", W, "volatile function pg_terminate_backend"),
    ("SELECT pg_cancel_backend(123)", W, "volatile function pg_cancel_backend"),
    ("SELECT pg_switch_wal()", W, "volatile function pg_switch_wal"),
    ("SELECT pg_reload_conf()", W, "volatile function pg_reload_conf"),
    ("SELECT * FROM nextval('s')", W, "volatile function nextval"),
    ("SELECT setval('s', 1), nextval('s')", W, "volatile function nextval"),
    ("VALUES (nextval('s'))", W, "volatile function nextval"),
    # data-modifying CTEs
    ("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", W, "with insert"),
    ("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", W, "with update"),
    ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", W, "with delete"),
    ("WITH x AS MATERIALIZED (DELETE FROM t RETURNING *) SELECT * FROM x", W, "with delete"),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", W, "insert"),
    ("WITH x AS (SELECT 1) UPDATE t SET a = 1 FROM x", W, "update"),
    ("WITH x AS (SELECT 1) DELETE FROM t USING x", W, "delete"),
    ("WITH x AS (SELECT id FROM t FOR UPDATE) UPDATE t SET a = 1 FROM x WHERE t.id = x.id", W, "update"),
    ("WITH x AS (SELECT 'INSERT INTO t' AS s) SELECT * FROM x", R, "select"),
    # DML
    ("INSERT INTO t VALUES (1)", W, "insert"),
    ("insert into t (a) values ('SELECT 1')", W, "insert"),
    ("UPDATE t SET a = 1 WHERE id = 2", W, "update"),
    ("DELETE FROM t WHERE id = 1", W, "delete"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", W, "merge"),
    ("  \n  INSERT INTO t VALUES (1); SELECT 1", W, "insert"),
    ("/* leading */ INSERT INTO t VALUES (1)", W, "insert"),
    # DDL and maintenance
    ("CREATE TABLE t (id int)", W, "ddl"),
    ("CREATE TABLE t2 AS SELECT * FROM t", W, "ddl"),
    ("CREATE MATERIALIZED VIEW v AS SELECT 1", W, "ddl"),
    ("ALTER TABLE t ADD COLUMN b int", W, "ddl"),
    ("DROP TABLE t", W, "ddl"),
    ("TRUNCATE t", W, "ddl"),
    ("COMMENT ON TABLE t IS 'x'", W, "ddl"),
    ("GRANT SELECT ON t TO bob", W, "ddl"),
    ("REVOKE SELECT ON t FROM bob", W, "ddl"),
    ("REINDEX TABLE t", W, "ddl"),
    ("VACUUM t", W, "ddl"),
    ("ANALYZE t", W, "ddl"),
    ("CLUSTER t USING t_pkey", W, "ddl"),
    ("REFRESH MATERIALIZED VIEW v", W, "ddl"),
    ("CREATE INDEX CONCURRENTLY i ON t (a)", W, "ddl"),
    # COPY
    ("COPY t FROM STDIN", W, "copy from"),
    ("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", W, "copy from"),
    ("COPY t TO STDOUT", R, "copy to"),
    ("COPY t (a, b) TO STDOUT (FORMAT binary)", R, "copy to"),
    ("COPY (SELECT * FROM t) TO STDOUT", R, "copy to"),
    ("COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", W, "copy (insert)"),
    ("COPY (SELECT nextval('s')) TO STDOUT", W, "copy (volatile function nextval)"),
    # procedural and session-bound commands
    ("CALL p(1)", W, "call"),
    ("DO $$ BEGIN PERFORM 1; END $$", W, "do"),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", W, "lock"),
    ("LISTEN chan", W, "listen"),
    ("NOTIFY chan, 'x'", W, "notify"),
    ("UNLISTEN *", W, "unlisten"),
    ("EXECUTE p(1)", W, "execute"),
    ("FETCH 10 FROM c", W, "fetch"),
    ("MOVE 1 IN c", W, "move"),
    ("CLOSE c", W, "close"),
    ("CHECKPOINT", W, "checkpoint"),
    ("PREPARE p AS INSERT INTO t VALUES ($1)", W, "prepare insert"),
    ("PREPARE p (int) AS SELECT * FROM t WHERE id = $1", R, "prepare select"),
    ("PREPARE p AS SELECT * FROM t FOR UPDATE", W, "prepare select for update"),
    ("DECLARE c CURSOR FOR SELECT * FROM t", R, "declare select"),
    ("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t FOR SHARE", W, "declare select for share"),
    # EXPLAIN
    ("EXPLAIN SELECT 1", R, "explain"),
    ("EXPLAIN INSERT INTO t VALUES (1)", R, "explain"),
    ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", W, "explain analyze insert"),
    ("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", W, "explain analyze delete"),
    ("EXPLAIN (ANALYZE false) DELETE FROM t", R, "explain"),
    ("EXPLAIN ANALYZE SELECT 1", R, "explain analyze select"),
    ("EXPLAIN ANALYZE SELECT nextval('s')", W, "explain analyze volatile function nextval"),
    # transaction control and session commands
    ("BEGIN", R, "transaction control"),
    ("START TRANSACTION READ ONLY", R, "transaction control"),
    ("COMMIT", R, "transaction control"),
    ("ROLLBACK TO SAVEPOINT s", R, "transaction control"),
    ("SAVEPOINT s", R, "transaction control"),
    ("PREPARE TRANSACTION 'gid'", R, "transaction control"),
    ("COMMIT PREPARED 'gid'", R, "transaction control"),
    ("BEGIN; SELECT 1; COMMIT", R, "transaction control"),
    ("BEGIN; UPDATE t SET a = 1; COMMIT", W, "update"),
    ("SET search_path TO a, b", R, "set"),
    ("SET LOCAL statement_timeout = '1s'", R, "set"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", R, "set"),
    ("RESET ALL", R, "reset"),
    ("SHOW server_version", R, "show"),
    ("DISCARD ALL", R, "discard"),
    ("DEALLOCATE ALL", R, "deallocate"),
    ("SELECT 1; SELECT 2", R, "select"),
    ("SELECT 1; INSERT INTO t VALUES (1)", W, "insert"),
    ("SELECT 1; SELECT nextval('s')", W, "volatile function nextval"),
]  # fmt: skip

UNPARSABLE = [
    "SELEC 1",
    "garbage",
    "SELECT 'unterminated",
    "SELECT 1 /* unterminated comment",
    'SELECT "unterminated',
    "SELECT $$ unterminated",
    "SELECT (1",
    "SELECT 1)",
    "SELECT 1; SELEC 2",
    "SET a = 'oops; SELECT 1",
    "WITH x AS (SELECT 1 SELECT * FROM x",
    "\udc80 SELECT 1",  # a lone surrogate from a lenient decoder
]


@pytest.mark.parametrize(("sql", "write", "reason"), CASES)
def test_statement_table(sql: str, write: bool, reason: str) -> None:
    expected = Route(write, reason)
    assert route_slow(sql) == expected
    fast = route_fast(sql)
    assert fast is None or fast == expected
    assert RouteCache().route(sql) == expected
    assert route(sql) == expected


def test_table_is_large_enough_and_mostly_fast() -> None:
    assert len(CASES) >= 80
    fast = sum(route_fast(sql) is not None for sql, _w, _r in CASES)
    assert fast >= len(CASES) * 3 // 4, fast


@pytest.mark.parametrize("sql", UNPARSABLE)
def test_unparsable_is_a_write(sql: str) -> None:
    assert route_slow(sql) == Route(True, "unparsable")
    assert RouteCache().route(sql).write


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'INSERT'",
        "SELECT 'FOR UPDATE'",
        "SELECT $$ DELETE $$",
        "SELECT $a$ $b$ UPDATE t SET x = 1 $b$ $a$",
        "SELECT $a$ x $A$ FOR UPDATE $a$",  # dollar-quote tags are case sensitive
        "SELECT 1 /* FOR UPDATE */",
        "SELECT 1 /* /* */ FOR UPDATE */",
        "SELECT 1 /* /* nested */ INTO x */",
        "SELECT 1 -- INTO t\n",
        "SELECT 1 -- FOR UPDATE\r, 2",
        "SELECT E'\\' FOR UPDATE'",
        "SELECT e'a\\\\', 'FOR UPDATE'",
        "SELECT E'it''s', 'nextval(''s'')'",
        "SELECT 'a\\', 'nextval(1)'",  # a backslash escapes nothing in a standard string
        'SELECT "for", "update", "into" FROM "t"',
        'SELECT 1 AS "x""FOR UPDATE"',
        "SELECT somee'x\\' for update'",  # identifier, then standard string; parser rejects
        "SELECT a$b$ FROM t",
    ],
)
def test_literals_and_comments_do_not_fool_the_lexer(sql: str) -> None:
    slow = route_slow(sql)
    fast = route_fast(sql)
    assert fast is None or fast == slow
    assert not slow.write or slow.reason == "unparsable"


def test_quoted_function_names_follow_identifier_rules() -> None:
    assert route('SELECT "nextval"(1)').reason == "volatile function nextval"
    assert not route('SELECT "NextVal"(1)').write
    assert route_fast('SELECT "NextVal"(1)') is None  # lower-cased tokens cannot tell


def test_tokens() -> None:
    sql = "SELECT a, 'x' /* c */ FROM \"T\" -- z\n WHERE b = $1;"
    assert tokens(sql.lower(), sql) == ["select", "a", ",", "from", '"t"', "where", "b", "=", "$1", ";"]
    assert tokens("", "") == []
    assert "'" in tokens("select 'x", "select 'x")
    assert "/*" in tokens("select /* /* */ */", "select /* /* */ */")


@pytest.mark.parametrize(
    ("sql", "hint"),
    [
        ("/* pgdog_role: replica */ SELECT 1", "replica"),
        ("SELECT 1 /* pgdog_role: primary */", "primary"),
        ("SELECT 1 -- pgdog_role: replica", "replica"),
        ("/* app=x, pgdog_role:primary */ SELECT 1", "primary"),
        ("/* outer /* pgdog_role: replica */ */ SELECT 1", "replica"),
        ("SELECT '/* pgdog_role: replica */'", None),
        ("SELECT $$ -- pgdog_role: replica $$", None),
        ('SELECT 1 AS "pgdog_role: primary"', None),
        ("/* pgdog_role: prefer-primary */ SELECT 1", None),
        ("/* pgdog_role: primary-ish */ SELECT 1", None),
        ("/* pgdog_role: replica */ INSERT INTO t VALUES (1)", "replica"),
    ],
)
def test_comment_hint(sql: str, hint: str | None) -> None:
    assert comment_hint(sql) == hint
    result = route(sql)
    assert result.hint == hint
    assert route_slow(sql) == result
    assert result.write == route_slow(sql.replace("pgdog_role", "other_key")).write  # hint changes no write


def test_every_trigger_word_contains_a_trigger_text() -> None:
    """The prefilter's substring search must find every word the lexer would look at."""
    for word in route_module._TRIGGERS:
        assert any(text in word for text in route_module._TRIGGER_TEXTS), word


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(["select", "INSERT", "_x", "9", "$", " ", "\t", "\n", "\f", "\v", "--c\n", "/* c */",
                         "(", ";", "\u00e9", "\u0130", "\U0001f600", "'"]),
        max_size=8,
    ).map("".join)
)  # fmt: skip
def test_first_word_is_the_head_regex(text: str) -> None:
    """The prefilter's loop for the usual first word gives what the full regex gives."""
    head = route_module._HEAD.match(text)
    assert route_module._first_word(text) == (None if head is None else head.group(1).lower())


def test_trigger_groups_search_exactly_the_trigger_texts() -> None:
    """The grouped search is the same search: each group's key lies inside its members, and
    together the groups hold every trigger text once."""
    searched = []
    for key, members in route_module._TRIGGER_GROUPS:
        assert all(key in text for text in members), key
        searched.extend(members or (key,))
    assert sorted(searched) == sorted(route_module._TRIGGER_TEXTS)
    for text in route_module._TRIGGER_TEXTS:
        assert route_module._has_trigger_text(f"select {text} from t")
    assert not route_module._has_trigger_text("select abalance from pgbench_accounts where aid = 1;")


# ---------------------------------------------------------------------------------------------
# Generated statements: the fast path agrees with the parser wherever it answers.

IDENTS = st.sampled_from(["t", "users", "a", "b", "id", "Orders", "x_1", '"INSERT"', '"for update"', '"T t"'])
LITERALS = st.sampled_from(
    [
        "1", "42", "-7", "3.5", "NULL", "true", "'bob'", "'INSERT INTO t VALUES (1)'", "'FOR UPDATE'",
        "'it''s'", "E'it\\'s FOR UPDATE'", "$$ DELETE FROM t $$", "$q$ UPDATE t SET a = 1 $q$",
        "'nextval(''s'')'", "$1", "'/* x */'", "'--'", "'; DROP TABLE t'",
    ]
) | st.integers(-(10**12), 10**12).map(str)  # fmt: skip
HARMLESS_CALLS = st.sampled_from(
    ["lower('X')", "coalesce(a, 0)", "now()", "length('x')", "abs(-1)", "count(*)"]
)
WRITE_CALLS = st.sampled_from(
    [
        "nextval('s')", "setval('s', 1)", "currval('s')", "pg_advisory_lock(1)", "txid_current()",
        "pg_notify('c', 'p')", "pg_catalog.nextval('s')", '"nextval"(\'s\')', "lo_create(0)",
        "set_config('a', 'b', false)", "dblink_exec('c', 'x')",
    ]
)  # fmt: skip
# Mostly plain whitespace: a nested comment sends the whole text to the parser, so it is rare.
SEPARATORS = st.sampled_from(
    [" "] * 12 + ["  ", "\n", "\t", " /* FOR UPDATE */ ", " -- INSERT INTO t\n", "/*'*/", " /* /* n */ */ "]
)
LOCKS = st.sampled_from(["FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE"])


@st.composite
def expression(draw: st.DrawFn) -> tuple[str, bool]:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(WRITE_CALLS), True
    if kind == 1:
        return draw(HARMLESS_CALLS), False
    if kind == 2:
        return draw(IDENTS), False
    return draw(LITERALS), False


@st.composite
def select(draw: st.DrawFn, allow_into: bool = True) -> tuple[list[str], bool]:
    exprs = draw(st.lists(expression(), min_size=1, max_size=3))
    words = ["SELECT", ", ".join(e for e, _ in exprs)]
    writes = any(w for _, w in exprs)
    if allow_into and draw(st.integers(0, 6)) == 0:
        words += ["INTO", "new_t"]
        writes = True
    words += ["FROM", draw(IDENTS)]
    if draw(st.booleans()):
        value, value_writes = draw(expression())
        words += ["WHERE", draw(IDENTS), "=", value]
        writes = writes or value_writes
    if draw(st.booleans()):
        words += ["ORDER BY", draw(IDENTS), "LIMIT", "10"]
    if draw(st.integers(0, 3)) == 0:
        words += [draw(LOCKS), *draw(st.sampled_from([[], ["SKIP LOCKED"], ["NOWAIT"]]))]
        writes = True
    return words, writes


@st.composite
def dml(draw: st.DrawFn, returning: bool = False) -> tuple[list[str], bool]:
    value, _ = draw(expression())
    table = draw(IDENTS)
    kind = draw(st.integers(0, 2))
    if kind == 0:
        words = ["INSERT INTO", table, "(a)", "VALUES", "(", value, ")"]
    elif kind == 1:
        words = ["UPDATE", table, "SET", "a", "=", value, "WHERE", "id", "=", "1"]
    else:
        words = ["DELETE FROM", table, "WHERE", "a", "=", value]
    return words + (["RETURNING", "*"] if returning else []), True


@st.composite
def with_query(draw: st.DrawFn) -> tuple[list[str], bool]:
    inner, inner_writes = draw(st.one_of(select(allow_into=False), dml(returning=True)))
    main_kind = draw(st.integers(0, 3))
    if main_kind == 0:
        main, main_writes = ["SELECT", "*", "FROM", "w"], False
    elif main_kind == 1:
        main, main_writes = ["INSERT INTO", "t", "SELECT", "*", "FROM", "w"], True
    elif main_kind == 2:
        main, main_writes = ["UPDATE", "t", "SET", "a", "=", "1", "FROM", "w"], True
    else:
        main, main_writes = ["DELETE FROM", "t", "USING", "w"], True
    materialized = draw(st.sampled_from([[], ["MATERIALIZED"], ["NOT MATERIALIZED"]]))
    words = ["WITH", "w", "AS", *materialized, "(", *inner, ")", *main]
    return words, inner_writes or main_writes


STATEMENT = st.one_of(select(), select(), dml(), with_query(), with_query())


def case_words(words: list[str], upper: bool) -> list[str]:
    return [w.upper() if upper and w.isalpha() else w.lower() if w.isalpha() else w for w in words]


@st.composite
def query_text(draw: st.DrawFn) -> tuple[str, bool, str | None]:
    statements = draw(st.lists(STATEMENT, min_size=1, max_size=3))
    texts: list[str] = []
    for words, _ in statements:
        words = case_words(words, draw(st.booleans()))
        parts = [words[0]]
        for word in words[1:]:
            parts += [draw(SEPARATORS), word]
        texts.append("".join(parts))
    text = ";".join(texts) + draw(st.sampled_from(["", ";", " ;\n"]))
    hint = draw(st.sampled_from([None, "primary", "replica"]))
    if hint is not None:
        text = f"/* pgdog_role: {hint} */ {text}"
    return text, any(w for _, w in statements), hint


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query_text())
@example(("SELECT 'INSERT' FROM t FOR UPDATE", True, None))
@example(("WITH w AS (SELECT $$ INSERT INTO t $$) SELECT * FROM w", False, None))
def test_fast_path_agrees_with_parser(case: tuple[str, bool, str | None]) -> None:
    sql, writes, hint = case
    slow = route_slow(sql)
    assert slow.reason != "unparsable", sql  # the generator makes valid SQL
    assert slow.write == writes, (sql, slow)
    assert slow.hint == hint
    fast = route_fast(sql)
    assert fast is None or fast == slow, (sql, fast, slow)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
@example("(" * 20_000 + "SELECT 1")
@example("SELECT 1 /*" * 500)
def test_arbitrary_text_never_raises(text: str) -> None:
    result = RouteCache().route(text)
    assert isinstance(result, Route)
    fast = route_fast(text)
    slow = route_slow(text)
    if fast is not None and fast.write != slow.write:
        # Only lexically sound text the grammar rejects may differ (server errors either way).
        assert slow.reason == "unparsable", (text, fast, slow)


# ---------------------------------------------------------------------------------------------
# Cache


def counting_parser(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = pglast.parse_sql

    def parse(sql: str) -> object:
        calls.append(sql)
        return real(sql)

    monkeypatch.setattr(pglast, "parse_sql", parse)
    return calls


SLOW_TEXT = "EXPLAIN ANALYZE DELETE FROM t"


def test_slow_texts_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_parser(monkeypatch)
    cache = RouteCache()
    first = cache.route(SLOW_TEXT)
    second = cache.route(SLOW_TEXT)
    assert first is second == Route(True, "explain analyze delete")
    assert calls == [SLOW_TEXT]
    assert (cache.hits, cache.misses, cache.size) == (1, 1, 1)


def test_unique_literal_storm_never_parses_nor_fills_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_parser(monkeypatch)
    cache = RouteCache(10)
    cache.route(SLOW_TEXT)
    for n in range(5000):
        assert cache.route(f"SELECT * FROM t WHERE id = {n * 7919}") == Route(False, "select")
        assert cache.route(f"SELECT * FROM t WHERE name = 'user {n}' FOR UPDATE").write
        assert cache.route(f"INSERT INTO t VALUES ({n})").write
    assert calls == [SLOW_TEXT]
    assert cache.size == 1
    assert cache.fast_path == 15000
    cache.route(SLOW_TEXT)
    assert cache.hits == 1


def test_lru_eviction_and_resize() -> None:
    cache = RouteCache(2)
    texts = [f"EXPLAIN SELECT {n}" for n in range(3)]
    cache.route(texts[0])
    cache.route(texts[1])
    cache.route(texts[0])  # now the most recently used
    cache.route(texts[2])  # evicts texts[1]
    assert cache.size == 2
    hits = cache.hits
    cache.route(texts[0])
    assert cache.hits == hits + 1
    cache.resize(1)
    assert cache.size == 1
    cache.clear()
    assert cache.size == 0
    with pytest.raises(ValueError):
        RouteCache(-1)


def test_limit_zero_disables_caching(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_parser(monkeypatch)
    cache = RouteCache(0)
    cache.route(SLOW_TEXT)
    cache.route(SLOW_TEXT)
    assert len(calls) == 2
    assert cache.size == 0


def test_hash_collision_does_not_return_another_texts_route(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forces every text to one hash on the sources (make test's pure pass); compiled code calls
    # its own _hash_text, so there the texts merely keep their own routes.
    monkeypatch.setattr(route_module, "_hash_text", lambda sql: 1)
    cache = RouteCache()
    assert cache.route("EXPLAIN ANALYZE DELETE FROM t").write
    assert not cache.route("EXPLAIN SELECT 1").write
    assert cache.route("EXPLAIN ANALYZE DELETE FROM t").write


def test_prefilter_and_lexer_split() -> None:
    assert route_prefilter("SELECT * FROM t WHERE id = 5") == Route(False, "select")
    assert route_prefilter("SELECT * FROM t FOR UPDATE") is None
    assert route_lexical("SELECT * FROM t FOR UPDATE") == Route(True, "select for update")
    assert route_prefilter("INSERT INTO t VALUES (1); SELEC") == Route(True, "insert")
    assert route_prefilter("SET a = 'x") is None  # odd quote count: the lexer decides
    assert route_fast("EXPLAIN SELECT 1") is None


def test_write_functions_are_lower_case_names() -> None:
    for name in WRITE_FUNCTIONS:
        assert name == name.lower() and name.isidentifier(), name


def _closed_by_counts(sql: str) -> bool:
    """What _looks_closed means, counted out in full (it skips the counts it can)."""
    return (
        sql.count("'") % 2 == 0
        and sql.count('"') % 2 == 0
        and sql.count("(") == sql.count(")")
        and sql.count("/*") == sql.count("*/")
        and ("$" not in sql or not route_module.has_dollar_quote(sql))
    )


@settings(max_examples=400)
@given(st.lists(st.sampled_from(["'", '"', "(", ")", "/*", "*/", "*", "/", "$", "$$", "$a$", " ", "x", ";"]),
                max_size=12).map("".join))
@example("select ) ( from t")
@example("select */ from t")
@example("select 1 */ /* x")
def test_looks_closed_skips_only_counts_that_cannot_fail(sql: str) -> None:
    assert route_module._looks_closed(sql) is _closed_by_counts(sql)


# -- plain_read: the prefilter's SELECT rule on a Query's bytes ----------------------------------

_READ_PIECES = st.sampled_from(
    ["select", "SELECT", "SeLeCt", "selects", "select_", "select1", " ", "\t", "\n", "\r", "\f", "\v",
     "a", "abalance", "from", "t", "pgbench_accounts", "where", "aid", "=", "1", "'", "''", '"', "(", ")",
     "/*", "*/", "/", "*", "-", "--", ";", "; ", "$", "$$", "$1", "\u00e9", "_", "FOR", "for", "Into",
     "UPDATE", "delete", "merge", "pg_", "PG_", "pgdog_role", "insert", "install", "nextval", "CurrVal",
     "setval", "lastval", "set_config", "setseed", "lo_", "LOWRITE", "txid_current", "dblink_exec",
     "lower", "join", "in", "se", "lo", "nextva", "set", "values", "with", "begin"]
)  # fmt: skip
_READ_TEXTS = st.lists(_READ_PIECES, max_size=12).map("".join)


@settings(max_examples=3000, deadline=None)
@given(_READ_TEXTS)
def test_plain_read_is_only_said_of_what_the_prefilter_calls_a_select(text: str) -> None:
    if route_module.plain_read(text.encode("utf-8", "surrogateescape")):
        assert route_module.route_prefilter(text) is route_module.SELECT, text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_plain_read_on_arbitrary_bytes(tail: bytes) -> None:
    raw = b"select " + tail
    if route_module.plain_read(raw):
        assert route_module.route_prefilter(raw.decode("utf-8", "surrogateescape")) is route_module.SELECT, raw


@pytest.mark.parametrize(
    "text",
    [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
        "select * from t where a in (1, 2) and b = 'x' /* note */ ;\n",
        "SELECT lower(name) FROM users u JOIN orders o ON o.uid = u.id",
        'SELECT "Select" FROM "t"',
    ],
)
def test_plain_read_passes_the_common_reads(text: str) -> None:
    assert route_module.plain_read(text.encode())
    assert route_module.route_prefilter(text) is route_module.SELECT


@pytest.mark.parametrize(
    "text",
    [
        "SELECT nextval('s')",
        "SELECT * FROM t FOR UPDATE",
        "SELECT a INTO b FROM c",
        "/* pgdog_role: primary */ SELECT 1",
        "SELECT 1 /* pgdog_role: primary */",
        "SELECT pg_advisory_lock(1)",
        "SELECT 1; DELETE FROM t",
        "SELECT 'unclosed",
        'SELECT "unclosed',
        "SELECT (1",
        "SELECT 1)",
        "SELECT 1 /* unclosed",
        "SELECT 1 */",
        "SELECT $$x$$",
        "SELECT 'é'",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "selectx",
        "",
    ],
)
def test_plain_read_leaves_the_rest_to_route(text: str) -> None:
    assert not route_module.plain_read(text.encode())
