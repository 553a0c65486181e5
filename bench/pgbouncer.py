"""PgBouncer, the baseline pgdog-ev is measured against, as a subprocess.

PgBouncer refuses to run as root, so as root it runs as the same unprivileged OS user as the
benchmark's PostgreSQL. Not through `runuser`: its PAM session lowers the soft open-files limit to
1024, and PgBouncer could then hold only about a thousand idle clients of the 10,000 the memory
test opens; the subprocess switches user and group itself instead and keeps the limit this
process raised. The pid used for CPU time, RSS and stopping it is read from PgBouncer's pidfile,
so it is PgBouncer's own even if a wrapper is put in front again. Every started instance is
registered so an interpreter exit stops it too, whichever way the benchmark ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from tests.harness.pgserver import server_os_user
from tests.harness.ports import free_port, wait_for_port

# Where Debian's package puts it; PATH is the fallback for other systems.
DEBIAN_BINARY = "/usr/sbin/pgbouncer"

_live: list[PgBouncer] = []


def _stop_all() -> None:
    for bouncer in list(_live):
        with contextlib.suppress(Exception):
            bouncer.stop()


atexit.register(_stop_all)


def find_pgbouncer() -> str | None:
    """The pgbouncer binary, or None when it is not installed (`make bench` installs it)."""
    if os.access(DEBIAN_BINARY, os.X_OK):
        return DEBIAN_BINARY
    return shutil.which("pgbouncer")


def pgbouncer_version(binary: str) -> str:
    """The first line of `pgbouncer --version` ("PgBouncer 1.18.0")."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def version_tuple(version: str) -> tuple[int, ...]:
    """(1, 18, 0) from "PgBouncer 1.18.0"; () when there is no number in it."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


class PgBouncer:
    """One PgBouncer in transaction mode in front of one PostgreSQL database.

    `users` maps user name to plaintext password: the userlist holds plaintext so PgBouncer can
    both check clients (scram-sha-256 or md5) and log in to PostgreSQL with the same password.
    """

    def __init__(
        self,
        binary: str,
        *,
        server_port: int,
        dbname: str,
        users: dict[str, str],
        pool_size: int,
        auth_type: str = "scram-sha-256",
        max_client_conn: int = 12000,
    ) -> None:
        self.binary = binary
        self.version = pgbouncer_version(binary)
        self.server_port = server_port
        self.dbname = dbname
        self.users = dict(users)
        self.pool_size = pool_size
        self.auth_type = auth_type
        self.max_client_conn = max_client_conn
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pgdog-ev-bench-pgbouncer-")
        self.ini_path = os.path.join(self.dir, "pgbouncer.ini")
        self.pidfile = os.path.join(self.dir, "pgbouncer.pid")
        self.out_path = os.path.join(self.dir, "pgbouncer.out")
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None

    def _ini(self) -> str:
        lines = [
            "[databases]",
            f"{self.dbname} = host=127.0.0.1 port={self.server_port} dbname={self.dbname}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            f"auth_type = {self.auth_type}",
            f"auth_file = {os.path.join(self.dir, 'userlist.txt')}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            f"max_client_conn = {self.max_client_conn}",
            "logfile = /dev/null",
            "log_connections = 0",
            "log_disconnections = 0",
            f"pidfile = {self.pidfile}",
            "ignore_startup_parameters = extra_float_digits",
        ]
        # PgBouncer 1.21 added prepared statements in transaction mode, off unless this is set.
        # 1.18 (Debian bookworm) rejects the unknown key, so it is only written where it exists;
        # whether prepared statements then work is still found out by trying (see bench/run.py).
        if version_tuple(self.version) >= (1, 21):
            lines.append("max_prepared_statements = 200")
        return "\n".join(lines) + "\n"

    def _write(self, path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        self._chown(path)

    def _chown(self, path: str) -> None:
        user = server_os_user()
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self, timeout: float = 20) -> PgBouncer:
        """Write the files, start PgBouncer and wait until it accepts connections and has a pid."""
        os.chmod(self.dir, 0o755)
        self._chown(self.dir)  # PgBouncer writes its pidfile here
        userlist = "".join(f'"{name}" "{password}"\n' for name, password in self.users.items())
        self._write(os.path.join(self.dir, "userlist.txt"), userlist)
        for attempt in range(2):
            self._write(self.ini_path, self._ini())
            as_user: dict[str, Any] = {}
            user = server_os_user()
            if user is not None:
                pw = pwd.getpwnam(user)
                as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            # Output to a file, not a pipe nobody reads while it runs: a full pipe would block it.
            with open(self.out_path, "ab") as out:
                self.proc = subprocess.Popen(
                    [self.binary, "-q", self.ini_path], cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True, **as_user,
                )
            _live.append(self)
            if wait_for_port("127.0.0.1", self.port, timeout=timeout, proc=self.proc):
                self.pid = self._read_pid(timeout)
                return self
            out = self._finish_proc()
            if attempt == 0 and "already in use" in out:
                self.port = free_port()
                continue
            raise RuntimeError(f"PgBouncer did not start on port {self.port}: {out.strip()[-2000:]}")
        raise AssertionError("unreachable")

    def _read_pid(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError), open(self.pidfile) as f:
                return int(f.read().strip())
            time.sleep(0.05)
        raise RuntimeError(f"PgBouncer wrote no pidfile at {self.pidfile}")

    def _finish_proc(self) -> str:
        """Wait for the started process to exit; return what it printed."""
        if self.proc is None:
            return ""
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        try:
            with open(self.out_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the pid in the pidfile, then SIGKILL if it lingers."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.05)
            if _alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        if self.proc is not None:
            self._finish_proc()
            self.proc = None
        if self in _live:
            _live.remove(self)

    def cleanup(self) -> None:
        """Stop it and remove its directory; safe to call twice."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (not yet reaped by whoever is its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
