"""Decide, without parsing, whether a query text can contain a session-affecting statement.

Parsing costs tens of microseconds and almost every query a pooler sees is a plain
SELECT/INSERT/UPDATE/DELETE. Only the head of each statement is examined for its first
keyword. A text not starting with a session keyword (SET, BEGIN, LISTEN, ...) is lower-cased
once and searched for ``_config`` / ``_advisory``, because set_config() and advisory-lock calls
can sit in any statement (``UPDATE t SET a = pg_advisory_lock(1)``). CREATE, SELECT, WITH and
DECLARE statements are also searched for TEMP, INTO + TEMP, and HOLD.

The filter may say "parse" for a text that turns out harmless (a keyword inside a string
literal, a column called ``temperature``); it must never say "skip" for a text the analyzer
would classify as anything but OTHER. Statement boundaries are found by looking after every
``;``, including ones inside literals and comments: that only adds false positives.
"""

from __future__ import annotations

import re
from typing import Final

# Whitespace, `--` comments and opening parentheses may precede the first keyword. Like the
# server's lexer, a `--` comment ends at CR as well as LF.
_LEAD: Final = re.compile(r"(?:\s+|--[^\n\r]*|\()*")
_COMMENT_EDGE: Final = re.compile(r"/\*|\*/")
_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z_0-9$]*")
# A `;` followed by something other than whitespace or more `;` starts another statement. Each
# match takes a whole run of `;` and whitespace; a run that ends the text yields an empty first
# keyword. (A lookahead for the next character made every `;` of a trailing run rescan the rest
# of it: quadratic, 34 s for 40,000 of them.)
_NEXT_STATEMENT: Final = re.compile(r";[\s;]*")
# set_config and pg_*advisory* both contain `_` followed by the distinctive part; a pattern
# starting with a literal lets the regex engine skip ahead with a fast scan (about 1 ms/MB,
# against 20 ms/MB for a case-insensitive alternation). needs_parse uses it only for non-ASCII
# texts (see _mentions_function_hint); mentions_session_functions always.
_FUNCTION_HINT: Final = re.compile(r"_(?i:config|advisory)")

_ALWAYS: Final = frozenset(
    {
        "set", "reset", "begin", "start", "commit", "end", "rollback", "abort", "savepoint",
        "release", "prepare", "execute", "deallocate", "discard", "listen", "unlisten",
        "notify", "load", "copy", "do", "call",
    }
)  # fmt: skip
# Statements that create session state only with certain words in them (all must occur):
# CREATE TEMP ..., SELECT ... INTO TEMP ..., DECLARE ... WITH HOLD.
_BODY_WORDS: dict[str, tuple[str, ...]] = {
    "create": ("temp",),
    "select": ("into", "temp"),
    "with": ("into", "temp"),
    "declare": ("hold",),
}


def _skip_block_comment(text: str, pos: int) -> int:
    """Return the index after the (nested) comment opening at ``pos``, or -1 if unterminated."""
    depth = 0
    for edge in _COMMENT_EDGE.finditer(text, pos):
        depth += 1 if edge.group() == "/*" else -1
        if depth == 0:
            return edge.end()
    return -1


def first_keyword(text: str, pos: int = 0) -> str:
    """The lower-cased first word at or after ``pos``, past whitespace, comments and ``(``;
    empty when the statement does not start with a word."""
    while True:
        lead = _LEAD.match(text, pos)
        assert lead is not None  # the pattern matches the empty string
        pos = lead.end()
        if not text.startswith("/*", pos):
            break
        pos = _skip_block_comment(text, pos)
        if pos < 0:
            return ""
    word = _WORD.match(text, pos)
    return word.group().lower() if word else ""


def _has_all(lowered: str, words: tuple[str, ...]) -> bool:
    # A plain loop: a generator inside all() would cost more than the searches themselves.
    for word in words:  # noqa: SIM110
        if word not in lowered:
            return False
    return True


def leading_word(text: str) -> tuple[int, int]:
    """Where the first word of ``text`` starts and ends when only spaces, tabs and line breaks
    precede it, the word being ASCII (``[A-Za-z_][A-Za-z_0-9$]*``). ``start == end`` when the
    text starts otherwise (a comment, a parenthesis, a form feed): callers then take their full
    rules. Compiled, this loop costs a third of the equivalent regex match."""
    n = len(text)
    i = 0
    while i < n:
        c = ord(text[i])
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    start = i
    while i < n:
        c = ord(text[i])
        if 97 <= c <= 122 or 65 <= c <= 90 or c == 95 or (i > start and (48 <= c <= 57 or c == 36)):
            i += 1
        else:
            break
    return start, i


def _mentions_function_hint(text: str, lowered: str) -> bool:
    """``_FUNCTION_HINT.search(text)``, by substring search where that is the same thing: in an
    ASCII text the regex matches exactly where the lower-cased text holds one of the two words.
    Elsewhere its case-insensitive match also takes a few non-ASCII letters (dotless i, long s)."""
    if "_config" in lowered or "_advisory" in lowered:
        return True
    return not text.isascii() and _FUNCTION_HINT.search(text) is not None


