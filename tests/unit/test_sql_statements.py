"""analyze(): the Statement each session-affecting statement form maps to."""

from __future__ import annotations

import pytest

from pgdog_ev.sql.analysis import Analysis, Kind, QueryCache, Statement

F = frozenset
# (sql, kind, name, value, flags)
CASES: list[tuple[str, Kind, str | None, str | None, frozenset[str]]] = [
    # --- SET and its spellings
    ("SET search_path TO a, \"B c\", public", Kind.SET, "search_path", 'a, "B c", public', F()),
    ("SET search_path = 'a b', public", Kind.SET, "search_path", '"a b", public', F()),
    ("SET search_path TO '$user', public", Kind.SET, "search_path", '"$user", public', F()),
    ("SET search_path TO \"select\"", Kind.SET, "search_path", '"select"', F()),
    ("SET statement_timeout = 5000", Kind.SET, "statement_timeout", "5000", F()),
    ("set Statement_Timeout to '5s'", Kind.SET, "statement_timeout", "5s", F()),
    ("SET x = 'it''s'", Kind.SET, "x", "it's", F()),
    ("SET x TO $$it's$$", Kind.SET, "x", "it's", F()),
    ("SET x = E'tab\\there'", Kind.SET, "x", "tab\there", F()),
    ("SET x = -3", Kind.SET, "x", "-3", F()),
    ("SET x = 1.50", Kind.SET, "x", "1.50", F()),
    ("SET x = -1e3", Kind.SET, "x", "-1e3", F()),
    ("SET x = 0x10", Kind.SET, "x", "16", F()),
    ("SET x = 99999999999", Kind.SET, "x", "99999999999", F()),
    ("SET enable_seqscan = off", Kind.SET, "enable_seqscan", "off", F()),
    ("SET enable_seqscan TO true", Kind.SET, "enable_seqscan", "true", F()),
    ("SET DateStyle TO ISO, DMY", Kind.SET, "datestyle", "iso, dmy", F()),
    ("SET \"MixedCase\" = 1", Kind.SET, "MixedCase", "1", F()),
    ("SET pgdog.role = 'replica'", Kind.SET, "pgdog.role", "replica", F()),
    ("SET \"My\".Setting = 'v'", Kind.SET, "My.setting", "v", F()),
    ("SET SESSION work_mem = '64MB'", Kind.SET, "work_mem", "64MB", F()),
    ("SET TIME ZONE 'UTC'", Kind.SET, "timezone", "UTC", F()),
    ("SET TIME ZONE -7", Kind.SET, "timezone", "-7", F()),
    ("SET NAMES 'utf8'", Kind.SET, "client_encoding", "utf8", F()),
    ("SET SCHEMA 'x'", Kind.SET, "search_path", "x", F()),
    ("SET SESSION AUTHORIZATION bob", Kind.SET, "session_authorization", "bob", F()),
    ("SET ROLE admin", Kind.SET, "role", "admin", F()),
    ("SET ROLE NONE", Kind.SET, "role", "none", F()),
    ("SET XML OPTION DOCUMENT", Kind.SET, "xmloption", "DOCUMENT", F()),
    ("SET application_name = 'caf\u00e9 \u20ac'", Kind.SET, "application_name", "caf\u00e9 \u20ac", F()),
    # --- SET LOCAL
    ("SET LOCAL statement_timeout = 100", Kind.SET_LOCAL, "statement_timeout", "100", F()),
    ("SET LOCAL search_path TO a, b", Kind.SET_LOCAL, "search_path", "a, b", F()),
    ("SET LOCAL x TO DEFAULT", Kind.SET_LOCAL, "x", None, F({"default"})),
    # --- DEFAULT / RESET
    ("SET search_path TO DEFAULT", Kind.SET_DEFAULT, "search_path", None, F()),
    ("SET work_mem = DEFAULT", Kind.SET_DEFAULT, "work_mem", None, F()),
    ("SET TIME ZONE LOCAL", Kind.SET_DEFAULT, "timezone", None, F()),
    ("SET TIME ZONE DEFAULT", Kind.SET_DEFAULT, "timezone", None, F()),
    ("SET SESSION AUTHORIZATION DEFAULT", Kind.SET_DEFAULT, "session_authorization", None, F()),
    ("RESET search_path", Kind.RESET, "search_path", None, F()),
    ("RESET TIME ZONE", Kind.RESET, "timezone", None, F()),
    ("RESET ROLE", Kind.RESET, "role", None, F()),
    ("RESET ALL", Kind.RESET_ALL, None, None, F()),
    # --- set_config()
    ("SELECT set_config('search_path', 'a, b', false)", Kind.SET_CONFIG, "search_path", "a, b", F()),
    ("select SET_CONFIG('x.y', 'v', true)", Kind.SET_CONFIG, "x.y", "v", F({"local"})),
    ("SELECT pg_catalog.set_config('a', 'b', 'off') AS r", Kind.SET_CONFIG, "a", "b", F()),
    ("SELECT set_config('a', 'b', 'yes')", Kind.SET_CONFIG, "a", "b", F({"local"})),
    ("SELECT set_config('a', 'b', NULL)", Kind.SET_CONFIG, "a", "b", F()),
    ("SELECT set_config('a', NULL, false)", Kind.SET_CONFIG, "a", None, F({"default"})),
    ("SELECT set_config($1, $2, false)", Kind.UNTRACKED_SETTING, None, None, F()),
    ("SELECT set_config('a', current_user, false)", Kind.UNTRACKED_SETTING, "a", None, F()),
    ("SELECT set_config('a', 'b', $1)", Kind.UNTRACKED_SETTING, "a", None, F()),
    ("SELECT set_config('a', 'b', 'maybe')", Kind.UNTRACKED_SETTING, "a", None, F()),
    ("SELECT set_config('a', 'b', false) FROM t", Kind.UNTRACKED_SETTING, None, None, F()),
    ("SELECT 1, set_config('a', 'b', false)", Kind.UNTRACKED_SETTING, None, None, F()),
    ("WITH c AS (SELECT set_config('a','b',false)) SELECT * FROM c", Kind.UNTRACKED_SETTING, None, None, F()),
    ("SELECT myschema.set_config('a', 'b', false)", Kind.OTHER, None, None, F()),
    # --- other untracked settings
    ("SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE", Kind.UNTRACKED_SETTING, "timezone", None, F()),
    ("SET x FROM CURRENT", Kind.UNTRACKED_SETTING, "x", None, F()),
    ("SET x = $1", Kind.UNTRACKED_SETTING, "x", None, F()),
    # --- SET TRANSACTION
    ("SET TRANSACTION READ ONLY", Kind.SET_TRANSACTION, None, None, F({"read_only"})),
    (
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, NOT DEFERRABLE",
        Kind.SET_TRANSACTION, None, None, F({"isolation:repeatable read", "not_deferrable"}),
    ),
    (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        Kind.SET_TRANSACTION, None, None, F({"read_write", "session"}),
    ),
    ("SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", Kind.SET_TRANSACTION, None, "00000003-0000001B-1", F({"snapshot"})),
    # --- transaction control
    ("BEGIN", Kind.BEGIN, None, None, F()),
    ("begin work", Kind.BEGIN, None, None, F()),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", Kind.BEGIN, None, None, F({"isolation:serializable", "read_only"})),
    ("START TRANSACTION READ WRITE", Kind.BEGIN, None, None, F({"read_write"})),
    ("START TRANSACTION ISOLATION LEVEL READ COMMITTED, DEFERRABLE", Kind.BEGIN, None, None,
     F({"isolation:read committed", "deferrable"})),
    ("COMMIT", Kind.COMMIT, None, None, F()),
    ("END", Kind.COMMIT, None, None, F()),
    ("COMMIT AND CHAIN", Kind.COMMIT, None, None, F({"chain"})),
    ("COMMIT AND NO CHAIN", Kind.COMMIT, None, None, F()),
    ("ROLLBACK", Kind.ROLLBACK, None, None, F()),
    ("ABORT", Kind.ROLLBACK, None, None, F()),
    ("ROLLBACK AND CHAIN", Kind.ROLLBACK, None, None, F({"chain"})),
    ("SAVEPOINT sp1", Kind.SAVEPOINT, "sp1", None, F()),
    ("RELEASE SAVEPOINT sp1", Kind.RELEASE, "sp1", None, F()),
    ("RELEASE \"Sp\"", Kind.RELEASE, "Sp", None, F()),
    ("ROLLBACK TO SAVEPOINT sp1", Kind.ROLLBACK_TO, "sp1", None, F()),
    ("ROLLBACK TO sp1", Kind.ROLLBACK_TO, "sp1", None, F()),
    ("PREPARE TRANSACTION 'gid-1'", Kind.PREPARE_TRANSACTION, "gid-1", None, F()),
    ("COMMIT PREPARED 'gid-1'", Kind.COMMIT_PREPARED, "gid-1", None, F()),
    ("ROLLBACK PREPARED 'gid-1'", Kind.ROLLBACK_PREPARED, "gid-1", None, F()),
    # --- DISCARD
    ("DISCARD ALL", Kind.DISCARD_ALL, None, None, F()),
    ("DISCARD TEMP", Kind.DISCARD_TEMP, None, None, F()),
    ("DISCARD TEMPORARY", Kind.DISCARD_TEMP, None, None, F()),
    ("DISCARD PLANS", Kind.DISCARD_PLANS, None, None, F()),
    ("DISCARD SEQUENCES", Kind.DISCARD_SEQUENCES, None, None, F()),
    # --- LISTEN / NOTIFY
    ("LISTEN jobs", Kind.LISTEN, "jobs", None, F()),
    ("LISTEN \"Jobs\"", Kind.LISTEN, "Jobs", None, F()),
    ("UNLISTEN jobs", Kind.UNLISTEN, "jobs", None, F()),
    ("UNLISTEN *", Kind.UNLISTEN, None, None, F({"all"})),
    ("NOTIFY jobs", Kind.NOTIFY, "jobs", None, F()),
    ("NOTIFY jobs, 'payload'", Kind.NOTIFY, "jobs", "payload", F()),
    # --- prepared statements
    ("EXECUTE q1", Kind.EXECUTE, "q1", None, F()),
    ("EXECUTE q1(1, 'a')", Kind.EXECUTE, "q1", None, F()),
    ("DEALLOCATE q1", Kind.DEALLOCATE, "q1", None, F()),
    ("DEALLOCATE PREPARE q1", Kind.DEALLOCATE, "q1", None, F()),
    ("DEALLOCATE ALL", Kind.DEALLOCATE, None, None, F({"all"})),
    # --- temporary objects
    ("CREATE TEMP TABLE t (a int)", Kind.TEMP_TABLE, "t", None, F()),
    ("CREATE TEMPORARY TABLE IF NOT EXISTS t (a int)", Kind.TEMP_TABLE, "t", None, F()),
    ("CREATE LOCAL TEMP TABLE t (a int)", Kind.TEMP_TABLE, "t", None, F()),
    ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", Kind.TEMP_TABLE, "t", None, F({"on_commit_drop"})),
    ("CREATE TABLE pg_temp.t (a int)", Kind.TEMP_TABLE, "t", None, F()),
    ("CREATE TEMP TABLE t AS SELECT 1", Kind.TEMP_TABLE, "t", None, F()),
    ("CREATE TEMP VIEW v AS SELECT 1", Kind.TEMP_TABLE, "v", None, F()),
    ("CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1", Kind.TEMP_TABLE, "v", None, F()),
    ("CREATE TEMP SEQUENCE s", Kind.TEMP_TABLE, "s", None, F()),
    ("SELECT 1 AS a INTO TEMP t", Kind.TEMP_TABLE, "t", None, F()),
    ("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'select 1'", Kind.TEMP_TABLE, "f", None, F()),
    ("CREATE TABLE temperatures (a int)", Kind.OTHER, None, None, F()),
    ("SELECT temp INTO t FROM x", Kind.OTHER, None, None, F()),
    # --- advisory locks
    ("SELECT pg_advisory_lock(1)", Kind.ADVISORY_LOCK, "pg_advisory_lock", None, F()),
    ("SELECT PG_TRY_ADVISORY_LOCK(1, 2)", Kind.ADVISORY_LOCK, "pg_try_advisory_lock", None, F()),
    ("SELECT pg_advisory_lock_shared($1)", Kind.ADVISORY_LOCK, "pg_advisory_lock_shared", None, F()),
    (
        "SELECT id FROM jobs WHERE pg_catalog.pg_try_advisory_lock_shared(id) LIMIT 1",
        Kind.ADVISORY_LOCK, "pg_try_advisory_lock_shared", None, F(),
    ),
    ("UPDATE t SET a = pg_advisory_lock(a)", Kind.ADVISORY_LOCK, "pg_advisory_lock", None, F()),
    ("SELECT pg_advisory_unlock(1), pg_advisory_lock(2)", Kind.ADVISORY_LOCK, "pg_advisory_lock", None, F()),
    ("SELECT pg_advisory_xact_lock(1)", Kind.OTHER, None, None, F()),
    ("SELECT pg_try_advisory_xact_lock_shared(1)", Kind.OTHER, None, None, F()),
    ("SELECT pg_advisory_unlock(1)", Kind.ADVISORY_UNLOCK, "pg_advisory_unlock", None, F()),
    ("SELECT pg_advisory_unlock_shared(1)", Kind.ADVISORY_UNLOCK, "pg_advisory_unlock_shared", None, F()),
    ("SELECT pg_advisory_unlock_all()", Kind.ADVISORY_UNLOCK, "pg_advisory_unlock_all", None, F()),
    ("SELECT 'pg_advisory_lock(1)'", Kind.OTHER, None, None, F()),
    # --- the rest
    ("LOAD 'auto_explain'", Kind.LOAD, "auto_explain", None, F()),
    ("COPY t FROM STDIN", Kind.COPY_FROM_STDIN, None, None, F()),
    ("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", Kind.COPY_FROM_STDIN, None, None, F()),
    ("COPY t TO STDOUT", Kind.COPY_TO_STDOUT, None, None, F()),
    ("COPY (SELECT 1) TO STDOUT", Kind.COPY_TO_STDOUT, None, None, F()),
    ("COPY t TO 'server_side.csv'", Kind.OTHER, None, None, F()),
    ("COPY t FROM PROGRAM 'cat x'", Kind.OTHER, None, None, F()),
    ("DO $$ BEGIN PERFORM 1; END $$", Kind.DO, None, None, F()),
    ("CALL proc(1)", Kind.CALL, "proc", None, F()),
    ("CALL s.proc()", Kind.CALL, "s.proc", None, F()),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", Kind.CURSOR_WITH_HOLD, "c", None, F()),
    ("DECLARE c CURSOR FOR SELECT 1", Kind.OTHER, None, None, F()),
    # --- ordinary statements that reach the parser (keyword matched) but are OTHER
    ("SHOW search_path", Kind.OTHER, None, None, F()),
    ("SET CONSTRAINTS ALL DEFERRED", Kind.OTHER, None, None, F()),
    ("SELECT 1", Kind.OTHER, None, None, F()),
    ("INSERT INTO t VALUES (1)", Kind.OTHER, None, None, F()),
    # --- comments and parentheses before the keyword
    ("/* leading */ SET a = 1", Kind.SET, "a", "1", F()),
    ("-- line comment\nSET a = 1", Kind.SET, "a", "1", F()),
    ("/* outer /* nested */ still comment */\n  RESET a", Kind.RESET, "a", None, F()),
    ("  \n\tBEGIN READ ONLY", Kind.BEGIN, None, None, F({"read_only"})),
]  # fmt: skip


