"""Operator logging: one line per event worth attention, as text or JSON, on stderr.

Messages never carry passwords or query parameters; callers format only names,
addresses and reasons into them. Structured context travels as ``extra={...}``
(``user``, ``database``, ``addr``, ...) so log pipelines can filter on it without
parsing prose: JSON puts it under ``"fields"`` (``log_format = "json"``) or at the
top level (``"json_flattened"``), text appends it as ``key=value``.

Under systemd, stderr usually is the journal: then each line starts with a
``<N>`` syslog priority prefix, which journald strips and stores as the entry's
priority, so ``journalctl -p warning`` works on text and JSON alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from pgdog_ev.config.log_filter import parse_log_filter

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# Defence in depth: an extra whose name says it is a secret is dropped, whoever passed it.
_SECRET_KEY = re.compile(r"pass|secret|token|credential", re.I)
_BARE_VALUE = re.compile(r"[A-Za-z0-9_.:/@+-]+")

_LEVELS: Mapping[str, int] = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}

# syslog priorities for journald's "<N>" line prefix (SyslogLevelPrefix=yes, its default).
_SYSLOG_PRIORITY: tuple[tuple[int, int], ...] = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)


def level_number(log_level: str) -> int:
    """The logging level of a ``log_level`` filter (already validated by the config loader)."""
    return _LEVELS[parse_log_filter(log_level)]


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, in the order given, secrets removed."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_ATTRS and not key.startswith("_") and not _SECRET_KEY.search(key)
    }


def _utc(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the extra fields."""

    def __init__(self, flattened: bool = False) -> None:
        super().__init__()
        self.flattened = flattened

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _utc(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = extra_fields(record)
        if self.flattened:
            # The fixed keys win a name clash: a field can never forge a level or a time.
            out.update((k, v) for k, v in fields.items() if k not in out)
        elif fields:
            out["fields"] = fields
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> key=value ...`` in UTC."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    text = str(value)
    return text if _BARE_VALUE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class JournalPrefix(logging.Formatter):
    """Wraps a formatter to put journald's ``<N>`` priority in front of each record."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _SYSLOG_PRIORITY if record.levelno >= level), 7)
        return f"<{priority}>{self.inner.format(record)}"


def stderr_is_journal(stream: TextIO, env: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journal stream systemd handed us (JOURNAL_STREAM=dev:inode)."""
    value = env.get("JOURNAL_STREAM", "")
    dev, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


def make_formatter(fmt: str, *, journal: bool = False) -> logging.Formatter:
    formatter: logging.Formatter
    if fmt in ("json", "json_flattened"):
        formatter = JsonFormatter(flattened=fmt == "json_flattened")
    else:
        formatter = TextFormatter()
    return JournalPrefix(formatter) if journal else formatter


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Point the ``pgdog_ev`` loggers at stderr with the configured level and format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(fmt, journal=stderr_is_journal(stream, os.environ)))
    root = logging.getLogger("pgdog_ev")
    root.handlers[:] = [handler]
    root.setLevel(level_number(level))
    root.propagate = False
