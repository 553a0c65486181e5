"""Test harness: real PostgreSQL servers (PgServer) and the proxy under test (ProxyProcess)."""

from tests.harness.pgserver import PgServer, find_bindir
from tests.harness.ports import free_port, port_open, wait_for_port
from tests.harness.proxy import ProxyProcess, dump_toml

__all__ = ["PgServer", "ProxyProcess", "dump_toml", "find_bindir", "free_port", "port_open", "wait_for_port"]
