"""Value kinds: how one configuration value is checked, parsed and printed.

A value reaches the proxy from three places: a TOML file (already typed by ``tomllib``), an
environment variable or a database URL (text), and the admin ``SET key TO value`` command (text).
Keeping each kind's rules in one object means all three paths accept exactly the same values and
report problems in the same words, and SHOW CONFIG prints values in a form ``SET`` accepts back.

Kinds know nothing about where a value came from; they raise :class:`Invalid` with a bare detail
and the caller adds file/table/key.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass, field

_INT_TEXT = re.compile(r"[+-]?[0-9](?:_?[0-9])*")
_TRUE_WORDS = frozenset({"true", "on", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "off", "no", "0"})


class Invalid(ValueError):
    """A value that its kind rejects; ``args[0]`` is the human detail without any location."""


def describe(raw: object) -> str:
    """Name a raw value's TOML type and show it, so "expected X, got Y" says what Y really was."""
    if isinstance(raw, bool):
        return f"boolean {'true' if raw else 'false'}"
    if isinstance(raw, int):
        return f"integer {raw}"
    if isinstance(raw, float):
        return f"float {raw!r}"
    if isinstance(raw, str):
        return f"string {quote(raw)}"
    if isinstance(raw, list):
        return "an array"
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, datetime.datetime | datetime.date | datetime.time):
        return f"date/time {raw.isoformat()}"
    return type(raw).__name__


def quote(text: str, limit: int = 60) -> str:
    """JSON-quote (so control characters stay visible) and shorten what users typed."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return json.dumps(text, ensure_ascii=False)


def _quote_all(words: tuple[str, ...]) -> str:
    return ", ".join(quote(word) for word in words)


class Kind:
    """Base of all kinds; ``expected`` completes the sentence "expected ..."."""

    expected: str = "a value"

    def from_toml(self, raw: object) -> object:
        raise NotImplementedError

    def from_text(self, text: str) -> object:
        raise NotImplementedError

    def render(self, value: object) -> str:
        return str(value)

    def wrong_type(self, raw: object) -> Invalid:
        return Invalid(f"expected {self.expected}, got {describe(raw)}")


@dataclass(frozen=True)
class IntKind(Kind):
    """A whole number; ``unit`` is shown in messages because "5s" for milliseconds is common."""

    minimum: int | None = 0
    maximum: int | None = None
    unit: str | None = None

    @property
    def expected(self) -> str:  # type: ignore[override]
        return f"an integer ({self.unit})" if self.unit else "an integer"

    def from_toml(self, raw: object) -> int:
        # bool is a subclass of int in Python; TOML's `true` is not a number.
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise self.wrong_type(raw)
        return self._check_range(raw)

    def from_text(self, text: str) -> int:
        stripped = text.strip()
        if not _INT_TEXT.fullmatch(stripped):
            raise Invalid(f"expected {self.expected}, got {quote(text)}")
        return self._check_range(int(stripped.replace("_", "")))

    def _check_range(self, value: int) -> int:
        if self.minimum is not None and value < self.minimum:
            raise Invalid(f"must be >= {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise Invalid(f"must be <= {self.maximum}, got {value}")
        return value


@dataclass(frozen=True)
class FloatKind(Kind):
    """A real number; TOML integers are accepted because `mirror_exposure = 1` is natural."""

    minimum: float | None = None
    maximum: float | None = None
    expected: str = "a number"

    def from_toml(self, raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise self.wrong_type(raw)
        return self._check(float(raw))

    def from_text(self, text: str) -> float:
        try:
            value = float(text.strip().replace("_", ""))
        except ValueError:
            raise Invalid(f"expected {self.expected}, got {quote(text)}") from None
        return self._check(value)

    def render(self, value: object) -> str:
        return repr(value)

    def _check(self, value: float) -> float:
        if not math.isfinite(value):
            raise Invalid(f"must be a finite number, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise Invalid(f"must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise Invalid(f"must be <= {self.maximum}, got {value!r}")
        return value


@dataclass(frozen=True)
class BoolKind(Kind):
    """true/false; text form also takes on/off/yes/no/1/0 like PgDog's environment parsing."""

    expected: str = "a boolean (true or false)"

    def from_toml(self, raw: object) -> bool:
        if not isinstance(raw, bool):
            raise self.wrong_type(raw)
        return raw

    def from_text(self, text: str) -> bool:
        word = text.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise Invalid(f"expected {self.expected}, got {quote(text)}")

    def render(self, value: object) -> str:
        return "true" if value else "false"


@dataclass(frozen=True)
class StrKind(Kind):
    """Free text; ``nonempty`` for names and hosts where "" can only be a mistake."""

    nonempty: bool = False
    pattern: re.Pattern[str] | None = None
    pattern_doc: str = ""
    expected: str = "a string"

    def from_toml(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise self.wrong_type(raw)
        return self._check(raw)

    def from_text(self, text: str) -> str:
        return self._check(text)

    def _check(self, value: str) -> str:
        if self.nonempty and not value:
            raise Invalid("must not be empty")
        if "\x00" in value:
            raise Invalid("must not contain NUL characters")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise Invalid(f"expected {self.pattern_doc}, got {quote(value)}")
        return value


@dataclass(frozen=True)
class ChoiceKind(Kind):
    """One word out of a fixed set; ``rejected`` maps words PgDog knows but we refuse to a reason."""

    choices: tuple[str, ...] = ()
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def expected(self) -> str:  # type: ignore[override]
        return f"one of {_quote_all(self.choices)}"

    def from_toml(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise self.wrong_type(raw)
        return self._check(raw)

    def from_text(self, text: str) -> str:
        # Text comes from shells and SQL where case is not significant to the user.
        return self._check(text.strip().lower())

    def _check(self, value: str) -> str:
        if value in self.choices:
            return value
        if value in self.rejected:
            raise Invalid(f"{quote(value)} {self.rejected[value]}; use one of {_quote_all(self.choices)}")
        raise Invalid(f"expected {self.expected}, got {quote(value)}")


@dataclass(frozen=True)
class StrListKind(Kind):
    """An array of non-empty strings (``passwords``, ``databases``)."""

    expected: str = "an array of strings"

    def from_toml(self, raw: object) -> tuple[str, ...]:
        if not isinstance(raw, list):
            raise self.wrong_type(raw)
        items: list[str] = []
        for index, item in enumerate(raw, start=1):
            if not isinstance(item, str):
                raise Invalid(f"element #{index}: expected a string, got {describe(item)}")
            if not item:
                raise Invalid(f"element #{index}: must not be empty")
            items.append(item)
        return tuple(items)

    def from_text(self, text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())

    def render(self, value: object) -> str:
        assert isinstance(value, tuple)
        return ",".join(value)
