"""Tokens of the small SQL dialect, and splitting a query string on ``;`` outside quotes.

Keywords are not special here: unquoted identifiers are lower-cased and the
parser compares them; quoted identifiers keep their case and never match a
keyword, as in PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.fakepg.errors import SYNTAX_ERROR, SqlError

IDENT = "ident"
QIDENT = "qident"
NUMBER = "num"
STRING = "str"
PARAM = "param"
OP = "op"
EOF = "eof"

_TWO_CHAR_OPS = frozenset({"::", "<>", "!=", "<=", ">=", "||"})
_ONE_CHAR_OPS = frozenset("(),;.*=<>+-/%[]")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: str
    pos: int  # 0-based offset in the query string
    raw: str  # the source text, for "syntax error at or near"

    def is_word(self, *words: str) -> bool:
        return self.kind == IDENT and self.value in words

    def is_op(self, *ops: str) -> bool:
        return self.kind == OP and self.value in ops


def _unterminated(text: str, start: int, what: str) -> SqlError:
    return SqlError(SYNTAX_ERROR, f"unterminated {what} at or near \"{text[start:start + 20]}\"",
                    position=start + 1)


def _read_string(text: str, start: int, escapes: bool) -> tuple[str, int]:
    """Body of a quoted string starting at the quote ``text[start]``; returns (value, end)."""
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            if i + 1 < n and text[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if escapes and ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    raise _unterminated(text, start, "quoted string")


def _skip_space(text: str, i: int) -> int:
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("--", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise _unterminated(text, i, "/* comment")
            i = end + 2
        else:
            break
    return i


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while True:
        i = _skip_space(text, i)
        if i >= n:
            tokens.append(Token(EOF, "", n, ""))
            return tokens
        ch = text[i]
        start = i
        if ch in "eE" and i + 1 < n and text[i + 1] == "'":
            value, i = _read_string(text, i + 1, escapes=True)
            tokens.append(Token(STRING, value, start, text[start:i]))
        elif ch == "'":
            value, i = _read_string(text, i, escapes=False)
            tokens.append(Token(STRING, value, start, text[start:i]))
        elif ch == '"':
            end = i + 1
            parts: list[str] = []
            while True:
                q = text.find('"', end)
                if q < 0:
                    raise _unterminated(text, start, "quoted identifier")
                parts.append(text[end:q])
                if q + 1 < n and text[q + 1] == '"':
                    parts.append('"')
                    end = q + 2
                    continue
                i = q + 1
                break
            tokens.append(Token(QIDENT, "".join(parts), start, text[start:i]))
        elif ch.isalpha() or ch == "_":
            while i < n and (text[i].isalnum() or text[i] in "_$"):
                i += 1
            word = text[start:i]
            tokens.append(Token(IDENT, word.lower(), start, word))
        elif ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            while i < n and text[i].isdigit():
                i += 1
            if i < n and text[i] == "." and not text.startswith("..", i):
                i += 1
                while i < n and text[i].isdigit():
                    i += 1
            if i < n and text[i] in "eE" and (i + 1 < n and (text[i + 1].isdigit() or
                                                            (text[i + 1] in "+-" and i + 2 < n
                                                             and text[i + 2].isdigit()))):
                i += 2
                while i < n and text[i].isdigit():
                    i += 1
            tokens.append(Token(NUMBER, text[start:i], start, text[start:i]))
        elif ch == "$":
            i += 1
            while i < n and text[i].isdigit():
                i += 1
            if i == start + 1:
                raise SqlError(SYNTAX_ERROR, 'syntax error at or near "$"', position=start + 1)
            tokens.append(Token(PARAM, text[start + 1:i], start, text[start:i]))
        elif text[i:i + 2] in _TWO_CHAR_OPS:
            i += 2
            tokens.append(Token(OP, text[start:i], start, text[start:i]))
        elif ch in _ONE_CHAR_OPS:
            i += 1
            tokens.append(Token(OP, ch, start, ch))
        else:
            raise SqlError(SYNTAX_ERROR, f'syntax error at or near "{ch}"', position=start + 1)


@dataclass(frozen=True, slots=True)
class Piece:
    """One statement of a query string: its tokens (ending with EOF) and its text."""

    tokens: tuple[Token, ...]
    text: str


def split(text: str) -> list[Piece]:
    """The statements of ``text``, empty ones (``;;``) dropped."""
    tokens = tokenize(text)
    pieces: list[Piece] = []
    current: list[Token] = []
    start = 0
    for tok in tokens:
        if tok.kind == EOF or tok.is_op(";"):
            if current:
                end = tok.pos
                pieces.append(Piece((*current, Token(EOF, "", end, "")), text[start:end].strip()))
            current = []
            start = tok.pos + 1
            continue
        if not current:
            start = tok.pos
        current.append(tok)
    return pieces
