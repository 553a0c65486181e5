"""SQL understanding for the pooler: which statements affect session state."""

from pgdog_ev.sql.analysis import Analysis, Kind, QueryCache, Statement, analyze, default_cache

__all__ = ["Analysis", "Kind", "QueryCache", "Statement", "analyze", "default_cache"]