def needs_parse(text: str) -> bool:
    """False only if no statement in ``text`` can be anything but OTHER."""
    start, end = leading_word(text)
    # One lower-cased copy serves the keyword, the function hint and the body words of every
    # statement. Its indices are the text's unless lower-casing lengthened a character.
    lowered = text.lower()
    if end <= start:
        keyword = first_keyword(text)
    elif len(lowered) == len(text):
        keyword = lowered[start:end]
    else:
        keyword = text[start:end].lower()
    if keyword in _ALWAYS:
        return True
    if _mentions_function_hint(text, lowered):
        return True
    words = _BODY_WORDS.get(keyword)
    if words is not None and _has_all(lowered, words):
        return True
    semicolon = text.find(";")
    if semicolon < 0 or not text[semicolon:].strip("; \t\r\n"):
        return False  # one statement, perhaps ended by `;` (the usual shape)
    for boundary in _NEXT_STATEMENT.finditer(text):
        keyword = first_keyword(text, boundary.end())
        if keyword in _ALWAYS:
            return True
        words = _BODY_WORDS.get(keyword)
        if words is not None and _has_all(lowered, words):
            return True
    return False


def mentions_session_functions(text: str) -> bool:
    """Whether ``text`` may call set_config() or an advisory-lock function."""
    return _FUNCTION_HINT.search(text) is not None


def word_at(raw: bytes, pos: int, word: bytes) -> bool:
    """Whether ``raw`` holds the lower-case ASCII ``word`` at ``pos``, its letters in any case
    (as in the text lower-cased: only A-Z fold)."""
    if pos + len(word) > len(raw):
        return False
    for k in range(len(word)):
        c = raw[pos + k]
        if 65 <= c <= 90:
            c += 32
        if c != word[k]:
            return False
    return True


def blank_prefix(raw: bytes) -> int:
    """Where the first byte that is not a space, tab or line break is (``leading_word``'s
    blanks; a form feed or a comment ends them, and callers then take their full rules)."""
    n = len(raw)
    i = 0
    while i < n:
        c = raw[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    return i


def ends_here(raw: bytes, pos: int) -> bool:
    """Whether only ``;``, spaces, tabs and line breaks are left from ``pos`` (a first ``;``):
    the text is one statement (the prefilters' test, with fewer blanks)."""
    for k in range(pos, len(raw)):
        c = raw[k]
        if not (c == 59 or c == 32 or c == 9 or c == 13 or c == 10):
            return False
    return True


def plain_statement(raw: bytes) -> bool:
    """True only for a text ``needs_parse`` would let pass unparsed, judged on its bytes: one
    ASCII SELECT, INSERT, UPDATE, DELETE or WITH statement (perhaps ended by ``;``) that
    mentions neither ``_config`` nor ``_advisory``, and, for SELECT and WITH, not both INTO and
    TEMP. False sends the text to the full rules (decoded, ``needs_parse``, the cache), so it
    may be said of harmless texts; True must never be said of one they would parse.

    The common Query costs a decoded copy, a hash and a set lookup, and ``needs_parse``'s
    lower-cased copy and scans; compiled, this is one loop over the bytes and none of them."""
    n = len(raw)
    i = start = blank_prefix(raw)
    while i < n:
        c = raw[i]
        if 97 <= c <= 122 or 65 <= c <= 90:
            i += 1
        else:
            break
    if i < n:
        c = raw[i]
        if c == 95 or c == 36 or 48 <= c <= 57 or c >= 128:
            return False  # the word goes on: not a keyword of ours
    length = i - start
    if length == 6:
        if not (word_at(raw, start, b"select") or word_at(raw, start, b"insert")
                or word_at(raw, start, b"update") or word_at(raw, start, b"delete")):
            return False
    elif length != 4 or not word_at(raw, start, b"with"):
        return False
    # One pass over the rest, natively: a bytes.find or `in` costs more than the whole loop
    # (a method call and a buffer each). SELECT ... INTO TEMP creates a table, so SELECT and
    # WITH texts are also searched for both words.
    first = raw[start] | 32
    words = first == 115 or first == 119
    into = temp = False
    while i < n:
        c = raw[i]
        if c >= 128:
            return False  # non-ASCII: the full rules (a case-insensitive match takes more letters)
        if c == 95:
            if word_at(raw, i + 1, b"config") or word_at(raw, i + 1, b"advisory"):
                return False
        elif c == 59:
            if not ends_here(raw, i):
                return False  # another statement follows
            break
        elif words:
            c |= 32
            if c == 105 and word_at(raw, i + 1, b"nto"):
                into = True
            elif c == 116 and word_at(raw, i + 1, b"emp"):
                temp = True
        i += 1
    return not (into and temp)
