"""Runs of passed-through messages, stepped over in one call.

A large result is thousands of DataRows the proxy forwards without looking inside. The scanner's
per-message loop costs a few hundred nanoseconds of interpreter time per message; this steps over
a whole run of complete PASS messages at once and returns where the run ends. The C version
(compiled by ``make``, see ``_passrun_build``) is used when it was built; the pure-Python twin
gives the same answers (tests compare them on arbitrary input) and is used otherwise, or when
PGDOG_EV_PURE_PYTHON is set.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Final

from pgdog_ev.wire._codec import Buffer, u32_at

SkipPassed = Callable[[Buffer, int, int, bytearray, int], int]

# Bytes left in a chunk below which the scanner does not try a run. bench/scan_bench.py found the
# C call cheaper than the loop from a one-row result on (0.65 against 1.09 µs for its three
# passed messages) and the Python twin cheaper too (0.98 µs), so any run is worth trying.
C_THRESHOLD: Final = 0


def _probe() -> None:
    """Compiled by mypyc, a module's functions are builtins; interpreted, Python functions."""


# Chunks up to this size are stepped over by skip_passed_bytes on a copy, when compiled: the C
# call costs about 340 ns whatever it steps over (two buffer acquisitions and the argument
# conversions), the copy and the native loop about 40 ns plus 15 ns a message. The common
# reply to a small query (RowDescription, a DataRow, CommandComplete, ReadyForQuery) is under
# 200 bytes. Interpreted, that loop costs more than the call, so the size is 0 there.
SMALL_CHUNK: Final = 512 if not isinstance(_probe, types.FunctionType) else 0


def skip_passed_py(buf: Buffer, pos: int, n: int, table: bytearray, max_len: int) -> int:
    """From ``pos``, step over complete messages whose action in ``table`` is PASS (0); stop at
    the first other type, incomplete message or unacceptable length. Returns the stop position."""
    while pos + 5 <= n:
        if table[buf[pos]]:
            break
        length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
        if length < 4 or length - 4 > max_len or n - pos - 1 < length:
            break
        pos += 1 + length
    return pos


def skip_passed_bytes(buf: bytes, pos: int, n: int, table: bytearray, max_len: int) -> int:
    """``skip_passed_py`` over ``bytes``, for which mypyc indexes and shifts natively (over a
    memoryview every index and slice is an object call). Same answers (tests compare them)."""
    while pos + 5 <= n:
        if table[buf[pos]]:
            break
        length = u32_at(buf, pos + 1)
        if length < 4 or length - 4 > max_len or n - pos - 1 < length:
            break
        pos += 1 + length
    return pos


def _load_c() -> SkipPassed | None:
    if os.environ.get("PGDOG_EV_PURE_PYTHON"):
        return None
    try:
        from pgdog_ev.wire._passrun_c import ffi, lib  # type: ignore[import-not-found]
    except ImportError:
        return None
    from_buffer = ffi.from_buffer
    c_skip = lib.skip_passed

    def skip_passed_c(buf: Buffer, pos: int, n: int, table: bytearray, max_len: int) -> int:
        return c_skip(from_buffer(buf), pos, n, from_buffer(table), max_len)

    return skip_passed_c


skip_passed_c: SkipPassed | None = _load_c()
#: What the scanner uses: C when it was built, else the twin.
skip_passed: SkipPassed = skip_passed_c or skip_passed_py
