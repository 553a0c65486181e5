"""Which modules of the hot path run compiled, and the guard that keeps a stale build out.

``make`` compiles the modules in ``NATIVE_MODULES`` with mypyc (``python -m
pgdog_ev.native_build``): the same typed sources, turned into C extension modules that are
written beside them. Nothing else changes; the sources are the pure-Python twin of the build,
and ``PGDOG_EV_PURE=1`` runs them instead (``make test`` runs the unit suite both ways).

Python's import system prefers an extension module to a source file of the same name, so a
source edited after the build would silently run its old compiled self. The build records a
digest of every source it compiled; the first import of ``pgdog_ev``, ``state`` or ``sim``
compares them, and if anything differs every listed module is imported from its source
instead. All or none: compiled modules reach into each other's classes directly and cannot
be mixed with their source twins.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType

# The modules every transaction runs through (see README, "Where the time goes"). A module
# listed here must type-check under mypy and keep to what mypyc compiles: no methods replaced
# on instances, no classes subclassed from uncompiled code, exceptions defined elsewhere.
NATIVE_MODULES: tuple[str, ...] = (
    "loop.clock",
    "loop.poller",
    "loop.protocol",
    "loop.reactor",
    "loop.timers",
    "loop.transport",
    "pgdog_ev.proxy.client_conn",
    "pgdog_ev.proxy.scheduler",
    "pgdog_ev.proxy.server_conn",
    "pgdog_ev.sql.analysis",
    "pgdog_ev.sql.cache",
    "pgdog_ev.sql.prefilter",
    "pgdog_ev.sql.route",
    "pgdog_ev.sql.route_lexer",
    "pgdog_ev.sql.text_lru",
    "pgdog_ev.wire._codec",
    "pgdog_ev.wire.backend",
    "pgdog_ev.wire.frontend",
    "pgdog_ev.wire.passrun",
    "pgdog_ev.wire.scanner",
    "state.balancer",
    "state.client",
    "state.client_admin",
    "state.client_effects",
    "state.client_fields",
    "state.client_local",
    "state.client_routing",
    "state.client_rw",
    "state.cluster",
    "state.events",
    "state.params",
    "state.pool",
    "state.server",
    "state.settings_tracker",
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "pgdog_ev", "_native_manifest.json")
PURE_ENV = "PGDOG_EV_PURE"


def source_path(module: str) -> str:
    return os.path.join(ROOT, *module.split(".")) + ".py"


def digest(module: str) -> str:
    with open(source_path(module), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def build_tag() -> str:
    """What a compiled module is only good for: this interpreter's ABI."""
    return sys.implementation.cache_tag or sys.version


def read_manifest(path: str = MANIFEST) -> dict[str, str] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("tag") != build_tag() or not isinstance(data.get("modules"), dict):
        return None
    return {str(k): str(v) for k, v in data["modules"].items()}


def write_manifest(modules: Sequence[str], path: str = MANIFEST) -> None:
    data = {"tag": build_tag(), "modules": {m: digest(m) for m in modules}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")


def judge(modules: Sequence[str] = NATIVE_MODULES, manifest: dict[str, str] | None = None,
          environ: dict[str, str] | None = None) -> str:
    """``"compiled"``, or why the sources run: ``"pure: ..."``."""
    env = os.environ if environ is None else environ
    if env.get(PURE_ENV, "") not in ("", "0"):
        return f"pure: {PURE_ENV} is set"
    if manifest is None:
        return "pure: not compiled (run make, or python -m pgdog_ev.native_build)"
    for module in modules:
        recorded = manifest.get(module)
        if recorded is None:
            return f"pure: {module} was not in the build"
        try:
            if digest(module) != recorded:
                return f"pure: {source_path(module)[len(ROOT) + 1 :]} changed since the build"
        except OSError:
            return f"pure: {module} has no source"
    return "compiled"


class SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the listed modules from their sources, ahead of the compiled files beside them."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.paths = {m: source_path(m) for m in modules}

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        source = self.paths.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _install() -> str:
    verdict = judge(manifest=read_manifest())
    if verdict != "compiled":
        early = [m for m in NATIVE_MODULES
                 if (getattr(sys.modules.get(m), "__file__", None) or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]
        if early:
            print(f"pgdog-ev: {', '.join(early)} were imported compiled before the check ({verdict})",
                  file=sys.stderr)
        sys.meta_path.insert(0, SourceFinder(NATIVE_MODULES))
    return verdict


# Set once per process, on the first import of pgdog_ev, state or sim.
STATUS: str = _install()
