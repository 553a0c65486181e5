"""How SET arguments become the stored setting text, and set_config()'s boolean argument."""

from __future__ import annotations

import pytest

from pgdog_ev.sql.analysis import Kind, QueryCache
from pgdog_ev.sql.guc_text import quote_identifier


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("public", "public"),
        ("_a1", "_a1"),
        ("B", '"B"'),
        ("a b", '"a b"'),
        ("$user", '"$user"'),
        ('say "hi"', '"say ""hi"""'),
        ("", '""'),
        ("1abc", '"1abc"'),
        ("caf\u00e9", '"caf\u00e9"'),
        ("select", '"select"'),  # reserved
        ("int", '"int"'),  # column-name keyword
        ("left", '"left"'),  # type/function-name keyword
        ("name", "name"),  # unreserved keywords stay bare
        ("schema", "schema"),
    ],
)
def test_quote_identifier_matches_postgresql(name: str, quoted: str) -> None:
    assert quote_identifier(name) == quoted


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ('SET search_path TO "$user", public', '"$user", public'),
        ("SET search_path TO 'MySchema'", '"MySchema"'),
        ("SET search_path TO ''", '""'),  # as PostgreSQL stores it, though it cannot be re-read
        ("SET temp_tablespaces TO 'a b', c", '"a b", c'),
        ("SET datestyle TO 'ISO', 'MDY'", "ISO, MDY"),  # not a quoting list
        ("SET pgdog.x TO 'A b'", "A b"),
    ],
)
def test_list_settings_quote_items(sql: str, value: str) -> None:
    assert QueryCache().analyze(sql).statements[0].value == value


@pytest.mark.parametrize(
    ("literal", "is_local"),
    [
        ("true", True), ("'t'", True), ("'TR'", True), ("'yes'", True), ("'y'", True), ("'on'", True),
        ("' 1 '", True), ("false", False), ("'f'", False), ("'no'", False), ("'n'", False),
        ("'off'", False), ("'of'", False), ("'0'", False), ("NULL", False),
        ("'o'", None), ("'truex'", None), ("''", None), ("'2'", None), ("1", None),
    ],
)  # fmt: skip
def test_set_config_is_local_forms(literal: str, is_local: bool | None) -> None:
    (statement,) = QueryCache().analyze(f"SELECT set_config('a', 'b', {literal})").statements
    if is_local is None:
        assert statement.kind is Kind.UNTRACKED_SETTING
    else:
        assert statement.kind is Kind.SET_CONFIG
        assert ("local" in statement.flags) is is_local
