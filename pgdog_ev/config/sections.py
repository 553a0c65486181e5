"""Check one parsed TOML table against a key table from :mod:`schema`.

This is where PgDog's ``deny_unknown_fields`` strictness lives: a misspelt key is far more often a
silent misconfiguration than a deliberate extension, so it is an error, with the nearest known
key suggested. Every problem becomes a :class:`ConfigError` naming file, table and key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .kinds import Invalid, describe, quote
from .schema import KeySpec


@dataclass(frozen=True)
class Where:
    """The file and table a value came from, for error messages."""

    file: str
    table: str

    def error(self, detail: str, key: str | None = None, *, key_in_prefix: bool = True) -> ConfigError:
        return ConfigError(detail, file=self.file, table=self.table, key=key, key_in_prefix=key_in_prefix)


@dataclass(frozen=True)
class CheckedTable:
    """Parsed values for every key of the table (defaults filled in) and which keys were written."""

    values: dict[str, Any]
    present: frozenset[str]


def unknown_key(where: Where, key: str, known: list[str], hint: str = "") -> ConfigError:
    detail = f"unknown key {quote(key)}"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        detail += f" (did you mean {quote(close[0])}?)"
    elif hint:
        detail += f" ({hint})"
    return where.error(detail, key, key_in_prefix=False)


def as_table(raw: object, where: Where) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise where.error(f"expected a table, got {describe(raw)}")
    return raw


def as_array_of_tables(raw: object, where: Where) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise where.error(f"expected an array of tables, got {describe(raw)}")
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise where.error(f"entry #{index}: expected a table, got {describe(item)}")
    return raw


def entry_label(section: str, index: int, raw: Mapping[str, Any]) -> str:
    """``[[users]] #2 (name "bob")``: the position always, the name when there is a usable one."""
    label = f"[[{section}]] #{index}"
    name = raw.get("name")
    if isinstance(name, str) and name:
        label += f" (name {quote(name)})"
    return label


def check_table(
    raw: Mapping[str, Any],
    specs: Mapping[str, KeySpec],
    where: Where,
    aliases: Mapping[str, str] | None = None,
) -> CheckedTable:
    aliases = aliases or {}
    given: dict[str, Any] = {}
    for key, value in raw.items():
        canonical = aliases.get(key, key)
        if canonical not in specs:
            raise unknown_key(where, key, list(specs))
        if canonical in given:
            other = given[canonical][0]
            raise where.error(f"{quote(other)} and {quote(key)} are the same setting; keep one", key)
        given[canonical] = (key, value)
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            written_as, raw_value = given[name]
            try:
                values[name] = spec.from_toml(raw_value)
            except Invalid as exc:
                raise where.error(str(exc), written_as) from None
        elif spec.required:
            raise where.error(f"missing required key {quote(name)}", name, key_in_prefix=False)
        else:
            values[name] = spec.default
    return CheckedTable(values, frozenset(given))
