"""Arbitrary input as pgdog.toml / users.toml: a Config or a ConfigError, never anything else."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgdog_ev.config import Config, ConfigError, load_config_text
from pgdog_ev.config.schema import ADMIN_KEYS, DATABASE_KEYS, GENERAL_KEYS, USER_KEYS


def entropy(n: int) -> bytes:
    return bytes(n)


def outcome(pgdog: str | None, users: str | None) -> None:
    try:
        result = load_config_text(pgdog, users, entropy=entropy)
    except ConfigError as error:
        assert str(error)
    else:
        assert isinstance(result, Config)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_as_pgdog_toml(text: str) -> None:
    outcome(text, None)


@settings(max_examples=200)
@given(st.text())
def test_arbitrary_text_as_users_toml(text: str) -> None:
    outcome(None, text)


# TOML-shaped documents built from real key names, so that most examples get past the parser and
# exercise the type checks, cross-checks and users expansion.
_KEYS = sorted(
    {spec.name for spec in GENERAL_KEYS + DATABASE_KEYS + USER_KEYS + ADMIN_KEYS}
    | {"max_pool_size", "databases", "unknown_key"}
)
_SCALARS = st.one_of(
    st.integers(min_value=-3, max_value=70000),
    st.sampled_from(["0", "transaction", "session", "statement", "app", "", "primary", "replica", "5s"]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
_VALUES = st.one_of(_SCALARS, st.lists(st.sampled_from(["app", "b", ""]), max_size=3))


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    return repr(value)


def _table(header: str) -> st.SearchStrategy[str]:
    pairs = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=5)
    return pairs.map(lambda d: header + "\n" + "".join(f"{k} = {_render(v)}\n" for k, v in d.items()))


_PGDOG_DOCS = st.lists(
    st.one_of(_table("[general]"), _table("[[databases]]"), _table("[admin]"), _table("[rewrite]")),
    max_size=4,
).map("".join)
_USERS_DOCS = st.lists(st.one_of(_table("[[users]]"), _table("[admin]")), max_size=3).map("".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_PGDOG_DOCS, _USERS_DOCS)
def test_structured_documents(pgdog: str, users: str) -> None:
    outcome(pgdog, users)


@settings(max_examples=200)
@given(st.text(alphabet=string.printable, max_size=80))
def test_arbitrary_database_urls(url: str) -> None:
    try:
        load_config_text(None, None, [url], entropy=entropy)
    except ConfigError:
        pass
