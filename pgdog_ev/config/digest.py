"""A stable fingerprint of the effective configuration.

The event-log header carries it so a captured log can be matched to the settings that produced
it, and so replay can refuse a configuration that differs. It must therefore be identical across
runs and machines for the same effective settings: canonical JSON (sorted keys, fixed
separators) of the values after defaults, aliases and environment were applied; file paths are
left out because the same settings may live in different places.

Secrets are reduced to "set / not set". The header is meant to be shared when debugging, and a
hash over a config whose other values are known would let anyone test password guesses offline.
A randomly generated admin password is also reduced, or the digest would change on every start.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

_SECRET_FIELDS = frozenset({"password", "passwords", "password_hash", "server_password"})
_SET = "<set>"
_GENERATED = "<generated>"


def _redacted(record: object) -> dict[str, Any]:
    assert dataclasses.is_dataclass(record) and not isinstance(record, type)
    values: dict[str, Any] = {}
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if item.name in _SECRET_FIELDS and value not in (None, ()):
            value = _SET
        values[item.name] = value
    return values


def _plain(value: object) -> object:
    """Make TOML-sourced values (tuples, dates) JSON-encodable deterministically."""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(f"cannot canonicalise {type(value).__name__}")


def config_digest(
    general: object,
    databases: Sequence[object],
    users: Sequence[object],
    admin: object,
    extra_sections: Mapping[str, Any],
) -> str:
    admin_values = _redacted(admin)
    if admin_values.get("password_generated"):
        admin_values["password"] = _GENERATED
    document = {
        "format": 1,
        "general": dataclasses.asdict(general),  # type: ignore[call-overload]
        "databases": [_redacted(entry) for entry in databases],
        "users": [_redacted(entry) for entry in users],
        "admin": admin_values,
        "extra_sections": dict(extra_sections),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_plain)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
