"""Read/write split: decide whether a query text must run on the primary.

Rules (PgDog's, extended): INSERT/UPDATE/DELETE/MERGE, DDL and maintenance commands, COPY ...
FROM, CALL, DO, LOCK, LISTEN/NOTIFY/UNLISTEN, EXECUTE (the prepared body is unknown here),
cursor commands (FETCH/MOVE/CLOSE: the cursor lives where it was declared), CHECKPOINT and
LOAD are writes. A SELECT (or VALUES, TABLE, WITH ... SELECT) is a write when it has INTO,
a locking clause (FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE), a data-modifying CTE, or
calls a function from write_functions.py. PREPARE and DECLARE take their body's answer, EXPLAIN
ANALYZE its statement's (plain EXPLAIN runs nothing: a read), COPY (query) TO the query's.
SET/RESET/SHOW/DISCARD/DEALLOCATE are reads; transaction control is reported as a read with
reason "transaction control", because the session, not the statement, decides where a
transaction runs. Text the parser rejects, and statements of unknown kind, are writes. In a
multi-statement text, the first writing statement gives the answer; otherwise the first one.

A ``pgdog_role: primary|replica`` directive in a comment sets ``Route.hint`` and nothing else:
how a hint combines with ``write`` is the caller's policy.

Speed. Parsing costs 12-122 us per statement, so there are three stages:

1. ``route_prefilter`` (no lexing, ~0.5-1.5 us): the first keyword alone decides writes such
   as INSERT or DDL, whatever follows (a write stays a write). For a single statement whose
   quotes, comments and parentheses look closed (counts only), it also decides session
   commands, transaction control, and SELECTs whose lower-cased text contains none of the
   trigger substrings (_TRIGGER_TEXTS), literals and comments included: such a text cannot
   hold a trigger token, so it is a read.
2. ``route_lexical``: route_lexer.tokens() (one ``re.findall`` in C that drops literals and
   comments), then a walk over the few trigger tokens (FOR, INTO, DML keywords, listed function
   names). It returns None whenever the tokens leave a doubt: EXPLAIN, COPY (query), DML words
   inside a plain SELECT, a locking clause inside parentheses, a listed name quoted or in alias
   position, an unterminated literal, a nested comment, an unknown first keyword.
3. ``route_slow``: pglast (libpg_query) parses the text and the tree is walked with the same
   priorities. The tests generate statements and require stages 1-2 to agree with it
   wherever they answer. ``route_fast`` is stages 1 and 2.

Known gap, by design: a text that lexes but does not parse (``SELECT FROM FROM``,
``SET = 1``) may be answered by stages 1-2 from its keywords instead of "unparsable"; the
server rejects it wherever it runs, and it changes nothing.

``RouteCache.route`` runs the prefilter, then the LRU, then the lexer, then the parser, and
keeps only parser answers in the LRU; a hit on a parser-only text thus skips the lexer.
Inserting fast answers too was measured and rejected: it adds a hash and an OrderedDict insert
to every query, and a storm of unique literals (``... WHERE id = <n>``) evicts everything
useful. With a working set of 1,000 parser-only texts, each asked once per ten unique-literal
SELECTs through a 1,000-entry cache: 1.6 us/query and 0 parser runs when fast answers stay
out, 11.3 us/query and 8,999 parser runs in 9,000 working-set queries when they go in.

Measured with ``python bench/route_bench.py`` (timeit, best of 5; CPython 3.11, pglast 8 =
libpg_query 18, one core); microseconds per call through ``RouteCache.route``:

    cache hit, parser-only WITH (... FOR UPDATE) UPDATE ... 1.8
    prefilter, SELECT ... WHERE id = <unique int> ......... 1.6
    prefilter, SELECT with a string literal and 3 params .. 2.1
    prefilter, INSERT INTO ... VALUES (...) ............... 0.5
    prefilter, SET / SHOW ................................. 1.0
    lexer, /* pgdog_role: replica */ SELECT ... ........... 3.8
    lexer, SELECT ... FOR UPDATE SKIP LOCKED .............. 6.3-7.0
    lexer, WITH x AS (UPDATE ...) SELECT .................. 8.0-8.4
    parser miss, WITH (... FOR UPDATE) UPDATE ............. 98
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

import pglast
import pglast.parser
from pglast import ast
from pglast.enums import VariableSetKind

from pgdog_ev.sql.prefilter import blank_prefix, ends_here, leading_word, word_at
from pgdog_ev.sql.route_lexer import (
    BAD_TOKENS,
    BLOCK_COMMENT,
    IDENTIFIER_CHARS,
    LINE_COMMENT,
    comment_hint,
    has_dollar_quote,
    tokens,
)
from pgdog_ev.sql.text_lru import DEFAULT_LIMIT, DEFAULT_MAX_ENTRY_CHARS, TextLRU
from pgdog_ev.sql.text_lru import hash_text as _hash_text
from pgdog_ev.sql.write_functions import WRITE_FUNCTIONS

__all__ = [
    "DEFAULT_LIMIT",
    "Route",
    "RouteCache",
    "default_route_cache",
    "route",
    "route_fast",
    "route_lexical",
    "route_prefilter",
    "route_slow",
]



class Route(NamedTuple):
    """Where one query text should run. A NamedTuple: immutable, shared between cache hits,
    and cheaper to build than a frozen dataclass on the fast path."""

    write: bool
    reason: str
    hint: str | None = None


EMPTY: Final = Route(False, "empty")
SELECT: Final = Route(False, "select")
UNPARSABLE: Final = Route(True, "unparsable")
TRANSACTION_CONTROL: Final = Route(False, "transaction control")

_DDL: Final = Route(True, "ddl")
# First keywords that decide on their own and are writes: no lexing needed, whatever follows.
_WRITE_KEYWORDS: Final[dict[str, Route]] = {
    **{word: Route(True, word) for word in ("insert", "update", "delete", "merge")},
    **{
        word: _DDL
        for word in (
            "create", "alter", "drop", "truncate", "comment", "grant", "revoke", "reindex",
            "vacuum", "analyze", "analyse", "cluster", "refresh", "security", "import",
            "reassign",
        )
    },
    **{
        word: Route(True, word)
        for word in (
            "call", "do", "lock", "listen", "notify", "unlisten", "execute", "checkpoint",
            "load", "fetch", "move", "close",
        )
    },
}  # fmt: skip
# First keywords that decide on their own and are reads: the rest of the text is still lexed,
# for the statements that may follow (BEGIN; INSERT ...).
_READ_KEYWORDS: Final[dict[str, Route]] = {
    **dict.fromkeys(
        ("begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"),
        TRANSACTION_CONTROL,
    ),
    **{word: Route(False, word) for word in ("set", "reset", "show", "discard", "deallocate")},
}
_SELECT_FAMILY: Final = frozenset({"select", "values", "table", "with"})
_DML: Final = ("insert", "update", "delete", "merge")  # also the priority order of "with <dml>"
_LOCK_NAMES: Final = {1: "key share", 2: "share", 3: "no key update", 4: "update"}
_LOCKS: Final = {rank: Route(True, f"select for {name}") for rank, name in _LOCK_NAMES.items()}
_SELECT_INTO: Final = Route(True, "select into")
# Words whose presence makes a SELECT worth a closer look. Quoted spellings of the function
# names are here too: `"nextval"(1)` calls nextval.
_TRIGGERS: Final = frozenset({"for", "into", *_DML, *WRITE_FUNCTIONS, *(f'"{name}"' for name in WRITE_FUNCTIONS)})
# Words after which `name(` must be a function call. After any other word, `name(a, b)` may be
# a table alias with column names (FROM t nextval(a, b)), which only the parser can tell.
_CALL_CONTEXT: Final = frozenset(
    {
        "select", "from", "where", "and", "or", "not", "then", "else", "when", "on", "by",
        "having", "distinct", "all", "any", "some", "lateral", "returning", "values", "set",
        "in", "case", "is", "join", "using", "like", "ilike", "between", "exists", "limit",
        "offset", "array", "return",
    }
)  # fmt: skip

# The first word, past whitespace and comments (PgDog's directive usually leads the text). A
# nested comment does not match: such texts go to the lexer and then the parser. The skip is
# possessive: when no word follows, backtracking would otherwise split a run of whitespace in
# exponentially many ways (30 spaces and a `;` took a minute).
_HEAD: Final = re.compile(
    rf"(?:[ \t\n\r\f\v]+|{LINE_COMMENT}|{BLOCK_COMMENT})*+([{IDENTIFIER_CHARS}][{IDENTIFIER_CHARS}0-9$]*)"
)
# Every trigger word contains one of these (a test checks it). Searching the whole lower-cased
# text for them costs less than lexing it, and a hit only means "lex it".
_TRIGGER_TEXTS: Final = (
    "for", "into", "insert", "update", "delete", "merge", "nextval", "currval", "setval",
    "lastval", "set_config", "setseed", "pg_", "lo_", "lowrite", "txid_current", "dblink_exec",
    "install_sharded_sequence",
)  # fmt: skip
# The same texts grouped by a common part, searched first: a text without ``val`` needs no
# search for the four sequence functions. 12 searches instead of 18 for a text with none of
# them (a test checks the groups cover _TRIGGER_TEXTS exactly).
_TRIGGER_GROUPS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("for", ()), ("into", ()), ("update", ()), ("delete", ()), ("merge", ()), ("pg_", ()),
    ("ins", ("insert", "install_sharded_sequence")),
    ("val", ("nextval", "currval", "setval", "lastval")),
    ("set", ("set_config", "setseed")),
    ("lo", ("lo_", "lowrite")),
    ("txid_current", ()), ("dblink_exec", ()),
)  # fmt: skip


def _with_hint(result: Route, hint: str | None) -> Route:
    return result if hint is None else result._replace(hint=hint)


def _hint(sql: str) -> str | None:
    return comment_hint(sql) if "pgdog_role" in sql else None


# ---------------------------------------------------------------------------------------------
# Fast path


def _is_word(token: str) -> bool:
    first = token[0]
    return first == '"' or first == "_" or first.isalpha() or first > "\x7f"


def _depth(toks: list[str], index: int) -> int:
    """Parentheses open at ``index`` (relative to the statement's start)."""
    before = toks[:index]
    return before.count("(") - before.count(")")


def _select(toks: list[str], keyword: str) -> Route | None:
    """SELECT / VALUES / TABLE / WITH: a read unless a trigger word says otherwise."""
    if toks.count("(") != toks.count(")"):
        return None  # a syntax error: let the parser say "unparsable"
    if _TRIGGERS.isdisjoint(toks):
        return SELECT
    into = False
    strength = 0
    nested: set[str] = set()
    function: str | None = None
    count = len(toks)
    # Only the few trigger positions are visited in Python; the nesting depth at one of them
    # is counted (in C) when a rule needs it.
    for index in [index for index, token in enumerate(toks) if token in _TRIGGERS]:
        token = toks[index]
        following = toks[index + 1] if index + 1 < count else ""
        previous = toks[index - 1] if index else ""
        if token == "for":
            if following == "update":
                rank = 4
            elif following == "share":
                rank = 2
            elif following == "no":
                rank = 3 if toks[index + 2 : index + 4] == ["key", "update"] else 0
            elif following == "key":
                rank = 1 if toks[index + 2 : index + 3] == ["share"] else 0
            else:
                rank = 0  # SUBSTRING(x FOR 2) and the like
            if rank:
                if _depth(toks, index):
                    return None  # a locking subquery, or `for update` as a column name
                strength = max(strength, rank)
        elif token == "into":
            if previous in ("insert", "merge"):
                continue
            if keyword not in ("select", "with") or _depth(toks, index):
                return None
            into = True
        elif token == "update":
            if previous == "for" or (previous == "key" and index >= 2 and toks[index - 2] == "no"):
                continue
            if keyword != "with":
                return None
            depth = _depth(toks, index)
            if depth == 0 and previous == ")":
                return _WRITE_KEYWORDS["update"]  # WITH ... UPDATE: the main statement
            if depth and previous == "(" and index >= 2 and toks[index - 2] in ("as", "materialized"):
                nested.add(token)
            else:
                return None
        elif token in _DML:  # insert, delete, merge
            if keyword != "with" or following != ("from" if token == "delete" else "into"):
                return None
            if _depth(toks, index) == 0:
                return _WRITE_KEYWORDS[token]
            nested.add(token)
        elif following == "(":  # a listed function name, maybe quoted
            if token[0] == '"' or previous == "as":
                return None
            if previous and _is_word(previous) and previous not in _CALL_CONTEXT:
                return None
            if function is None or token < function:
                function = token
    if into:
        return _SELECT_INTO
    if strength:
        return _LOCKS[strength]
    for kind in _DML:
        if kind in nested:
            return Route(True, f"with {kind}")
    if function is not None:
        return Route(True, f"volatile function {function}")
    return SELECT


def _copy(toks: list[str]) -> Route | None:
    """COPY table [(columns)] FROM|TO ...; COPY (query) TO is left to the parser."""
    if len(toks) < 2 or toks[1] == "(":
        return None
    depth = 0
    for token in toks[2:]:
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            if token == "from":
                return Route(True, "copy from")
            if token == "to":
                return Route(False, "copy to")
    return None


def _body(toks: list[str], start: int, prefix: str) -> Route | None:
    """PREPARE name AS <body>, DECLARE name CURSOR FOR <body>: the body decides."""
    if start >= len(toks):
        return None
    inner = _statement(toks[start:])
    if inner is None:
        return None
    return Route(inner.write, f"{prefix} {inner.reason}")


def _statement(toks: list[str]) -> Route | None:
    keyword = toks[0]
    if keyword == "(":
        # (SELECT ...) UNION ...: only queries may start with a parenthesis.
        lead = 0
        while lead < len(toks) and toks[lead] == "(":
            lead += 1
        if lead == len(toks) or toks[lead] not in _SELECT_FAMILY:
            return None
        return _select(toks, toks[lead])
    fixed = _WRITE_KEYWORDS.get(keyword) or _READ_KEYWORDS.get(keyword)
    if fixed is not None:
        return fixed
    if keyword in _SELECT_FAMILY:
        return _select(toks, keyword)
    if keyword == "copy":
        return _copy(toks)
    if keyword == "prepare":
        if toks[1:] == ["transaction"]:  # PREPARE TRANSACTION 'gid' (the literal is skipped)
            return TRANSACTION_CONTROL
        depth = 0
        for index, token in enumerate(toks):
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
            elif token == "as" and depth == 0:
                return _body(toks, index + 1, "prepare")
        return None
    if keyword == "declare" and "cursor" in toks:
        cursor = toks.index("cursor")
        if "for" in toks[cursor:]:
            return _body(toks, toks.index("for", cursor) + 1, "declare")
    return None  # EXPLAIN, unknown keywords, odd syntax: the parser decides


def _single_statement(sql: str) -> bool:
    """No ``;`` except trailing ones: a conservative test that needs no lexing (a ``;`` inside
    a literal merely sends the text on to the lexer)."""
    semicolon = sql.find(";")
    return semicolon < 0 or not sql[semicolon:].strip(" \t\n\r\f\v;")


def _looks_closed(sql: str) -> bool:
    """Whether every literal, quoted identifier, comment and parenthesis plausibly closes:
    counts only, no lexing. A text failing this (which includes harmless ones such as an
    apostrophe inside a comment or an E'' escape) goes to the lexer, which knows."""
    # Each count is guarded by a presence test: most texts hold few of these characters, and
    # ``in`` stops at the first hit where count() always reads the whole text.
    return (
        ("'" not in sql or sql.count("'") % 2 == 0)
        and ('"' not in sql or sql.count('"') % 2 == 0)
        and (("(" not in sql and ")" not in sql) or sql.count("(") == sql.count(")"))
        and ("*" not in sql or sql.count("/*") == sql.count("*/"))
        and ("$" not in sql or not has_dollar_quote(sql))
    )


def _has_trigger_text(lowered: str) -> bool:
    # Plain substring searches (memchr speed); see _TRIGGER_TEXTS and _TRIGGER_GROUPS.
    for key, members in _TRIGGER_GROUPS:
        if key in lowered:
            if not members:
                return True
            for text in members:
                if text in lowered:
                    return True
    return False


def _first_word(sql: str) -> str | None:
    """The first word, lower-cased: by prefilter.leading_word's loop when the text starts the
    usual way (an ASCII word after spaces and line breaks), else by the _HEAD regex."""
    start, end = leading_word(sql)
    if end > start and (end == len(sql) or ord(sql[end]) < 0x80):
        return sql[start:end].lower()
    head = _HEAD.match(sql)
    return None if head is None else head.group(1).lower()


def route_prefilter(sql: str) -> Route | None:
    """The cheapest answers, before any lexing or hashing (about 0.5-1 us).

    The first keyword decides writes whatever follows (a write stays a write) and, in a text
    without a second statement whose literals and comments look closed, session commands and
    transaction control. A single SELECT whose text contains no trigger substring anywhere,
    inside literals and comments included, cannot contain a trigger token: it is a read.

    Grammar errors in lexically sound text (``SELECT FROM FROM``, ``SET = 1``) are answered
    by the first keyword here and by the lexer; the server rejects them wherever they run.
    """
    keyword = _first_word(sql)
    if keyword is None:
        return None
    fixed = _WRITE_KEYWORDS.get(keyword)
    if fixed is not None:
        return _with_hint(fixed, _hint(sql))
    if not _single_statement(sql) or not _looks_closed(sql):
        return None
    fixed = _READ_KEYWORDS.get(keyword)
    if fixed is not None:
        return _with_hint(fixed, _hint(sql))
    if keyword in _SELECT_FAMILY and not _has_trigger_text(sql.lower()):
        return _with_hint(SELECT, _hint(sql))
    return None


# plain_read's byte-level view of the prefilter's SELECT rule: the trigger texts, and the hint's
# word (a text naming it goes to the full rules), indexed by their first two bytes.
_PLAIN_STOPS: Final[tuple[bytes, ...]] = tuple(t.encode() for t in (*_TRIGGER_TEXTS, "pgdog_role"))


def _pair_table(words: tuple[bytes, ...]) -> bytes:
    table = bytearray(1 << 16)
    for word in words:
        table[(word[0] << 8) | word[1]] = 1
    return bytes(table)


_STOP_PAIRS: Final = _pair_table(_PLAIN_STOPS)


def _stop_at(raw: bytes, pos: int, first: int, second: int) -> bool:
    """Whether a stop word starts at ``pos``, whose first two bytes (lower-cased) are given:
    only the words that start with them are compared (SELECT's "se" is three of them)."""
    for word in _PLAIN_STOPS:  # noqa: SIM110 - a generator in any() costs more than the loop
        if word[0] == first and word[1] == second and word_at(raw, pos, word):
            return True
    return False


def plain_read(raw: bytes) -> bool:
    """True only for a text ``route_prefilter`` answers ``SELECT`` (a read, no hint), judged on
    its bytes: one ASCII SELECT statement, its quotes, parentheses and comments balanced by
    count, no ``$``, and none of the trigger texts nor the hint's word anywhere. False sends
    the text to ``route``, so it may be said of plain reads; True must never be said of a text
    ``route`` answers otherwise.

    The common read costs ``route`` a decoded copy, a lower-cased one and a dozen substring
    searches; compiled, this is one loop over the bytes."""
    n = len(raw)
    start = blank_prefix(raw)
    if not word_at(raw, start, b"select"):
        return False
    if start + 6 < n:
        c = raw[start + 6]
        if c == 95 or c == 36 or 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c >= 128:
            return False  # the word goes on
    squotes = dquotes = opens = closes = comments_opened = comments_closed = 0
    prev = 0  # the byte before, its letters lower-cased
    k = start
    while k < n:
        c = raw[k]
        if c >= 128:
            return False
        if 65 <= c <= 90:
            c += 32
        elif c == 39:
            squotes += 1
        elif c == 34:
            dquotes += 1
        elif c == 40:
            opens += 1
        elif c == 41:
            closes += 1
        elif c == 36:
            return False  # perhaps a dollar quote: the full rules tell
        elif c == 42:
            if prev == 47:
                comments_opened += 1
            if k + 1 < n and raw[k + 1] == 47:
                comments_closed += 1
        elif c == 59:
            if not ends_here(raw, k):
                return False  # another statement follows
            break
        if _STOP_PAIRS[(prev << 8) | c] and _stop_at(raw, k - 1, prev, c):
            return False
        prev = c
        k += 1
    return squotes % 2 == 0 and dquotes % 2 == 0 and opens == closes and comments_opened == comments_closed


def route_lexical(sql: str) -> Route | None:
    """The answer from the token stream, or None when only the parser can tell."""
    toks = tokens(sql.lower(), sql)
    if not BAD_TOKENS.isdisjoint(toks):
        return None  # an unterminated literal or a nested comment
    if ";" not in toks:
        result = _statement(toks) if toks else EMPTY
    else:
        result = None
        start = 0
        count = len(toks)
        while start < count:
            try:
                end = toks.index(";", start)
            except ValueError:
                end = count
            if end > start:
                current = _statement(toks[start:end])
                if current is None:
                    return None
                if current.write:
                    result = current
                    break
                if result is None:
                    result = current
            start = end + 1
        if result is None:
            result = EMPTY
    if result is None:
        return None
    return _with_hint(result, _hint(sql))


def route_fast(sql: str) -> Route | None:
    """Both lexical stages: the answer without the parser, or None."""
    return route_prefilter(sql) or route_lexical(sql)


# ---------------------------------------------------------------------------------------------
# Slow path

_DML_NODES: Final[dict[type[ast.Node], str]] = {
    ast.InsertStmt: "insert",
    ast.UpdateStmt: "update",
    ast.DeleteStmt: "delete",
    ast.MergeStmt: "merge",
}
_NODE_ROUTES: Final[dict[type[ast.Node], Route]] = {
    **{node: _WRITE_KEYWORDS[name] for node, name in _DML_NODES.items()},
    ast.TransactionStmt: TRANSACTION_CONTROL,
    ast.VariableShowStmt: _READ_KEYWORDS["show"],
    ast.ConstraintsSetStmt: _READ_KEYWORDS["set"],
    ast.DiscardStmt: _READ_KEYWORDS["discard"],
    ast.DeallocateStmt: _READ_KEYWORDS["deallocate"],
    ast.CallStmt: _WRITE_KEYWORDS["call"],
    ast.DoStmt: _WRITE_KEYWORDS["do"],
    ast.LockStmt: _WRITE_KEYWORDS["lock"],
    ast.ListenStmt: _WRITE_KEYWORDS["listen"],
    ast.NotifyStmt: _WRITE_KEYWORDS["notify"],
    ast.UnlistenStmt: _WRITE_KEYWORDS["unlisten"],
    ast.ExecuteStmt: _WRITE_KEYWORDS["execute"],
    ast.CheckPointStmt: _WRITE_KEYWORDS["checkpoint"],
    ast.LoadStmt: _WRITE_KEYWORDS["load"],
    ast.ClosePortalStmt: _WRITE_KEYWORDS["close"],
}
_FALSE_WORDS: Final = frozenset({"false", "off", "no", "0"})


def _walk(root: ast.Node) -> list[ast.Node]:
    """Every node under ``root``; iterative, as generated SQL can nest deeper than Python's
    recursion limit."""
    found: list[ast.Node] = []
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            found.append(item)
            for attribute in item:
                child = getattr(item, attribute, None)
                if isinstance(child, ast.Node | tuple):
                    stack.append(child)
        elif isinstance(item, tuple):
            stack.extend(item)
    return found


def _select_tree(stmt: ast.SelectStmt) -> Route:
    """The same priorities as the fast path: INTO, locking, data-modifying CTE, function."""
    into = False
    strength = 0
    nested: set[str] = set()
    functions: set[str] = set()
    for node in _walk(stmt):
        if isinstance(node, ast.SelectStmt):
            into = into or node.intoClause is not None
            for clause in node.lockingClause or ():
                strength = max(strength, int(clause.strength))
        elif isinstance(node, ast.FuncCall):
            names = [part.sval for part in node.funcname or () if isinstance(part, ast.String)]
            if names and names[-1] in WRITE_FUNCTIONS:
                functions.add(names[-1])
        else:
            kind = _DML_NODES.get(type(node))
            if kind is not None:
                nested.add(kind)
    if into:
        return _SELECT_INTO
    if strength:
        return _LOCKS[strength]
    for kind in _DML:
        if kind in nested:
            return Route(True, f"with {kind}")
    if functions:
        return Route(True, f"volatile function {min(functions)}")
    return SELECT


def _explain_analyzes(stmt: ast.ExplainStmt) -> bool:
    for option in stmt.options or ():
        if isinstance(option, ast.DefElem) and option.defname == "analyze":
            arg = option.arg
            if arg is None:
                return True
            if isinstance(arg, ast.Boolean):
                return bool(arg.boolval)
            if isinstance(arg, ast.Integer):
                return arg.ival != 0
            if isinstance(arg, ast.String):
                return (arg.sval or "").lower() not in _FALSE_WORDS
            return True
    return False


def _prefixed(prefix: str, inner: Route) -> Route:
    return Route(inner.write, f"{prefix} {inner.reason}")


def _node_route(stmt: ast.Node | None) -> Route:
    if stmt is None:  # the parser always fills these; a missing one is not ours to trust
        return _DDL
    fixed = _NODE_ROUTES.get(type(stmt))
    if fixed is not None:
        return fixed
    if isinstance(stmt, ast.SelectStmt):
        return _select_tree(stmt)
    if isinstance(stmt, ast.VariableSetStmt):
        resets = (VariableSetKind.VAR_RESET, VariableSetKind.VAR_RESET_ALL)
        return _READ_KEYWORDS["reset" if stmt.kind in resets else "set"]
    if isinstance(stmt, ast.ExplainStmt):
        if _explain_analyzes(stmt):
            return _prefixed("explain analyze", _node_route(stmt.query))
        return Route(False, "explain")
    if isinstance(stmt, ast.CopyStmt):
        if stmt.query is not None:
            inner = _node_route(stmt.query)
            return Route(True, f"copy ({inner.reason})") if inner.write else Route(False, "copy to")
        return Route(True, "copy from") if stmt.is_from else Route(False, "copy to")
    if isinstance(stmt, ast.PrepareStmt):
        return _prefixed("prepare", _node_route(stmt.query))
    if isinstance(stmt, ast.DeclareCursorStmt):
        return _prefixed("declare", _node_route(stmt.query))
    if isinstance(stmt, ast.FetchStmt):
        return _WRITE_KEYWORDS["move" if stmt.ismove else "fetch"]
    # CREATE/ALTER/DROP..., and any statement kind this module does not know: conservative.
    return _DDL


def _parse_route(sql: str) -> Route:
    try:
        raws = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return UNPARSABLE
    except (RecursionError, ValueError):
        # Trees deeper than Python's recursion limit; lone surrogates that cannot be encoded.
        return UNPARSABLE
    first: Route | None = None
    for raw in raws:
        current = _node_route(raw.stmt)
        if current.write:
            return current
        if first is None:
            first = current
    return first or EMPTY


def route_slow(sql: str) -> Route:
    """The parser's answer; never raises."""
    return _with_hint(_parse_route(sql), _hint(sql))


# ---------------------------------------------------------------------------------------------
# Cache


class RouteCache:
    """LRU of slow-path answers (see text_lru for the keying). ``query_cache_limit`` as in the
    config: 0 disables caching. ``cache_fast_path`` also stores fast-path answers; it exists to
    measure that choice (see the module docstring) and is off. Counters are cumulative.
    """

    def __init__(
        self,
        query_cache_limit: int = DEFAULT_LIMIT,
        max_entry_chars: int = DEFAULT_MAX_ENTRY_CHARS,
        cache_fast_path: bool = False,
    ) -> None:
        self._lru: TextLRU[Route] = TextLRU(query_cache_limit, max_entry_chars)
        self._cache_fast_path = cache_fast_path
        self.hits = 0
        self.misses = 0
        self.fast_path = 0

    @property
    def limit(self) -> int:
        return self._lru.limit

    @property
    def size(self) -> int:
        return self._lru.size

    def route(self, sql: str) -> Route:
        """Prefilter, then the LRU, then the lexer, then the parser. The LRU is consulted before
        lexing so that a hit on a parser-only text does not pay for a useless lex."""
        cache_fast = self._cache_fast_path
        if not cache_fast:
            result = route_prefilter(sql)
            if result is not None:
                self.fast_path += 1
                return result
        lru = self._lru
        if not lru.keeps(sql):
            return self._uncached(sql)
        key = _hash_text(sql)
        cached = lru.get(key, sql)
        if cached is not None:
            self.hits += 1
            return cached
        if cache_fast:
            result = route_fast(sql)
            if result is None:
                self.misses += 1
                result = route_slow(sql)
        else:
            result = route_lexical(sql)
            if result is not None:
                self.fast_path += 1
                return result
            self.misses += 1
            result = route_slow(sql)
        lru.put(key, sql, result)
        return result

    def _uncached(self, sql: str) -> Route:
        result = route_fast(sql)
        if result is not None:
            self.fast_path += 1
            return result
        self.misses += 1
        return route_slow(sql)

    def resize(self, limit: int) -> None:
        """Apply a reloaded query_cache_limit, evicting least recently used entries."""
        self._lru.resize(limit)

    def clear(self) -> None:
        self._lru.clear()


_DEFAULT_CACHE: Final = RouteCache(DEFAULT_LIMIT)


def default_route_cache() -> RouteCache:
    """The process-wide cache behind ``route``; a config reload may resize it."""
    return _DEFAULT_CACHE


# The process-wide entry point: the default cache's bound method (one call, not two, per
# routed query; the cache object itself is never replaced, only resized or cleared).
route: Callable[[str], Route] = _DEFAULT_CACHE.route
