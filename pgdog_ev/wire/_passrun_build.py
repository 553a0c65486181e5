"""Compile the C twin of ``passrun.skip_passed`` (cffi, API mode, out of line).

Run by ``make`` after installing (``python -m pgdog_ev.wire._passrun_build``); it writes
``pgdog_ev/wire/_passrun_c*.so`` beside this file. Without a C compiler the build fails with a
message and the pure-Python twin is used: same results, only slower on large results.
"""

from __future__ import annotations

import os
import sys
import warnings

from cffi import FFI

CDEF = "size_t skip_passed(const unsigned char *buf, size_t pos, size_t n, const unsigned char *table, size_t max_len);"

SOURCE = r"""
#include <stddef.h>
#include <stdint.h>

/* Step over whole messages whose type the table marks 0 (PASS), from pos; stop at the first
   message that is of another type, incomplete in buf[0:n], or has a length the scanner must
   reject (it then raises the error itself). Returns where it stopped. */
size_t skip_passed(const unsigned char *buf, size_t pos, size_t n, const unsigned char *table, size_t max_len)
{
    while (pos + 5 <= n) {
        const unsigned char *p = buf + pos;
        if (table[p[0]] != 0)
            break;
        uint32_t len = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | (uint32_t)p[4];
        if (len < 4 || (size_t)(len - 4) > max_len)
            break;
        if (n - pos - 1 < (size_t)len)
            break;
        pos += 1 + (size_t)len;
    }
    return pos;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("pgdog_ev.wire._passrun_c", SOURCE, extra_compile_args=["-O2"])


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    # setuptools, which cffi compiles with, reads our pyproject.toml and warns about it: noise here.
    warnings.simplefilter("ignore")
    try:
        ffibuilder.compile(tmpdir=root, verbose=False)
    except Exception as exc:  # no compiler, no headers: the Python twin stays in use
        print(
            f"pgdog-ev: the C scanner helper was not built ({exc}); using the pure-Python twin",
            file=sys.stderr,
        )
        return 0
    # cffi leaves its generated C file next to the module; only the .so is needed.
    for name in os.listdir(here):
        if name.startswith("_passrun_c") and name.endswith((".c", ".o")):
            os.unlink(os.path.join(here, name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
