"""The admin console: a virtual database answering SHOW and control commands (PgBouncer style)."""
