"""Compile the hot path's modules (``native.NATIVE_MODULES``) with mypyc, in place.

Run by ``make`` after installing (``python -m pgdog_ev.native_build [--if-stale]``; with
``--if-stale`` nothing is done while the build matches the sources). mypyc type-checks the
modules with mypy and turns them into C extension modules beside their sources; the build
then records each source's digest (``pgdog_ev/_native_manifest.json``) so that an edited
source is never shadowed by its old compiled self (see ``native``).

Without mypyc or a C compiler nothing is built and the sources run, with a message: same
behaviour, about 1.7 times the user CPU per transaction. A type error in a listed module fails the
build: mypyc would compile what the annotations say, not what the code does.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import warnings

from pgdog_ev import native


def remove_built() -> None:
    """Delete the compiled modules and the manifest, so a failed build leaves the sources."""
    if os.path.exists(native.MANIFEST):
        os.unlink(native.MANIFEST)
    for module in native.NATIVE_MODULES:
        for path in glob.glob(os.path.join(native.ROOT, *module.split(".")) + ".*.so"):
            os.unlink(path)
    for path in glob.glob(os.path.join(native.ROOT, "pgdog_ev", "_native__mypyc.*.so")):
        os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--if-stale" in args and native.judge(manifest=native.read_manifest(), environ={}) == "compiled":
        return 0
    try:
        from mypyc.build import mypycify
        from setuptools import setup
    except ImportError as exc:
        print(f"pgdog-ev: the hot path was not compiled ({exc}); running the sources", file=sys.stderr)
        return 0
    remove_built()
    sources = [os.path.relpath(native.source_path(m), native.ROOT) for m in native.NATIVE_MODULES]
    # setuptools reads our pyproject.toml and warns about it: noise here.
    warnings.simplefilter("ignore")
    cwd = os.getcwd()
    os.chdir(native.ROOT)
    try:
        with tempfile.TemporaryDirectory(prefix="pgdog-ev-native-") as build:
            try:
                extensions = mypycify(
                    ["--ignore-missing-imports", "--follow-imports=silent", *sources],
                    opt_level="3",
                    group_name="pgdog_ev._native",
                    target_dir=os.path.join(build, "c"),
                )
            except SystemExit as exc:  # mypy found type errors (printed above)
                print("pgdog-ev: the hot path does not type-check; fix the errors above", file=sys.stderr)
                return int(exc.code or 1)
            try:
                setup(
                    name="pgdog-ev-native",
                    ext_modules=extensions,
                    script_args=["-q", "build_ext", "--inplace", "--build-temp", os.path.join(build, "t"),
                                 "--build-lib", os.path.join(build, "lib")],
                )
            except (SystemExit, Exception) as exc:  # no compiler, no headers: the sources run
                remove_built()
                print(f"pgdog-ev: the hot path was not compiled ({exc}); running the sources", file=sys.stderr)
                return 0
    finally:
        os.chdir(cwd)
    native.write_manifest(native.NATIVE_MODULES)
    print(f"pgdog-ev: compiled {len(native.NATIVE_MODULES)} hot-path modules with mypyc", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
