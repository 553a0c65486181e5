"""Event-log I/O: rotating file sink, reader, timeline formatting and the ``events`` command.

The record type, ring and binary encoding live in :mod:`state.events` (sans-IO); this package
adds the filesystem side.  Typical daemon wiring::

    header = make_header(config_digest=cfg_digest)
    sink = RotatingFileSink(path, header, on_error=log.warning)
    events = EventLog(sink=sink)
    ...  # per loop iteration: events.flush(); at shutdown: events.flush(); sink.close()
"""

from pgdog_ev.eventlog.filesink import DEFAULT_MAX_BYTES, RotatingFileSink, make_header
from pgdog_ev.eventlog.format import format_record, record_to_json
from pgdog_ev.eventlog.reader import LogFile, LogStream, read_file, read_files, rotated_set

__all__ = [
    "DEFAULT_MAX_BYTES",
    "LogFile",
    "LogStream",
    "RotatingFileSink",
    "format_record",
    "make_header",
    "read_file",
    "read_files",
    "record_to_json",
    "rotated_set",
]
