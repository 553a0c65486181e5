"""Reading pgdog.toml / users.toml into plain dicts, with every failure as a ConfigError.

The proxy's start-up and admin ``RELOAD`` must be able to report a broken file and carry on (or
exit cleanly); so nothing that can go wrong while reading arbitrary bytes (missing file,
permissions, bad UTF-8, TOML syntax, absurd nesting) may escape as another exception type.
"""

from __future__ import annotations

import tomllib
from typing import Any

from .errors import ConfigError


def read_toml_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError("file not found", file=path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a TOML file", file=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=path) from None
    return parse_toml(data, path)


def parse_toml(data: bytes | str, name: str) -> dict[str, Any]:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ConfigError(f"not valid UTF-8 (line {line}, byte {exc.start})", file=name) from None
    else:
        text = data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's text ends with "(at line L, column C)", which is what the operator needs.
        raise ConfigError(f"invalid TOML: {exc}", file=name) from None
    except RecursionError:
        raise ConfigError("invalid TOML: values nested too deeply", file=name) from None
