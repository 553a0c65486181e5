"""A lexer just good enough to route statements without parsing them.

Routing needs the words of a statement and its punctuation, never the contents of literals or
comments: ``SELECT 'INSERT'`` and ``SELECT 1 /* FOR UPDATE */`` are plain reads. One compiled
regex does all the work inside ``re.findall``, in C: each match first skips, possessively,
whitespace, comments and string literals (standard, E'' with backslash escapes, and, in the
variant used when the text holds a ``$``-quote opener, dollar-quoted bodies), then captures one
token: an identifier or keyword, a quoted identifier, a ``$n`` parameter, a number or one
punctuation character. The possessive quantifier keeps a run of whitespace from being split
in exponentially many ways when the text ends.

What the skip step cannot consume (an unterminated literal, a nested ``/* /* */ */`` comment,
which PostgreSQL allows but a regex cannot match) comes out as one of ``BAD_TOKENS``, so a
caller can tell "this text needs the real parser" with one ``isdisjoint`` call.

Like the server's lexer (with standard_conforming_strings on, the default and the only mode
libpg_query knows), a backslash escapes nothing in a standard string, identifiers may contain
``$`` and any non-ASCII character, and ``--`` comments end at CR as well as LF.
"""

from __future__ import annotations

import re
from typing import Final

# PostgreSQL: ident_start [A-Za-z\200-\377_], ident_cont adds [0-9$]; every non-ASCII UTF-8
# byte is in \200-\377, so every non-ASCII character is an identifier character.
IDENTIFIER_CHARS = "A-Za-z_\u0080-\U0010ffff"  # for a character class; ident_cont adds 0-9$
_ID = IDENTIFIER_CHARS
_SPACE = r"[ \t\n\r\f\v]+"
LINE_COMMENT = r"--[^\n\r]*"
BLOCK_COMMENT = r"/\*[^*/]*(?:(?:\*(?!/)|/(?!\*))[^*/]*)*\*/"  # without nesting
# The lookbehind keeps the e of `somee'x'` (an identifier, then a standard string) out.
_E_STRING = rf"(?<![{_ID}0-9$])[eE]'[^'\\]*(?:(?:\\[\s\S]|'')[^'\\]*)*'"
_STRING = r"'[^']*(?:''[^']*)*'"
_DOLLAR = rf"\$(?P<tag>(?:[{_ID}][{_ID}0-9]*)?)\$[\s\S]*?\$(?P=tag)\$"
_QUOTED_IDENT = r'"[^"]*(?:""[^"]*)*"'
_TOKEN = rf"[{_ID}][{_ID}0-9$]*|{_QUOTED_IDENT}|\$[0-9]+|[0-9]+|[^ \t\n\r\f\v'\"$/]|/(?!\*)"
_BAD = r"/\*|['\"$]"

_SKIP = "|".join((_SPACE, LINE_COMMENT, BLOCK_COMMENT, _E_STRING, _STRING))
# Every position after the skip step is a token, a bad lexeme or the end, so the match never
# fails and the engine never backtracks into the skip step (which could re-read a comment's
# or literal's inside as tokens). The end yields an empty token, dropped by tokens().
_TOKENS: Final = re.compile(rf"(?:{_SKIP})*(?:({_TOKEN}|{_BAD})|\Z)")
_TOKENS_DOLLAR: Final = re.compile(rf"(?:{_SKIP}|{_DOLLAR})*(?:({_TOKEN}|{_BAD})|\Z)")
# Lexemes only the parser can make sense of; see the module docstring.
BAD_TOKENS = frozenset({"/*", "'", '"', "$"})
# A dollar-quote opener, `$$` or `$tag$`, not inside an identifier. The lookbehind comes after
# the literal `$` so that the engine can scan for the `$` at memchr speed.
_DOLLAR_OPEN: Final = re.compile(rf"\$(?<![{_ID}0-9$]\$)(?:[{_ID}][{_ID}0-9]*)?\$")


def has_dollar_quote(text: str) -> bool:
    return _DOLLAR_OPEN.search(text) is not None


def tokens(lowered: str, original: str) -> list[str]:
    """The tokens of ``original``, lower-cased; see BAD_TOKENS.

    ``lowered`` is ``original.lower()``, made once by the caller. Dollar-quote tags are case
    sensitive (``$A$ ... $a$`` does not close), so texts holding an opener are lexed from the
    original and their tokens lower-cased one by one; that variant also pays for the
    backreference, which is why the common case does without it.
    """
    if "$" in original and has_dollar_quote(original):
        found = [token.lower() for _tag, token in _TOKENS_DOLLAR.findall(original)]
    else:
        found = _TOKENS.findall(lowered)
    while found and not found[-1]:
        found.pop()
    return found


# For the comment directive: everything that can hide a "comment" inside it is matched too.
_COMMENT_SCAN: Final = re.compile(
    rf"(?P<line>{LINE_COMMENT})|(?P<block>/\*)|{_E_STRING}|{_STRING}|{_QUOTED_IDENT}"
    rf"|(?<![{_ID}0-9$]){_DOLLAR}"
)
_COMMENT_EDGE: Final = re.compile(r"/\*|\*/")
# PgDog's syntax; newer PgDog versions also know prefer-/force- variants, which are not hints
# in this model (the negative lookahead keeps `primary-x` from counting as `primary`).
_DIRECTIVE: Final = re.compile(r"pgdog_role\s*:\s*(primary|replica)(?![\w-])")


def _block_comment_end(text: str, pos: int) -> int:
    """The index after the (nested) comment opening at ``pos``; the text's end if unterminated."""
    depth = 0
    for edge in _COMMENT_EDGE.finditer(text, pos):
        depth += 1 if edge.group() == "/*" else -1
        if depth == 0:
            return edge.end()
    return len(text)


def comment_hint(sql: str) -> str | None:
    """``"primary"``/``"replica"`` from the first ``pgdog_role:`` directive inside a comment.

    Callers check ``"pgdog_role" in sql`` first, so ordinary texts never pay for this scan.
    """
    pos = 0
    while True:
        match = _COMMENT_SCAN.search(sql, pos)
        if match is None:
            return None
        if match.group("line") is not None:
            body, pos = match.group(), match.end()
        elif match.group("block") is not None:
            end = _block_comment_end(sql, match.start())
            body, pos = sql[match.start() : end], end
        else:
            pos = match.end()
            continue
        directive = _DIRECTIVE.search(body)
        if directive is not None:
            return directive.group(1)
