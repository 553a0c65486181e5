"""The error every state machine raises for a transition missing from its table.

Kept apart from the machines: they are compiled (see pgdog_ev.native), and an exception class
must stay an ordinary Python class.
"""

from __future__ import annotations


class IllegalTransition(RuntimeError):
    """A transition missing from a machine's table: a bug, never user input."""