def _single(sql: str) -> Statement:
    analysis = QueryCache().analyze(sql)
    assert analysis.error is None, analysis.error
    assert len(analysis.statements) == 1, analysis
    return analysis.statements[0]


def test_table_covers_every_kind() -> None:
    covered = {kind for _, kind, *_ in CASES}
    assert covered == set(Kind) - {Kind.PREPARE}  # PREPARE has its own tests (text field)
    assert len(CASES) >= 60


@pytest.mark.parametrize(("sql", "kind", "name", "value", "flags"), CASES, ids=[c[0][:50] for c in CASES])
def test_statement(sql: str, kind: Kind, name: str | None, value: str | None, flags: frozenset[str]) -> None:
    assert _single(sql) == Statement(kind, name, value, flags)


@pytest.mark.parametrize(
    ("sql", "name", "text"),
    [
        ("PREPARE q1 AS SELECT 1", "q1", "SELECT 1"),
        ("PREPARE q2 (int, text) AS SELECT $1, $2", "q2", "SELECT $1, $2"),
        (
            'prepare "Q3" (numeric(10, 2)) as\n  INSERT INTO t VALUES ($1) ;',
            "Q3",
            "INSERT INTO t VALUES ($1)",
        ),
        ("PREPARE q4 AS SELECT 'caf\u00e9' AS x", "q4", "SELECT 'caf\u00e9' AS x"),
    ],
)
def test_prepare_records_the_inner_statement(sql: str, name: str, text: str) -> None:
    assert _single(sql) == Statement(Kind.PREPARE, name, text=text)


