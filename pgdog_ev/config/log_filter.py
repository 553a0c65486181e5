"""``log_level``: PgDog's RUST_LOG-style filter, reduced to the one level pgdog-ev logs at.

PgDog passes the value to a ``tracing`` EnvFilter, so operators write ``info``, ``debug`` or
``pgdog=debug,tokio=warn,info``. pgdog-ev has one family of loggers, so the filter boils down to
one level: a directive naming ``pgdog``/``pgdog_ev`` (any ``::``/``.`` sub-target) wins, as the
more specific one does in an EnvFilter; else the first bare level; else ``info``. Directives for
other targets are accepted and ignored, so a RUST_LOG shared with PgDog keeps working.

A malformed filter is a configuration error rather than a silent fallback to ``info``: an
operator who typed ``degub`` while chasing an incident should hear about it from ``configcheck``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .kinds import Invalid, Kind, quote

# EnvFilter level names (case-insensitive); "warning" accepted as Python spells it.
LEVELS: tuple[str, ...] = ("trace", "debug", "info", "warn", "warning", "error", "off")
_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:(?:::|\.)[A-Za-z0-9_]+)*")
_OWN_TARGETS = ("pgdog", "pgdog_ev")


def _own(target: str) -> bool:
    root = re.split(r"::|\.", target, maxsplit=1)[0]
    return root in _OWN_TARGETS


def parse_log_filter(text: str) -> str:
    """The effective level word (one of LEVELS, lower case) of a filter; Invalid if malformed."""
    bare: str | None = None
    own: str | None = None
    directives = [part.strip() for part in text.split(",")]
    if not any(directives):
        raise Invalid("must not be empty")
    for directive in directives:
        if not directive:
            continue  # "info," is accepted by EnvFilter too
        target, sep, level = directive.partition("=")
        target, level = target.strip(), level.strip().lower()
        if not sep:
            if target.lower() not in LEVELS:
                raise Invalid(
                    f"expected a level ({', '.join(LEVELS)}) or target=level directives, got {quote(directive)}"
                )
            bare = bare or target.lower()
            continue
        if "[" in target or "{" in target:
            continue  # span/field filters: meaningful to PgDog only
        if not _TARGET.fullmatch(target):
            raise Invalid(f"bad target {quote(target)} in directive {quote(directive)}")
        if level not in LEVELS:
            raise Invalid(f"bad level {quote(level)} in directive {quote(directive)} (expected one of {', '.join(LEVELS)})")
        if _own(target) and own is None:
            own = level
    return own or bare or "info"


@dataclass(frozen=True)
class LogFilterKind(Kind):
    """The ``log_level`` value: kept as written (SHOW CONFIG echoes it), checked on the way in."""

    expected: str = 'a log level or filter such as "info" or "pgdog=debug,info"'

    def from_toml(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise self.wrong_type(raw)
        return self.from_text(raw)

    def from_text(self, text: str) -> str:
        parse_log_filter(text)
        return text.strip()
