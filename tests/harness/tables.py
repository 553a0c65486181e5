"""Tables for a test, created as the PostgreSQL superuser and granted to the app user, with a
random suffix so that tests sharing one server (and reruns) never collide."""

from __future__ import annotations

import uuid

from tests.conftest import APP_DB, APP_USER
from tests.harness.pgserver import PgServer


def create_table(pg: PgServer, prefix: str, columns: str = "id int", unlogged: bool = False) -> str:
    """Create `prefix_<random>` (columns, optionally UNLOGGED) in APP_DB; return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    kind = "UNLOGGED TABLE" if unlogged else "TABLE"
    pg.psql(f"CREATE {kind} {name} ({columns}); GRANT ALL ON {name} TO {APP_USER}", db=APP_DB)
    return name