def test_prepare_text_inside_multi_statement_query() -> None:
    analysis = QueryCache().analyze("SELECT '\u00fc\u20ac'; PREPARE p AS SELECT '\u00e9' ; EXECUTE p")
    assert [s.kind for s in analysis.statements] == [Kind.OTHER, Kind.PREPARE, Kind.EXECUTE]
    assert analysis.statements[1].text == "SELECT '\u00e9'"
    # The prepared text can itself be analyzed when EXECUTE runs it.
    lock = QueryCache().analyze("PREPARE l AS SELECT pg_advisory_lock($1)").statements[0]
    assert lock.kind is Kind.PREPARE and lock.text is not None
    assert QueryCache().analyze(lock.text).statements[0].kind is Kind.ADVISORY_LOCK


def test_multi_statement_session_commands() -> None:
    analysis = QueryCache().analyze("SET a=1; SET b=2")
    assert analysis.statements == (Statement(Kind.SET, "a", "1"), Statement(Kind.SET, "b", "2"))
    assert analysis.only_session_commands and not analysis.mixed and not analysis.is_transaction_control

    analysis = QueryCache().analyze("SET a = 1; RESET b; SELECT set_config('c', 'd', false);")
    assert [s.kind for s in analysis.statements] == [Kind.SET, Kind.RESET, Kind.SET_CONFIG]
    assert analysis.only_session_commands


