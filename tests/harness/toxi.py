"""A real toxiproxy server for the chaos tests, driven through toxiproxy-python.

`ToxiproxyServer` starts `toxiproxy-server` on a free loopback port (one per test process: the
toxiproxy-python client keeps its API address in a class attribute, so one process talks to one
server). `Link` is one toxiproxy proxy in front of one upstream port: the chaos tests put one between
pgdog-ev and each PostgreSQL server and one between the clients and pgdog-ev, then add and remove
toxics on them.

The binary is `.venv/bin/toxiproxy-server` (installed by `make toxiproxy`, which `make setup` runs),
else `toxiproxy-server` on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer

from tests.harness.ports import free_port, wait_for_port
from tests.harness.proxy import REPO_ROOT

# Both directions, as toxiproxy names them: upstream is client -> server, downstream server -> client.
UPSTREAM, DOWNSTREAM = "upstream", "downstream"
BOTH = (UPSTREAM, DOWNSTREAM)


def toxiproxy_path() -> str | None:
    local = os.path.join(REPO_ROOT, ".venv", "bin", "toxiproxy-server")
    if os.access(local, os.X_OK):
        return local
    return shutil.which("toxiproxy-server")


class Link:
    """One toxiproxy proxy: clients connect to `port`, toxiproxy forwards to the upstream port."""

    def __init__(self, server: ToxiproxyServer, name: str, upstream_port: int) -> None:
        self.server = server
        self.name = name
        self.upstream_port = upstream_port
        self._proxy = server.api.create(upstream=f"127.0.0.1:{upstream_port}", name=name,
                                        listen="127.0.0.1:0")
        self.port = int(str(self._proxy.listen).rsplit(":", 1)[1])
        self.toxics: list[str] = []

    def add(self, kind: str, stream: str = DOWNSTREAM, toxicity: float = 1.0, **attributes: Any) -> str:
        """Add a toxic of `kind` (latency, bandwidth, slow_close, timeout, reset_peer, slicer,
        limit_data) on one direction; returns its name for `remove`."""
        name = f"{kind}_{stream}_{len(self.toxics)}"
        self._proxy.add_toxic(name=name, type=kind, stream=stream, toxicity=toxicity, attributes=attributes)
        self.toxics.append(name)
        return name

    def remove(self, name: str) -> None:
        self._proxy.destroy_toxic(name)
        self.toxics.remove(name)

    def clear(self) -> None:
        """Remove every toxic and enable the proxy again."""
        for name in list(self.toxics):
            self.remove(name)
        self.up()

    def down(self) -> None:
        """Stop listening and close every connection through this link (toxiproxy's `enabled=false`)."""
        self._proxy.disable()

    def up(self) -> None:
        self._proxy.enable()

    def listed_toxics(self) -> list[str]:
        """The toxics the server reports for this proxy (to check a clear really cleared)."""
        return sorted(self._proxy.toxics())

    def destroy(self) -> None:
        self._proxy.destroy()

    def __repr__(self) -> str:
        return f"Link({self.name} :{self.port} -> :{self.upstream_port})"


class ToxiproxyServer:
    """A toxiproxy-server subprocess on loopback with its own log file."""

    def __init__(self) -> None:
        path = toxiproxy_path()
        if path is None:
            pytest.fail("toxiproxy-server not found: run `make toxiproxy` (make setup installs it)",
                        pytrace=False)
        self.path = path
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="toxiproxy-")
        self.log_path = os.path.join(self.dir, "toxiproxy.log")
        self.proc: subprocess.Popen | None = None
        self.api = Toxiproxy()

    def start(self) -> ToxiproxyServer:
        with open(self.log_path, "ab") as log:
            # A fixed seed: jitter and toxicity draws repeat from run to run.
            self.proc = subprocess.Popen(
                [self.path, "-host", "127.0.0.1", "-port", str(self.port), "-seed", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        if not wait_for_port("127.0.0.1", self.port, timeout=20, proc=self.proc):
            self.stop()
            pytest.fail(f"toxiproxy-server did not start:\n{self.log_tail()}", pytrace=False)
        self.api.update_api_consumer("127.0.0.1", self.port)
        return self

    def link(self, name: str, upstream_port: int) -> Link:
        # The client's API address is process-wide: point it at this server before each use.
        APIConsumer.host, APIConsumer.port = "127.0.0.1", self.port
        return Link(self, name, upstream_port)

    def reset(self) -> None:
        """Every proxy enabled and every toxic gone (toxiproxy's POST /reset)."""
        self.api.reset()

    def destroy_all(self) -> None:
        self.api.destroy_all()

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
