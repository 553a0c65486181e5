"""Session settings (GUCs): defaults, validation, and which ones are reported to the client.

The proxy tracks ParameterStatus messages and syncs settings between
clients, so the fake server reports the same GUC_REPORT settings PostgreSQL
14+ does, at the same moment (just before ReadyForQuery, only when changed),
and rejects unknown names with 42704 as PostgreSQL does.
"""

from __future__ import annotations

from sim.fakepg.errors import (
    CANT_CHANGE_RUNTIME_PARAM,
    INVALID_PARAMETER_VALUE,
    UNDEFINED_OBJECT,
    SqlError,
)

SERVER_VERSION = "16.4"

# GUC_REPORT settings, with the spelling ParameterStatus uses.
REPORTED = (
    "application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
    "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version",
    "session_authorization", "standard_conforming_strings", "TimeZone",
)
CANONICAL = {name.lower(): name for name in REPORTED}

DEFAULTS: dict[str, str] = {
    "application_name": "",
    "client_encoding": "UTF8",
    "datestyle": "ISO, MDY",
    "default_transaction_read_only": "off",
    "default_transaction_isolation": "read committed",
    "transaction_isolation": "read committed",
    "transaction_read_only": "off",
    "in_hot_standby": "off",
    "integer_datetimes": "on",
    "intervalstyle": "postgres",
    "is_superuser": "on",
    "server_encoding": "UTF8",
    "server_version": SERVER_VERSION,
    "server_version_num": "160004",
    "session_authorization": "",
    "standard_conforming_strings": "on",
    "timezone": "UTC",
    "search_path": '"$user", public',
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "idle_session_timeout": "0",
    "extra_float_digits": "1",
    "work_mem": "4MB",
    "bytea_output": "hex",
    "max_connections": "100",
    "role": "none",
    "timezone_abbreviations": "Default",
    "client_min_messages": "notice",
    "log_statement": "none",
    "jit": "off",
    "lc_messages": "C",
    "geqo": "on",
    "row_security": "on",
    "max_parallel_workers_per_gather": "2",
    "enable_seqscan": "on",
    "enable_indexscan": "on",
    "default_statistics_target": "100",
    "random_page_cost": "4",
    "plan_cache_mode": "auto",
}

READ_ONLY = frozenset({
    "server_version", "server_version_num", "server_encoding", "integer_datetimes", "in_hot_standby",
    "max_connections", "is_superuser", "session_authorization",
})
BOOLEANS = frozenset({
    "default_transaction_read_only", "transaction_read_only", "standard_conforming_strings", "jit", "geqo",
    "row_security", "enable_seqscan", "enable_indexscan",
})
TIMEOUTS = frozenset({"statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
                      "idle_session_timeout"})
_SYNC_VALUES = {"on": "on", "off": "off", "true": "on", "false": "off", "yes": "on", "no": "off", "1": "on",
                "0": "off", "local": "local", "remote_write": "remote_write", "remote_apply": "remote_apply"}
_TRUE = {"on", "true", "yes", "1", "t", "y"}
_FALSE = {"off", "false", "no", "0", "f", "n"}
_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "us": 0.000001}


def unknown(name: str) -> SqlError:
    return SqlError(UNDEFINED_OBJECT, f'unrecognized configuration parameter "{name}"')


# Settings whose default is not the session's to hold (the server's value applies until SET).
SERVER_DEFAULTS = frozenset({"synchronous_commit"})


def is_known(name: str) -> bool:
    # Names with a dot are custom ("placeholder") settings, which PostgreSQL accepts.
    return name in DEFAULTS or name in SERVER_DEFAULTS or "." in name


def timeout_seconds(value: str) -> float:
    """'5000' (ms), '5s', '1min', '250ms' -> seconds; 0 means disabled."""
    text = value.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):] or "ms"
    try:
        return float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise SqlError(INVALID_PARAMETER_VALUE, f'invalid value for parameter: "{value}"') from None


def normalize(name: str, value: str) -> str:
    """Check and canonicalise a value, as PostgreSQL's GUC machinery would."""
    if name in BOOLEANS:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return "on"
        if lowered in _FALSE:
            return "off"
        raise SqlError(INVALID_PARAMETER_VALUE, f'parameter "{name}" requires a Boolean value')
    if name == "synchronous_commit":
        mapped = _SYNC_VALUES.get(value.strip().lower())
        if mapped is None:
            raise SqlError(INVALID_PARAMETER_VALUE,
                           f'invalid value for parameter "synchronous_commit": "{value}"')
        return mapped
    if name in TIMEOUTS:
        timeout_seconds(value)
    if name == "client_encoding" and value.strip().upper().replace("-", "") not in ("UTF8", "UNICODE"):
        raise SqlError(INVALID_PARAMETER_VALUE, f'invalid value for parameter "client_encoding": "{value}"')
    if name == "client_encoding":
        return "UTF8"
    return value


class SessionSettings:
    """A session's GUC values over its startup defaults, and what was last reported."""

    def __init__(self, startup: dict[str, str]) -> None:
        self.defaults = dict(DEFAULTS)
        self.defaults.update(startup)
        self.values = dict(self.defaults)
        self.reported: dict[str, str] = {}

    def get(self, name: str) -> str:
        try:
            return self.values[name]
        except KeyError:
            raise unknown(name) from None

    def check_settable(self, name: str) -> None:
        if not is_known(name):
            raise unknown(name)
        if name in READ_ONLY:
            raise SqlError(CANT_CHANGE_RUNTIME_PARAM, f'parameter "{name}" cannot be changed')

    def set(self, name: str, value: str | None) -> str:
        self.check_settable(name)
        if value is None and name not in self.defaults:
            self.values.pop(name, None)
            return ""
        new = self.defaults.get(name, "") if value is None else normalize(name, value)
        self.values[name] = new
        return new

    def reset_all(self) -> None:
        for name in sorted(self.values):
            if name not in READ_ONLY:
                self.values[name] = self.defaults.get(name, "")
        for name in [n for n in self.values if n not in self.defaults]:
            del self.values[name]

    def snapshot(self) -> dict[str, str]:
        return dict(self.values)

    def restore(self, snapshot: dict[str, str]) -> None:
        self.values = dict(snapshot)

    def changed_reports(self, dynamic: dict[str, str]) -> list[tuple[str, str]]:
        """ParameterStatus (name, value) pairs whose value changed since last reported."""
        out: list[tuple[str, str]] = []
        for canonical in REPORTED:
            name = canonical.lower()
            value = dynamic.get(name, self.values.get(name, ""))
            if self.reported.get(canonical) != value:
                self.reported[canonical] = value
                out.append((canonical, value))
        return out


def startup_settings(params: dict[str, str]) -> dict[str, str]:
    """Startup-packet parameters that are settings, keyed by lower-case name; unknown ones are FATAL."""
    out: dict[str, str] = {}
    for raw_name, value in params.items():
        name = raw_name.lower()
        if name in ("user", "database", "options", "replication"):
            continue
        if not is_known(name):
            raise unknown(raw_name)
        if name in READ_ONLY:
            raise SqlError(CANT_CHANGE_RUNTIME_PARAM, f'parameter "{name}" cannot be changed without restarting'
                           " the server")
        out[name] = normalize(name, value)
    return out
