"""`ops/demo/demo.py --check` (what `make run` starts) brings PostgreSQL and the proxy up, runs a
query through the proxy, stops both and exits 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from tests.harness.ports import free_port, port_open
from tests.harness.proxy import REPO_ROOT, _child_env


def test_demo_check():
    # Not under pytest's 0700 basetemp: as root the server runs as another OS user that must reach it.
    data = tempfile.mkdtemp(prefix="pgdog-ev-demo-")
    os.chmod(data, 0o755)
    port, pg_port, replica_port = free_port(), free_port(), free_port()
    try:
        res = subprocess.run(
            [sys.executable, os.path.join("ops", "demo", "demo.py"), "--data", data, "--check",
             "--port", str(port), "--pg-port", str(pg_port), "--replica-port", str(replica_port)],
            capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, env=_child_env(None),
            stdin=subprocess.DEVNULL,
        )
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-4000:]
        assert "Traceback" not in out, out[-4000:]
        # Everything it started is stopped again.
        assert not port_open("127.0.0.1", port)
        assert not port_open("127.0.0.1", pg_port)
        assert not port_open("127.0.0.1", replica_port)
        assert os.path.exists(os.path.join(data, "pgdog.toml"))
    finally:
        shutil.rmtree(data, ignore_errors=True)
