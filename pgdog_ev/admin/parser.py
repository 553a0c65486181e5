"""Admin command text into commands.

The console speaks a handful of fixed commands, not SQL, so there is no grammar
beyond words: keywords are case-insensitive, a trailing ';' is ignored, and
several commands in one Query run in order (psql -c 'PAUSE; SHOW POOLS').
``SET`` keeps its value as written (it may be quoted and contain spaces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SET = re.compile(r"^set\s+([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\bto\b|=)\s*(.*?)\s*$", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r'"[^"]*"|\'[^\']*\'|\S+')


class AdminSyntaxError(ValueError):
    """A command the console cannot read; the message says what it expected."""


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # upper case: SHOW, SET, PAUSE, ...
    args: tuple[str, ...]  # SHOW/PAUSE/...: lower-cased words; SET: (key, value as written)
    text: str


def split_statements(text: str) -> list[str]:
    """Split on ';' outside quotes; empty pieces (stray semicolons) are dropped."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _unquote(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        return word[1:-1]
    return word.lower()


def parse(statement: str) -> Command:
    """One statement (from :func:`split_statements`) into a Command."""
    text = statement.strip()
    if text[:3].lower() == "set" and (len(text) == 3 or text[3].isspace()):
        match = _SET.match(text)
        if match is None:
            raise AdminSyntaxError("expected SET <setting> TO <value>")
        key, value = match.group(1), match.group(2)
        if not value:
            raise AdminSyntaxError(f"SET {key}: a value is required")
        return Command("SET", (key.lower(), value), text)
    words = [_unquote(w) for w in _WORD.findall(text)]
    if not words:
        raise AdminSyntaxError("empty command")
    verb = words[0].upper()
    if verb == "SET":
        # A quoted 'set' gets here: only the grammar above gives a SET its key and value.
        raise AdminSyntaxError("expected SET <setting> TO <value>")
    return Command(verb, tuple(words[1:]), text)
