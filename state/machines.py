"""Imports every state machine so their state enums register for timelines."""

from state import client, pool, server  # noqa: F401
from state.reasons import Reason
from state.registry import register_reasons

register_reasons(Reason)
