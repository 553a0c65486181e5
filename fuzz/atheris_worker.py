"""One target under atheris (libFuzzer), in a process of its own: ``python -m fuzz.atheris_worker
TARGET [libFuzzer flags] CORPUS_DIR``. Started by ``engine_atheris``; the code under test is
imported inside ``instrument_imports`` so libFuzzer gets coverage of it."""

from __future__ import annotations

import sys

import atheris

# Packages whose coverage guides the fuzzer; the standard library and pglast (C) are not.
INSTRUMENTED = ["pgdog_ev", "state", "loop"]


def main() -> None:
    name = sys.argv[1]
    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz.registry import get

        function = get(name).load()
    atheris.Setup([sys.argv[0], *sys.argv[2:]], function)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
