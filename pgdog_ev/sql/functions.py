"""Session-affecting function calls hidden inside ordinary statements.

Advisory locks taken with the session-level functions survive COMMIT and tie the client to the
server that holds them; set_config() changes settings like SET does. They can appear anywhere
in an expression tree (a WHERE clause, a CTE, an INSERT ... SELECT), so the whole tree is
walked. The ``_xact_`` lock variants are released at transaction end and are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

LOCK_FUNCTIONS = frozenset(
    {"pg_advisory_lock", "pg_try_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock_shared"}
)
UNLOCK_FUNCTIONS = frozenset({"pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all"})
SET_CONFIG = "set_config"


def function_name(call: ast.FuncCall) -> str | None:
    """The built-in function a call resolves to, or None for a name qualified with a
    schema other than pg_catalog (a user function that merely shares the name)."""
    parts = [part.sval for part in call.funcname if isinstance(part, ast.String)]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2 and parts[0] == "pg_catalog":
        return parts[1]
    return None


def _walk(root: ast.Node) -> Iterator[ast.Node]:
    # Iterative: expression trees from generated SQL can be deeper than Python's recursion limit.
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            for attribute in item:
                child = getattr(item, attribute, None)
                if isinstance(child, ast.Node | tuple):
                    stack.append(child)
        elif isinstance(item, tuple):
            stack.extend(item)


def called_functions(root: ast.Node) -> Iterator[str]:
    """The bare names of every built-in-looking function call in the tree."""
    for node in _walk(root):
        if isinstance(node, ast.FuncCall):
            name = function_name(node)
            if name is not None:
                yield name