def test_mixed_statements() -> None:
    analysis = QueryCache().analyze("SET a=1; SELECT 1")
    assert analysis.statements == (Statement(Kind.SET, "a", "1"), Statement(Kind.OTHER))
    assert analysis.mixed and not analysis.only_session_commands

    analysis = QueryCache().analyze("SELECT 1; SET a=1")
    assert analysis.mixed
    # A session command hidden after a plain statement is still found by the fast path.
    analysis = QueryCache().analyze("SELECT 1; /* c */ -- d\n LISTEN x")
    assert [s.kind for s in analysis.statements] == [Kind.OTHER, Kind.LISTEN]
    assert not analysis.mixed  # LISTEN is not answered locally, so nothing is "mixed"


def test_transaction_control_property() -> None:
    for sql in ("BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION", "END", "ABORT AND CHAIN"):
        assert QueryCache().analyze(sql).is_transaction_control, sql
    for sql in ("BEGIN; SELECT 1", "SAVEPOINT a", "SELECT 1", "PREPARE TRANSACTION 'x'", "BEGIN; COMMIT"):
        assert not QueryCache().analyze(sql).is_transaction_control, sql


def test_transaction_block_in_one_query() -> None:
    analysis = QueryCache().analyze("BEGIN; SET LOCAL work_mem = '1GB'; SELECT 1; COMMIT")
    assert [s.kind for s in analysis.statements] == [Kind.BEGIN, Kind.SET_LOCAL, Kind.OTHER, Kind.COMMIT]
    assert analysis.mixed


def test_syntax_error_is_other_with_message() -> None:
    analysis = QueryCache().analyze("SET a = ")
    assert analysis.statements == (Statement(Kind.OTHER),)
    assert analysis.error is not None and "syntax error" in analysis.error
    assert not analysis.only_session_commands and not analysis.mixed


def test_empty_and_comment_only_texts() -> None:
    for sql in ("", "   ", ";", "-- SET a = 1", "/* SET a = 1 */", "/* unterminated SET a = 1"):
        assert QueryCache().analyze(sql) == Analysis((Statement(Kind.OTHER),), None), sql


def test_statements_are_hashable_and_frozen() -> None:
    statement = _single("SET a = 1")
    assert hash(statement) == hash(Statement(Kind.SET, "a", "1"))
    with pytest.raises(AttributeError):
        statement.kind = Kind.OTHER  # type: ignore[misc]
