"""Fixtures of the integration tests that live in harness modules of their own (tests/conftest.py
has the shared ones). Importing them here registers them for every test module of this package,
on every pytest-xdist worker."""

from tests.harness.replicas import fresh_replica_set, replica_set

__all__ = ["fresh_replica_set", "replica_set"]
