"""The compiled hot path and its guard: an edited source is never shadowed by its old build,
PGDOG_EV_PURE=1 runs the sources, and a fresh build is what runs otherwise."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgdog_ev import native

EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def fresh_manifest() -> dict[str, str]:
    return {m: native.digest(m) for m in native.NATIVE_MODULES}


def test_a_fresh_manifest_means_compiled() -> None:
    assert native.judge(manifest=fresh_manifest(), environ={}) == "compiled"


def test_the_environment_asks_for_the_sources() -> None:
    assert native.judge(manifest=fresh_manifest(), environ={"PGDOG_EV_PURE": "1"}) == "pure: PGDOG_EV_PURE is set"
    assert native.judge(manifest=fresh_manifest(), environ={"PGDOG_EV_PURE": "0"}) == "compiled"


def test_an_edited_source_sends_every_module_to_its_source() -> None:
    manifest = fresh_manifest()
    manifest["state.server"] = "0" * 64
    assert native.judge(manifest=manifest, environ={}) == "pure: state/server.py changed since the build"


def test_a_module_missing_from_the_build_or_no_build() -> None:
    manifest = fresh_manifest()
    del manifest["state.pool"]
    assert native.judge(manifest=manifest, environ={}) == "pure: state.pool was not in the build"
    assert native.judge(manifest=None, environ={}).startswith("pure: not compiled")


def test_a_manifest_of_another_interpreter_or_garbage_is_no_build(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    native.write_manifest(native.NATIVE_MODULES, str(path))
    assert native.read_manifest(str(path)) == fresh_manifest()
    data = json.loads(path.read_text())
    data["tag"] = "cpython-39"
    path.write_text(json.dumps(data))
    assert native.read_manifest(str(path)) is None
    path.write_text("{not json")
    assert native.read_manifest(str(path)) is None
    assert native.read_manifest(str(tmp_path / "missing.json")) is None


def test_the_source_finder_serves_only_the_listed_modules() -> None:
    finder = native.SourceFinder(["state.server"])
    spec = finder.find_spec("state.server")
    assert spec is not None and spec.origin == os.path.join(native.ROOT, "state", "server.py")
    assert finder.find_spec("state.client") is None


def test_what_runs_is_what_the_status_says() -> None:
    """In make test's first pass the build is fresh and every listed module is compiled; in
    its second (PGDOG_EV_PURE=1), or with no build, every one is its source."""
    compiled = native.STATUS == "compiled"
    for module in native.NATIVE_MODULES:
        path = sys.modules[module].__file__ if module in sys.modules else importlib.import_module(module).__file__
        assert path is not None
        assert path.endswith(EXTENSIONS) == compiled, (module, path, native.STATUS)


@pytest.mark.skipif(native.STATUS != "compiled", reason="the hot path is not compiled")
def test_a_process_told_to_run_the_sources_does() -> None:
    code = "import state.server, pgdog_ev.native as n; print(n.STATUS); print(state.server.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PGDOG_EV_PURE="1"), check=True)
    status, path = out.stdout.splitlines()
    assert status == "pure: PGDOG_EV_PURE is set"
    assert path.endswith("state/server.py")


def test_choices_that_pay_off_only_compiled_follow_the_build() -> None:
    """The event ring's word stores and the scanner's copied small chunks are taken exactly when
    their modules run compiled (interpreted, they would cost more than what they replace)."""
    from pgdog_ev.wire import passrun
    from state import events

    compiled = native.STATUS == "compiled"
    assert (passrun.SMALL_CHUNK > 0) == compiled
    words = compiled and sys.byteorder == "little"
    assert words == events.WORDS_BY_DEFAULT
