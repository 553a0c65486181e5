"""Runtime view and change of ``[general]``: admin ``SHOW CONFIG`` and ``SET key TO value``.

Both go through the schema so that what SHOW prints, SET accepts back, and both agree with what
the file loader accepts. A change produces a new frozen :class:`General`; the caller swaps it in.
As in PgDog, such changes live in memory only and a reload from disk discards them.
"""

from __future__ import annotations

import dataclasses

from .errors import ConfigError
from .kinds import Invalid, quote
from .model import General
from .schema import GENERAL_KEYS, KeySpec, general_spec

SET_SOURCE = "SET"


def _strip_quotes(value: str) -> str:
    """Admin clients write both ``SET k TO 5`` and ``SET k TO '5'``; the quotes are not the value."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def apply_override(general: General, key: str, value: str) -> General:
    """A copy of ``general`` with ``key`` set from its text form; ConfigError if not acceptable."""
    name = key.strip().lower()
    spec = general_spec(name)
    if spec is None:
        raise ConfigError(
            f"unknown setting {quote(key)}", file=SET_SOURCE, table="[general]", key=key, key_in_prefix=False
        )
    if not spec.changeable:
        raise ConfigError(
            "cannot be changed while running; edit pgdog.toml and restart",
            file=SET_SOURCE,
            table="[general]",
            key=spec.name,
        )
    try:
        parsed = spec.from_text(_strip_quotes(value))
    except Invalid as exc:
        raise ConfigError(str(exc), file=SET_SOURCE, table="[general]", key=spec.name) from None
    updated = dataclasses.replace(general, **{spec.name: parsed})
    if updated.min_pool_size > updated.default_pool_size:
        raise ConfigError(
            f"min_pool_size {updated.min_pool_size} would exceed default_pool_size {updated.default_pool_size}",
            file=SET_SOURCE,
            table="[general]",
            key=spec.name,
        )
    return updated


def general_items(general: General) -> list[tuple[str, str]]:
    """(key, value) for every [general] key, sorted by key; unset values print as ""."""
    return [(spec.name, spec.render(getattr(general, spec.name))) for spec in _sorted_specs()]


def general_rows(general: General) -> list[tuple[str, str, str, bool]]:
    """(key, value, default, changeable) for a PgBouncer-style SHOW CONFIG with more columns."""
    return [
        (spec.name, spec.render(getattr(general, spec.name)), spec.render(spec.default), spec.changeable)
        for spec in _sorted_specs()
    ]


def _sorted_specs() -> list[KeySpec]:
    return sorted(GENERAL_KEYS, key=lambda spec: spec.name)
