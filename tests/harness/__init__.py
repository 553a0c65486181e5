"""Test harness: real PostgreSQL servers (PgServer) and the proxy under test (ProxyProcess).

Helpers the integration tests share live in their own modules, imported from there (not from here,
since several of them import tests.conftest, which imports this package): clients (psycopg clients,
BackgroundClient), config ([[databases]] / [[users]] entries), rawclient (raw protocol-3 sockets),
memory (RSS sampling), pgbench, events (decoded event log) and tables.
"""

from tests.harness.pgserver import PgServer, find_bindir
from tests.harness.ports import free_port, port_open, wait_for_port
from tests.harness.proxy import ProxyProcess, dump_toml

__all__ = ["PgServer", "ProxyProcess", "dump_toml", "find_bindir", "free_port", "port_open", "wait_for_port"]
