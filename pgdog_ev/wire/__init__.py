"""Sans-IO codec for the PostgreSQL frontend/backend protocol (3.0, with 3.2 awareness).

Nothing here touches sockets, clocks or logging, so the same code serves the
live proxy, the deterministic simulator and the fuzzers.  Submodules are not
re-exported: import the one you need (``from pgdog_ev.wire import backend``)
so that loading the package stays cheap.
"""
