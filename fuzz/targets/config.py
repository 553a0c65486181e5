"""pgdog.toml and users.toml through the configuration loader.

Two targets. ``config_files``: the input is the bytes of pgdog.toml, then (after the first NUL,
which TOML text cannot contain) the bytes of users.toml, loaded from real files as the daemon
loads them. ``config_mutate``: the input picks one of the seed documents (the example configs)
and a list of structured edits (set a key to an odd value, delete or add a key, duplicate or drop
a table entry, move a key to another table); the edited documents are written back as TOML, so
most inputs get past the TOML parser into the checks behind it.

Oracles: only ConfigError escapes, and its text names its file (and its key when it has one);
loading is deterministic (the same files give the same digest); every ``[general]`` value of a
loaded Config survives SHOW CONFIG -> SET: ``render`` then ``from_text`` gives it back, and admin
``SET`` of a changeable key to its rendered value changes nothing.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuzz.oracle import check
from fuzz.source import ByteSource
from pgdog_ev.config import Config, ConfigError, load_config, load_config_text
from pgdog_ev.config.general_set import apply_override
from pgdog_ev.config.schema import ADMIN_KEYS, DATABASE_KEYS, GENERAL_KEYS, USER_KEYS
from tests.harness.proxy import dump_toml

EXAMPLES = Path(__file__).resolve().parents[2] / "ops" / "examples"
ENV: dict[str, str] = {}
KEY_SHOWN = 40


def _entropy(n: int) -> bytes:
    return bytes(n)


def check_error(error: ConfigError, files: tuple[str, ...]) -> None:
    text = str(error)
    check(error.file is not None, f"ConfigError without a file: {text}")
    check(error.file in files, f"ConfigError names {error.file!r}, not one of the inputs: {text}")
    check(str(error.file) in text, f"ConfigError text does not name its file: {text}")
    if error.key is not None:
        # The text shows a key as typed or JSON-quoted, long ones shortened (kinds.quote).
        quoted = json.dumps(error.key, ensure_ascii=False)[1:-1]
        check(error.key[:KEY_SHOWN] in text or quoted[:KEY_SHOWN] in text,
              f"ConfigError text does not name its key {error.key!r}: {text}")


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def check_config(config: Config) -> None:
    general = config.general
    for spec in GENERAL_KEYS:
        value = getattr(general, spec.name)
        rendered = spec.render(value)
        try:
            again = spec.from_text(rendered)
        except Exception as exc:  # any failure here is the bug being looked for
            raise AssertionError(f"[general] {spec.name} = {value!r} renders as {rendered!r}, "
                                 f"which does not parse back: {exc}") from exc
        check(_same(again, value), f"[general] {spec.name} = {value!r} renders as {rendered!r}, read back as {again!r}")
        if spec.changeable:
            quoted = f"'{rendered}'"  # as a person copying SHOW CONFIG's text would (keeps spaces)
            try:
                updated = apply_override(general, spec.name, quoted)
            except ConfigError as exc:
                raise AssertionError(f"SET {spec.name} TO {quoted} (its own value) fails: {exc}") from exc
            check(updated == general, f"SET {spec.name} TO {quoted} (its own value) changed [general]")


def check_load(load: Callable[[], Config], files: tuple[str, ...]) -> None:
    """Load twice: a ConfigError must name its source, a Config must come out the same."""
    try:
        config = load()
    except ConfigError as error:
        check_error(error, files)
        return
    check(load().digest == config.digest, "the same input gave another digest")
    check_config(config)


class _Files:
    """Two files in a private temporary directory, rewritten for every input."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="pgdog-ev-fuzz-config-")
        atexit.register(shutil.rmtree, self.dir, True)
        self.pgdog = os.path.join(self.dir, "pgdog.toml")
        self.users = os.path.join(self.dir, "users.toml")

    def write(self, pgdog: bytes, users: bytes) -> None:
        for path, data in ((self.pgdog, pgdog), (self.users, users)):
            with open(path, "wb") as f:
                f.write(data)


_files: _Files | None = None


def config_files(data: bytes) -> None:
    global _files
    if _files is None:
        _files = _Files()
    pgdog, _, users = data.partition(b"\0")
    _files.write(pgdog, users)
    paths = (_files.pgdog, _files.users)
    check_load(lambda: load_config(*paths, entropy=_entropy, env=ENV), paths)


# --- structured edits of a valid document ---------------------------------------------------------


def _example_docs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    docs = []
    for directory in (EXAMPLES, EXAMPLES / "replicas", EXAMPLES / "sharded"):
        with open(directory / "pgdog.toml", "rb") as f:
            pgdog = tomllib.load(f)
        with open(directory / "users.toml", "rb") as f:
            users = tomllib.load(f)
        docs.append((pgdog, users))
    return docs


DOCS = _example_docs()
KEYS = sorted({spec.name for spec in GENERAL_KEYS + DATABASE_KEYS + USER_KEYS + ADMIN_KEYS} | {"unknown_key"})
VALUES: tuple[Any, ...] = (
    -1, 0, 1, 2, 5, 1000, 65535, 65536, 2**31, 2**63 - 1, -(2**63), 1.5, -0.0, math.inf, math.nan,
    True, False, "", " ", "0", "off", "transaction", "session", "statement", "primary", "replica", "auto",
    "scram", "md5", "trust", "plain", "127.0.0.1", "localhost", "::1", "0.0.0.0", "app", "x" * 300, "é",
    "a\nb", "5s", "info", "pgdog_ev=debug", [], [1], ["a"], ["a", "b"], {}, {"a": 1}, [[1]],
)
EDITS = 8


def _tables(pgdog: dict[str, Any], users: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in (pgdog, users):
        for value in doc.values():
            if isinstance(value, dict):
                out.append(value)
            elif isinstance(value, list):
                out.extend(v for v in value if isinstance(v, dict))
    return out


def _edit(src: ByteSource, pgdog: dict[str, Any], users: dict[str, Any]) -> None:
    op = src.byte() % EDITS
    tables = _tables(pgdog, users)
    if not tables:
        pgdog["general"] = {}
        return
    table = src.choice(tables)
    keys = sorted(table)
    key = src.choice(keys) if keys else src.choice(KEYS)
    value = src.choice(VALUES)
    if op == 0:
        table[key] = value
    elif op == 1:
        table.pop(key, None)
    elif op == 2:
        table[src.choice(KEYS)] = value
    elif op == 3:
        for doc, name in ((pgdog, "databases"), (users, "users")):
            entries = doc.get(name)
            if isinstance(entries, list) and entries:
                entries.append(dict(src.choice(entries)))
    elif op == 4:
        doc = src.choice((pgdog, users))
        if doc:
            doc.pop(src.choice(sorted(doc)), None)
    elif op == 5 and key in table:
        src.choice(tables)[key] = table.pop(key)
    elif op == 6:
        table[key] = [table.get(key, value)]
    else:
        table[key] = str(table.get(key, value))


def config_mutate(data: bytes) -> None:
    src = ByteSource(data)
    base_pgdog, base_users = src.choice(DOCS)
    pgdog = {k: (dict(v) if isinstance(v, dict) else [dict(e) for e in v] if isinstance(v, list) else v)
             for k, v in base_pgdog.items()}
    users = {k: [dict(e) for e in v] if isinstance(v, list) else v for k, v in base_users.items()}
    while src.pos < len(src.data):
        _edit(src, pgdog, users)
    texts = (dump_toml(pgdog), dump_toml(users))
    check_load(lambda: load_config_text(*texts, entropy=_entropy, env=ENV), ("pgdog.toml", "users.toml"))
