"""Name registry for event-log timelines: state, reason and timer enums per machine.

Machine modules register their enums at import time::

    register_states(Machine.CLIENT, ClientState)
    register_reasons(Machine.CLIENT, ClientReason)   # or register_reasons(Reason) for all machines
    register_timers(TimerKind)

Lookups fall back to ``str(value)`` for anything unknown.  Reason lookup order: the machine's own
reason enums (in registration order), then global reason enums (in registration order).  Timer
enums are global, looked up in registration order.  Pure data: no I/O.
"""

from __future__ import annotations

import importlib
from enum import IntEnum

__all__ = [
    "load_all",
    "reason_name",
    "register_reasons",
    "register_states",
    "register_timers",
    "state_name",
    "timer_name",
]

_states: dict[int, list[type[IntEnum]]] = {}
_reasons: dict[int, list[type[IntEnum]]] = {}
_global_reasons: list[type[IntEnum]] = []
_timers: list[type[IntEnum]] = []
_loaded = False
_attempted = False

MACHINES_MODULE = "state.machines"


def _add(bucket: list[type[IntEnum]], enum_cls: type[IntEnum]) -> None:
    if enum_cls not in bucket:  # re-import / double registration is harmless
        bucket.append(enum_cls)


def _lookup(enums: list[type[IntEnum]], value: int) -> str | None:
    for enum_cls in enums:
        try:
            return enum_cls(value).name
        except ValueError:
            continue
    return None


def register_states(machine: int, enum_cls: type[IntEnum]) -> None:
    """Register the state enum of ``machine`` (several may be registered; first match wins)."""
    _add(_states.setdefault(int(machine), []), enum_cls)


def register_reasons(machine: int | type[IntEnum], enum_cls: type[IntEnum] | None = None) -> None:
    """``register_reasons(machine, Enum)`` for one machine, or ``register_reasons(Enum)`` for all."""
    if enum_cls is None:
        if not (isinstance(machine, type) and issubclass(machine, IntEnum)):
            raise TypeError("register_reasons(enum_cls) or register_reasons(machine, enum_cls)")
        _add(_global_reasons, machine)
    else:
        _add(_reasons.setdefault(int(machine), []), enum_cls)  # type: ignore[arg-type]


def register_timers(enum_cls: type[IntEnum]) -> None:
    _add(_timers, enum_cls)


def state_name(machine: int, value: int) -> str:
    name = _lookup(_states.get(int(machine), []), value)
    return str(int(value)) if name is None else name


def reason_name(machine: int, value: int) -> str:
    name = _lookup(_reasons.get(int(machine), []), value)
    if name is None:
        name = _lookup(_global_reasons, value)
    return str(int(value)) if name is None else name


def timer_name(value: int) -> str:
    name = _lookup(_timers, value)
    return str(int(value)) if name is None else name


def load_all() -> bool:
    """Import ``state.machines`` (which imports every machine module, registering their enums).

    Returns True if it was imported.  A missing ``state.machines`` is ignored; any other import
    error (including a missing module *imported by* it) propagates.  The import is attempted once
    per process (cheap to call per record).
    """
    global _attempted, _loaded
    if _attempted:
        return _loaded
    try:
        importlib.import_module(MACHINES_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != MACHINES_MODULE:
            raise
        _attempted = True
        return False
    _attempted = _loaded = True
    return True
