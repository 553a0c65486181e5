"""Tests for the rotating file sink and the reader."""

from __future__ import annotations

import errno
import os

import pytest

from pgdog_ev.eventlog.filesink import RotatingFileSink, make_header
from pgdog_ev.eventlog.reader import LogStream, read_file, read_files, rotated_set
from state.events import RECORD_SIZE, EventLog, Kind, LogHeader, Machine

HEADER = LogHeader(
    code_version="test", config_digest="cfg", seed=7, clock_epoch_ns=10**18, pid=1, hostname="t"
)


def _emit(log: EventLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.emit(i / 10, Kind.READ, Machine.SERVER, i % 3, a=i, b=-i)


def test_write_read_round_trip_no_loss_on_close(tmp_path):
    path = str(tmp_path / "ev.evlog")
    sink = RotatingFileSink(path, HEADER)
    log = EventLog(capacity=64, sink=sink)
    _emit(log, 1000)  # several automatic flushes from emit
    log.flush()
    sink.close()
    assert not sink.broken
    lf = read_file(path)
    assert lf.header == HEADER
    assert not lf.truncated
    assert lf.path == path
    assert [r.seq for r in lf.records] == list(range(1000))
    assert lf.records[5].a == 5 and lf.records[5].b == -5 and lf.records[5].now_ns == 500_000_000
    sink.close()  # idempotent
    sink(memoryview(b"x" * RECORD_SIZE))  # after close: ignored


def test_rotation_keep_and_headers(tmp_path):
    path = str(tmp_path / "ev.evlog")
    hlen = len(HEADER.encode())
    max_bytes = hlen + 10 * RECORD_SIZE
    sink = RotatingFileSink(path, HEADER, max_bytes=max_bytes, keep=3)
    log = EventLog(capacity=16, sink=sink)
    _emit(log, 100)
    log.flush()
    sink.close()
    files = rotated_set(path)
    assert files == [f"{path}.3", f"{path}.2", f"{path}.1", path]
    assert not os.path.exists(f"{path}.4")
    assert sink.rotations == 9
    for f in files:
        assert os.path.getsize(f) <= max_bytes
        with open(f, "rb") as fh:
            assert fh.read(8) == b"PGDOGEV\x00"
    logs = read_files(files)
    assert all(lf.header == HEADER for lf in logs)
    seqs = [r.seq for lf in logs for r in lf.records]
    assert seqs == list(range(60, 100))


def test_existing_file_is_rotated_at_startup(tmp_path):
    path = str(tmp_path / "ev.evlog")
    with open(path, "wb") as fh:
        fh.write(b"old contents")
    sink = RotatingFileSink(path, HEADER, keep=2)
    sink.close()
    with open(f"{path}.1", "rb") as fh:
        assert fh.read() == b"old contents"
    lf = read_file(path)
    assert lf.records == [] and not lf.truncated

    sink = RotatingFileSink(path, HEADER, keep=0)
    sink.close()
    assert rotated_set(path) == [f"{path}.1", path]  # keep=0 deletes instead of rotating


def test_unwritable_directory_reports_once(tmp_path):
    errors: list[str] = []
    path = str(tmp_path / "missing-dir" / "ev.evlog")
    sink = RotatingFileSink(path, HEADER, on_error=errors.append)
    assert sink.broken
    log = EventLog(capacity=4, sink=sink)
    _emit(log, 20)
    log.flush()
    sink.flush()
    sink.fsync()
    sink.close()
    assert len(errors) == 1
    assert "missing-dir" in errors[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_reports_once(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        errors: list[str] = []
        sink = RotatingFileSink(str(ro / "ev.evlog"), HEADER, on_error=errors.append)
        sink(memoryview(bytes(RECORD_SIZE)))
        assert sink.broken and len(errors) == 1
    finally:
        ro.chmod(0o700)


class _FullDisk:
    def __init__(self, real):
        self.real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self):
        self.real.close()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_disables_writing(tmp_path):
    errors: list[str] = []
    sink = RotatingFileSink(str(tmp_path / "ev.evlog"), HEADER, on_error=errors.append)
    sink._file = _FullDisk(sink._file)
    log = EventLog(capacity=4, sink=sink)
    _emit(log, 50)  # triggers flushes from emit; must not raise
    log.flush()
    sink.fsync()
    sink.close()
    assert sink.broken
    assert len(errors) == 1
    assert "No space left" in errors[0]


def test_on_error_exceptions_are_swallowed(tmp_path):
    def boom(msg):
        raise RuntimeError(msg)

    sink = RotatingFileSink(str(tmp_path / "nope" / "x"), HEADER, on_error=boom)
    assert sink.broken


def test_reader_truncated_and_corrupt(tmp_path):
    path = str(tmp_path / "ev.evlog")
    sink = RotatingFileSink(path, HEADER)
    log = EventLog(capacity=8, sink=sink)
    _emit(log, 10)
    log.flush()
    sink.close()
    with open(path, "ab") as fh:
        fh.write(b"\x01" * 20)
    lf = read_file(path)
    assert lf.truncated
    assert len(lf.records) == 10
    with LogStream(path, chunk_records=3) as stream:
        assert [r.seq for r in stream] == list(range(10))
        assert stream.truncated

    bad = tmp_path / "bad.evlog"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="magic"):
        read_file(str(bad))
    empty = tmp_path / "empty.evlog"
    empty.write_bytes(b"")
    with pytest.raises(ValueError):
        read_file(str(empty))
    with pytest.raises(OSError):
        read_file(str(tmp_path / "does-not-exist"))


def test_rotated_set_numeric_order(tmp_path):
    base = tmp_path / "ev.evlog"
    for suffix in ("", ".1", ".2", ".10", ".x", "x.3"):
        (tmp_path / f"ev.evlog{suffix}").write_bytes(b"")
    p = str(base)
    assert rotated_set(p) == [f"{p}.10", f"{p}.2", f"{p}.1", p]
    assert rotated_set(str(tmp_path / "other")) == []


def test_make_header():
    h = make_header(config_digest="d", seed=3, code_version="1.2")
    assert h.code_version == "1.2" and h.seed == 3 and h.pid == os.getpid()
    assert LogHeader.decode(h.encode())[0] == h
