"""Turn the arguments of ``SET name TO ...`` into the text PostgreSQL stores for the setting.

The pooler replays a client's settings on other servers with ``set_config(name, value,
false)``, which takes the value verbatim. To reproduce what ``SET`` did, the value must be the
string the server built from the SET arguments (guc_funcs.c, flatten_set_variable_args):
items joined with ", ", integers and numerics as written (hex integers folded to decimal by
the parser), strings verbatim -- except for list settings flagged GUC_LIST_QUOTE such as
search_path, whose items are passed through quote_identifier(). That is why
``SET search_path TO a, "B c", 'd e'`` stores ``a, "B c", "d e"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pglast import ast
from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

# Built-in settings with GUC_LIST_QUOTE (guc_tables.c). Extensions can define more; their
# values would be replayed unquoted, which only matters for items needing quotes.
LIST_QUOTE_SETTINGS = frozenset(
    {
        "search_path",
        "temp_tablespaces",
        "local_preload_libraries",
        "session_preload_libraries",
        "shared_preload_libraries",
        "unix_socket_directories",
    }
)

_SIMPLE_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
# Every keyword category except UNRESERVED must be quoted to be read back as an identifier.
_QUOTED_KEYWORDS = RESERVED_KEYWORDS | COL_NAME_KEYWORDS | TYPE_FUNC_NAME_KEYWORDS


def quote_identifier(name: str) -> str:
    """PostgreSQL's quote_identifier(): quotes unless the name would read back unchanged
    as an unquoted identifier (lower-case, not a non-unreserved keyword)."""
    if _SIMPLE_IDENTIFIER.fullmatch(name) and name not in _QUOTED_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _render_item(node: ast.Node, quote: bool) -> str | None:
    if not isinstance(node, ast.A_Const) or node.isnull:
        # TypeCast only comes from SET TIME ZONE INTERVAL '...': the server normalises it
        # through interval_out, which is not worth reimplementing. ParamRef is an error.
        return None
    value = node.val
    if isinstance(value, ast.Integer):
        return str(value.ival)
    if isinstance(value, ast.Float):
        return value.fval
    if isinstance(value, ast.String):
        return quote_identifier(value.sval) if quote else value.sval
    return None


def render_set_value(name: str, args: Sequence[ast.Node]) -> str | None:
    """The stored text for ``SET name TO args``; None when it cannot be derived statically.

    Several items are only valid for GUC_LIST_INPUT settings; the server rejects them for
    others, and the result here is then simply the joined text.
    """
    quote = name in LIST_QUOTE_SETTINGS
    parts: list[str] = []
    for arg in args:
        rendered = _render_item(arg, quote)
        if rendered is None:
            return None
        parts.append(rendered)
    return ", ".join(parts)
