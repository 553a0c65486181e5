"""Operator log lines of a worker process say which worker wrote them.

N workers write to the same stderr (the journal, a terminal); without a tag two "client 12
logged in" lines could come from either. The tag is an ``extra``-style field, so text lines end
in ``worker=1`` and JSON lines carry ``"worker": 1`` where pipelines already look for fields.
"""

from __future__ import annotations

import logging


class WorkerTag(logging.Filter):
    """Adds ``worker`` to every record that passes the handler (never drops one)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = self.index
        return True


def tag_worker(index: int, logger: str = "pgdog_ev") -> None:
    """Tag what the handlers of ``logger`` write (call again after setup_logging replaced them)."""
    for handler in logging.getLogger(logger).handlers:
        if not any(isinstance(f, WorkerTag) for f in handler.filters):
            handler.addFilter(WorkerTag(index))
