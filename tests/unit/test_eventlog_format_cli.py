"""Tests for record formatting and the `pgdog-ev events` command."""

from __future__ import annotations

import json
from enum import IntEnum

import pytest

from pgdog_ev.eventlog.cli import events_main
from pgdog_ev.eventlog.filesink import RotatingFileSink
from pgdog_ev.eventlog.format import format_record, record_to_json
from state import registry
from state.events import EventLog, Kind, LogHeader, Machine, Record

TEST_MACHINE = 250  # unused machine number, so real registrations are not disturbed

# 2026-11-21T19:46:00Z in ns; now == 0 maps to it; the log started at now == 5s
HEADER = LogHeader(code_version="t", clock_epoch_ns=1_795_290_360 * 10**9, monotonic_start_ns=5 * 10**9)


class TState(IntEnum):
    IDLE = 1
    WAITING = 2


class TReason(IntEnum):
    CHECKOUT = 7


registry.register_states(TEST_MACHINE, TState)
registry.register_reasons(TEST_MACHINE, TReason)


def test_format_transition_with_registered_names():
    rec = Record(1234, 17_345_678_000, Kind.TRANSITION, TEST_MACHINE, 17, 1, 2, 7, 3)
    line = format_record(rec, HEADER)
    assert (
        line
        == "2026-11-21T19:46:17.345678Z +12.345678s #1234 250:17 TRANSITION IDLE -> WAITING reason=CHECKOUT b=3"
    )
    assert format_record(rec, None).startswith("+17.345678s #1234 250:17 TRANSITION IDLE -> WAITING")


def test_format_other_kinds_and_unknowns():
    assert format_record(Record(1, 0, Kind.CONNECT, Machine.SERVER, 4, 0, 0, 111, 0)).endswith(
        "server:4 CONNECT result=ECONNREFUSED(111)"
    )
    assert format_record(Record(1, 0, Kind.READ, Machine.CLIENT, 4, 0, 0, 512, 2)).endswith(
        "client:4 READ bytes=512 chunk=2"
    )
    assert format_record(Record(1, 0, Kind.CHECKOUT, Machine.POOL, 1, 0, 0, 17, 3)).endswith(
        "pool:1 CHECKOUT client=17 server=3"
    )
    assert format_record(Record(1, 0, 99, 77, 5, 0, 0, 1, -2)).endswith("77:5 KIND_99 a=1 b=-2")
    unknown_state = Record(1, 0, Kind.TRANSITION, TEST_MACHINE, 5, 1, 42, 0, 0)
    assert format_record(unknown_state).endswith("TRANSITION IDLE -> 42")


def test_record_to_json():
    rec = Record(9, 6 * 10**9, Kind.TRANSITION, TEST_MACHINE, 17, 1, 2, 7, 3)
    d = record_to_json(rec, HEADER)
    assert d["seq"] == 9 and d["t"] == pytest.approx(1.0)
    assert d["kind"] == "TRANSITION" and d["machine"] == "250"
    assert d["frm_name"] == "IDLE" and d["to_name"] == "WAITING" and d["reason"] == "CHECKOUT"
    assert d["wall"] == "2026-11-21T19:46:06.000000Z"
    json.dumps(d)


@pytest.fixture
def logfile(tmp_path):
    path = str(tmp_path / "ev.evlog")
    hlen = len(HEADER.encode())
    sink = RotatingFileSink(path, HEADER, max_bytes=hlen + 48 * 20, keep=5)
    log = EventLog(capacity=8, sink=sink)
    for i in range(40):  # now = 5.0 .. 8.9 -> relative 0.0 .. 3.9
        now = 5.0 + i / 10
        if i % 2 == 0:
            log.emit(now, Kind.TRANSITION, Machine.CLIENT, i % 4, 1, 2, 0, 0)
        else:
            log.emit(now, Kind.CHECKOUT, Machine.POOL, 1, a=i, b=i % 4)
    log.flush()
    sink.close()
    return path


def test_events_basic_and_filters(logfile, capsys):
    assert events_main([logfile]) == 0  # current file only: records 20..39
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 20 and "#20 " in lines[0]

    assert events_main([logfile, "--all-rotated"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 40 and "#0 " in lines[0] and "#39 " in lines[-1]

    assert events_main([logfile, "--all-rotated", "--machine", "client", "--id", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(" client:2 TRANSITION " in ln for ln in lines)
    assert len(lines) == 10

    assert (
        events_main([logfile, "--all-rotated", "--kind", "checkout", "--since", "1.0", "--until", "1.95"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[2] for ln in lines] == ["#11", "#13", "#15", "#17", "#19"]

    assert events_main([logfile, "--all-rotated", "--tail", "3", "--format", "json"]) == 0
    objs = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [o["seq"] for o in objs] == [37, 38, 39]
    assert objs[-1]["kind"] == "CHECKOUT" and objs[-1]["machine"] == "pool"


def test_events_errors(tmp_path, logfile, capsys):
    missing = str(tmp_path / "nope.evlog")
    assert events_main([missing]) == 1
    err = capsys.readouterr().err
    assert "nope.evlog" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    assert events_main([missing, "--all-rotated"]) == 1
    capsys.readouterr()

    bad = tmp_path / "bad.evlog"
    bad.write_bytes(b"not an event log at all")
    assert events_main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad magic" in err and len(err.strip().splitlines()) == 1

    assert events_main([logfile, "--machine", "toaster"]) == 2
    assert "unknown machine" in capsys.readouterr().err

    with open(logfile, "ab") as fh:
        fh.write(b"\x00" * 7)
    assert events_main([logfile, "--tail", "1"]) == 0
    captured = capsys.readouterr()
    assert "#39 " in captured.out and "truncated" in captured.err


def test_all_rotated_skips_empty_files(logfile, tmp_path, capsys):
    """A daemon killed between rotating and writing the next header leaves a 0-byte file in the
    set: the records of the other files are still printed, and the command succeeds."""
    open(f"{logfile}.9", "wb").close()
    assert events_main([logfile, "--all-rotated"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 40 and captured.err == ""
    empty = str(tmp_path / "empty.evlog")
    open(empty, "wb").close()
    open(empty + ".1", "wb").close()
    assert events_main([empty, "--all-rotated"]) == 1
    assert "no events (every file is empty)" in capsys.readouterr().err
