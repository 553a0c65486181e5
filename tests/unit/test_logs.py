"""Operator log formatting (text, json, json_flattened, journald prefix) and the RUST_LOG-style
log_level filter, including the configuration error for a malformed one."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator

import pytest

from pgdog_ev.config import ConfigError
from pgdog_ev.config.kinds import Invalid
from pgdog_ev.config.loader import load_config_text
from pgdog_ev.config.log_filter import parse_log_filter
from pgdog_ev.logs import level_number, make_formatter, setup_logging, stderr_is_journal


@pytest.fixture
def restore_logger() -> Iterator[None]:
    root = logging.getLogger("pgdog_ev")
    saved = (root.handlers[:], root.level, root.propagate)
    yield
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


def _record(level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("pgdog_ev.test")
    return logger.makeRecord(logger.name, level, __file__, 1, "login failed for %r", ("app",), None, extra=extra)


def test_text_appends_fields_quoting_odd_values() -> None:
    line = make_formatter("text").format(_record(user="app", addr="127.0.0.1:5555", note="two words"))
    assert line.endswith(" WARNING pgdog_ev.test: login failed for 'app' user=app addr=127.0.0.1:5555 note=\"two words\"")


def test_json_nests_fields_and_flattened_lifts_them() -> None:
    rec = _record(user="app", addr="127.0.0.1:5555", level_override="x")
    nested = json.loads(make_formatter("json").format(rec))
    assert nested["level"] == "warning" and nested["message"] == "login failed for 'app'"
    assert nested["fields"] == {"user": "app", "addr": "127.0.0.1:5555", "level_override": "x"}
    flat = json.loads(make_formatter("json_flattened").format(rec))
    assert flat["user"] == "app" and flat["addr"] == "127.0.0.1:5555" and "fields" not in flat
    assert list(flat)[:4] == ["time", "level", "logger", "message"]


def test_json_without_fields_and_with_exception() -> None:
    assert "fields" not in json.loads(make_formatter("json").format(_record()))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger = logging.getLogger("pgdog_ev.test")
        rec = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "oops", (), sys.exc_info())
    out = make_formatter("json").format(rec)
    assert "\n" not in out and "RuntimeError: boom" in json.loads(out)["exception"]


def test_fields_named_like_secrets_are_dropped() -> None:
    rec = _record(user="app", password="hunter2", server_password="x", auth_token="t", client_secret="s")
    for fmt in ("text", "json", "json_flattened"):
        out = make_formatter(fmt).format(rec)
        assert "hunter2" not in out and "auth_token" not in out and "client_secret" not in out
        assert "app" in out


def test_journal_prefix_carries_syslog_priority() -> None:
    fmt = make_formatter("json", journal=True)
    assert fmt.format(_record(logging.WARNING)).startswith("<4>{")
    assert fmt.format(_record(logging.ERROR)).startswith("<3>")
    assert fmt.format(_record(logging.INFO)).startswith("<6>")
    assert fmt.format(_record(logging.DEBUG)).startswith("<7>")


def test_stderr_is_journal_matches_device_and_inode(tmp_path) -> None:
    with open(tmp_path / "f", "w") as f:
        st = os.fstat(f.fileno())
        assert stderr_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stderr_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not stderr_is_journal(f, {})
    assert not stderr_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("info", "info"),
        ("DEBUG", "debug"),
        ("warn", "warn"),
        ("pgdog=debug,info", "debug"),
        ("info,pgdog=debug", "debug"),
        ("tokio=trace,warn", "warn"),
        ("pgdog::backend=trace", "trace"),
        ("hyper=debug", "info"),
        ("error,", "error"),
        ("off", "off"),
        ("pgdog[span{x=1}]=debug,info", "info"),
    ],
)
def test_log_filter_levels(text: str, level: str) -> None:
    assert parse_log_filter(text) == level


@pytest.mark.parametrize("text", ["", " , ", "degub", "pgdog=loud", "pgdog=", "=debug", "9x=info"])
def test_log_filter_rejects(text: str) -> None:
    with pytest.raises(Invalid):
        parse_log_filter(text)


def test_bad_log_level_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="log_level") as info:
        load_config_text('[general]\nlog_level = "verbose"\n', None, entropy=os.urandom)
    assert "verbose" in str(info.value)
    with pytest.raises(ConfigError, match="RUST_LOG"):
        load_config_text(None, None, entropy=os.urandom, env={"RUST_LOG": "pgdog=chatty"})


def test_setup_logging_level_and_format(restore_logger: None) -> None:
    out = io.StringIO()
    setup_logging("pgdog=warn,debug", "json", stream=out)
    log = logging.getLogger("pgdog_ev.test")
    log.info("hidden")
    log.warning("shown", extra={"user": "app"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["fields"] == {"user": "app"}
    assert level_number("off") > logging.CRITICAL
