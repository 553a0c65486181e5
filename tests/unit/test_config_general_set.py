"""Admin SET key TO value and SHOW CONFIG rows."""

from __future__ import annotations

import pytest

from pgdog_ev.config import ConfigError, General
from pgdog_ev.config.general_set import apply_override, general_items, general_rows
from pgdog_ev.config.schema import GENERAL_KEYS


def test_apply_override_parses_with_schema() -> None:
    base = General()
    assert apply_override(base, "checkout_timeout", "250").checkout_timeout == 250
    assert apply_override(base, "CHECKOUT_TIMEOUT", " '250' ").checkout_timeout == 250
    assert apply_override(base, "pooler_mode", "session").pooler_mode == "session"
    assert apply_override(base, "dry_run", "on").dry_run is True
    assert apply_override(base, "max_pool_size", "20").default_pool_size == 20
    assert apply_override(base, "query_timeout", "0").query_timeout is None
    assert apply_override(base, "query_timeout", "off").query_timeout is None
    assert apply_override(base, "query_timeout", "100").query_timeout == 100
    assert apply_override(base, "mirror_exposure", "0.25").mirror_exposure == 0.25
    assert base == General()  # the original is untouched


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("checkout_timeout", "5s", 'expected an integer (milliseconds), got "5s"'),
        ("pooler_mode", "statement", "not supported"),
        ("load_balancing_strategy", "x", '"random", "round_robin"'),
        ("default_pool_size", "0", "must be >= 1"),
        ("min_pool_size", "50", "would exceed default_pool_size"),
    ],
)
def test_apply_override_bad_value(key: str, value: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_override(General(), key, value)
    assert info.value.table == "[general]" and info.value.key == key
    assert text in str(info.value)


def test_apply_override_unknown_key() -> None:
    with pytest.raises(ConfigError, match='unknown setting "nope"') as info:
        apply_override(General(), "nope", "1")
    assert info.value.key == "nope"


def test_apply_override_startup_only_key() -> None:
    with pytest.raises(ConfigError, match="cannot be changed while running"):
        apply_override(General(), "port", "7000")


def test_general_items_sorted_and_complete() -> None:
    items = general_items(General())
    keys = [key for key, _ in items]
    assert keys == sorted(keys) == sorted(spec.name for spec in GENERAL_KEYS)
    values = dict(items)
    assert values["port"] == "6432"
    assert values["query_timeout"] == ""
    assert values["dry_run"] == "false"
    assert values["mirror_exposure"] == "1.0"
    assert values["pooler_mode"] == "transaction"
    rows = general_rows(General(port=1))
    assert ("port", "1", "6432", False) in rows


def test_show_then_set_round_trips() -> None:
    """Every value SHOW CONFIG prints is accepted back by SET and yields the same value."""
    general = General(query_timeout=5, tls_certificate="/x", two_phase_commit_auto=True, mirror_exposure=0.3)
    for spec in GENERAL_KEYS:
        rendered = spec.render(getattr(general, spec.name))
        assert spec.from_text(rendered) == getattr(general, spec.name), spec.name
