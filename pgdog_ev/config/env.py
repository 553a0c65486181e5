"""``PGDOG_<KEY>`` environment variables for ``[general]`` keys.

Container deployments set pooler knobs through the environment. As in PgDog, a variable supplies
the value of a key that pgdog.toml does not set; a key written in the file keeps the file's value,
so the file stays the single place to look when both exist. Unlike PgDog, an unparsable value is
an error naming the variable rather than being silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .kinds import Invalid
from .schema import ENV_ALIASES, GENERAL_ALIASES, GENERAL_KEYS

ENV_PREFIX = "PGDOG_"
ENV_SOURCE = "environment"


def env_var(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _names_for(key: str) -> list[str]:
    """Variables that may carry ``key``, preferred first."""
    names = [env_var(key)]
    names += [env_var(alias) for alias, target in GENERAL_ALIASES.items() if target == key]
    names += [name for name, target in ENV_ALIASES.items() if target == key]
    if key == "log_level":
        names.append("RUST_LOG")  # PgDog's log filter comes from RUST_LOG
    return names


def general_from_env(env: Mapping[str, str], written: frozenset[str]) -> dict[str, Any]:
    """Values for the [general] keys not in ``written`` (the keys the file set)."""
    found: dict[str, Any] = {}
    for spec in GENERAL_KEYS:
        if spec.name in written:
            continue
        for name in _names_for(spec.name):
            if name not in env:
                continue
            try:
                found[spec.name] = spec.from_text(env[name])
            except Invalid as exc:
                raise ConfigError(str(exc), file=ENV_SOURCE, key=name) from None
            break
    return found
