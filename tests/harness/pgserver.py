"""A real PostgreSQL server for tests and the demo cluster.

`PgServer` runs initdb / pg_ctl / postgres from the newest server installation it can find
(override with PGDOG_EV_PG_BINDIR). PostgreSQL refuses to run as root, so when this process is
root every server-side command runs as an unprivileged OS user (`postgres` if it exists, else a
`pgdogev` system user created on demand) through `runuser -u USER --`, and the server's
directories are chowned to that user. When not root, everything runs directly.

Layout under `base_dir` (a fresh 0o755 temp dir unless given):

    base_dir/NAME/            server dir, owned by the server user, 0o755
    base_dir/NAME/data/       the data directory (PGDATA)
    base_dir/NAME/sock/       unix_socket_directories
    base_dir/NAME/postgres.log
    base_dir/NAME/data/server.crt, server.key   (only with `ssl=(cert, key)`: copies, 0600)
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence

from tests.harness.ports import free_port

ENV_BINDIR = "PGDOG_EV_PG_BINDIR"
ENV_OS_USER = "PGDOG_EV_PG_USER"
FALLBACK_OS_USER = "pgdogev"
HARNESS_CONF = "pgdog_ev_harness.conf"

# Timeouts (seconds) for subprocesses; nothing here may hang.
T_SHORT = 30
T_LONG = 120


# --------------------------------------------------------------------------- discovery


def _has_server(bindir: str) -> bool:
    return all(os.access(os.path.join(bindir, b), os.X_OK) for b in ("postgres", "initdb", "pg_ctl"))


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([0-9.]+)/bin", path)
    if not m:
        return (0,)
    return tuple(int(p) for p in m.group(1).split(".") if p.isdigit())


_bindir_cache: str | None = None


def find_bindir() -> str:
    """Directory holding postgres, initdb, pg_ctl, psql, pg_basebackup.

    Order: $PGDOG_EV_PG_BINDIR, the newest /usr/lib/postgresql/*/bin (and similar distro dirs)
    holding a server, then the directory of `initdb` on PATH, then `pg_config --bindir`.
    """
    global _bindir_cache
    env = os.environ.get(ENV_BINDIR)
    if env:
        if not _has_server(env):
            raise RuntimeError(f"{ENV_BINDIR}={env} does not contain postgres, initdb and pg_ctl")
        return env
    if _bindir_cache:
        return _bindir_cache
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin"),
        key=_version_key,
        reverse=True,
    )
    for c in candidates:
        if _has_server(c):
            _bindir_cache = c
            return c
    initdb = shutil.which("initdb")
    if initdb:
        d = os.path.dirname(os.path.realpath(initdb))
        if _has_server(d):
            _bindir_cache = d
            return d
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=T_SHORT
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and _has_server(out):
            _bindir_cache = out
            return out
    raise RuntimeError(
        "PostgreSQL server binaries not found: install the postgresql server package "
        f"or set {ENV_BINDIR} to a directory containing postgres, initdb and pg_ctl"
    )


# --------------------------------------------------------------------------- OS user

_user_lock = threading.Lock()
_os_user_cache: list[str | None] = []


def server_os_user() -> str | None:
    """The OS user that runs server commands, or None to run them as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    with _user_lock:
        if _os_user_cache:
            return _os_user_cache[0]
        name = os.environ.get(ENV_OS_USER)
        if name:
            pwd.getpwnam(name)  # KeyError if it doesn't exist: a clear enough failure
        else:
            name = _ensure_system_user()
        _os_user_cache.append(name)
        return name


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _ensure_system_user() -> str:
    if _user_exists("postgres"):
        return "postgres"
    if not _user_exists(FALLBACK_OS_USER):
        res = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
            capture_output=True,
            text=True,
            timeout=T_SHORT,
        )
        # Another xdist worker may have created it at the same time.
        if res.returncode != 0 and not _user_exists(FALLBACK_OS_USER):
            raise RuntimeError(f"useradd {FALLBACK_OS_USER} failed: {res.stderr.strip()}")
    return FALLBACK_OS_USER


def _as_server_user(argv: Sequence[str]) -> list[str]:
    user = server_os_user()
    if user is None:
        return list(argv)
    return ["runuser", "-u", user, "--", *argv]


def _chown_to_server_user(path: str) -> None:
    user = server_os_user()
    if user is None:
        return
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _check_traversable(path: str) -> None:
    """When running as root, the server user must be able to reach `path`."""
    user = server_os_user()
    if user is None:
        return
    pw = pwd.getpwnam(user)
    p = os.path.abspath(path)
    while True:
        st = os.stat(p)
        group_ok = st.st_gid == pw.pw_gid and st.st_mode & 0o010
        if st.st_uid != pw.pw_uid and not st.st_mode & 0o001 and not group_ok:
            raise RuntimeError(
                f"{p} is not traversable by OS user {user!r} (mode {oct(st.st_mode & 0o777)}); "
                "put the PostgreSQL base dir somewhere world-traversable"
            )
        parent = os.path.dirname(p)
        if parent == p:
            return
        p = parent


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("PG") and not k.startswith("PGDOG"))}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


# --------------------------------------------------------------------------- quoting


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def dsn_quote(v: str) -> str:
    if v and not re.search(r"[\s'\\]", v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _conf_value(v: str) -> str:
    # PostgreSQL accepts every setting quoted.
    return "'" + v.replace("\\", "\\\\").replace("'", "''") + "'"


# --------------------------------------------------------------------------- registry

_live: set[PgServer] = set()
_live_lock = threading.Lock()


def _cleanup_all() -> None:
    with _live_lock:
        servers = list(_live)
    for s in servers:
        with contextlib.suppress(Exception):
            s.cleanup()


atexit.register(_cleanup_all)


class PgServerError(RuntimeError):
    pass


# --------------------------------------------------------------------------- server


class PgServer:
    host = "127.0.0.1"

    def __init__(
        self,
        base_dir: str | None = None,
        *,
        auth: str = "scram-sha-256",
        port: int | None = None,
        settings: dict[str, str] | None = None,
        name: str = "pg",
        persistent: bool = False,
        ssl: tuple[str, str] | None = None,
    ) -> None:
        """`persistent=True` (the demo): cleanup() only stops the server and keeps its files.
        `ssl=(cert_file, key_file)`: ssl = on with copies of these PEM files in the data dir,
        re-copied at every start and reload (so a test can swap certificates)."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"bad server name {name!r}")
        self.bindir = find_bindir()
        self.auth = auth
        self.settings = dict(settings or {})
        self.ssl = ssl
        self.name = name
        self.persistent = persistent
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self._own_base = base_dir is None
        if base_dir is None:
            base_dir = tempfile.mkdtemp(prefix="pgdog-ev-pg-")
            os.chmod(base_dir, 0o755)
        else:
            os.makedirs(base_dir, exist_ok=True)
            st = os.stat(base_dir)
            if server_os_user() is not None and (st.st_mode & 0o005) != 0o005:
                os.chmod(base_dir, st.st_mode | 0o005)
        self.base_dir = os.path.abspath(base_dir)
        self.server_dir = os.path.join(self.base_dir, name)
        self.datadir = os.path.join(self.server_dir, "data")
        self.socket_dir = os.path.join(self.server_dir, "sock")
        self.logfile = os.path.join(self.server_dir, "postgres.log")
        self.primary: PgServer | None = None
        self.replicas: list[PgServer] = []
        self._hba_extra: list[str] = []
        self._running = False
        self._cleaned = False
        with _live_lock:
            _live.add(self)

    # ------------------------------------------------------------------ helpers

    def __repr__(self) -> str:
        return f"<PgServer {self.name} port={self.port} datadir={self.datadir}>"

    def __enter__(self) -> PgServer:
        if not self._running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def _bin(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def _run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = T_SHORT,
        as_server_user: bool = True,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = _as_server_user(argv) if as_server_user else list(argv)
        cwd = self.server_dir if os.path.isdir(self.server_dir) else self.base_dir
        try:
            res = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=cwd,
                env=_clean_env(),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            raise PgServerError(
                f"{self.name}: command timed out after {timeout}s: {' '.join(cmd)}\n"
                f"--- server log tail ---\n{self.log_tail()}"
            ) from e
        if check and res.returncode != 0:
            raise PgServerError(
                f"{self.name}: command failed (exit {res.returncode}): {' '.join(cmd)}\n"
                f"stdout: {res.stdout.strip()}\nstderr: {res.stderr.strip()}"
            )
        return res

    def _make_server_dir(self) -> None:
        _check_traversable(self.base_dir)
        os.makedirs(self.server_dir, exist_ok=True)
        os.chmod(self.server_dir, 0o755)
        _chown_to_server_user(self.server_dir)
        os.makedirs(self.socket_dir, exist_ok=True)
        os.chmod(self.socket_dir, 0o755)
        _chown_to_server_user(self.socket_dir)
        if len(os.path.join(self.socket_dir, ".s.PGSQL.65535")) > 100:
            raise PgServerError(f"socket dir path too long for a unix socket: {self.socket_dir}")

    @property
    def initialized(self) -> bool:
        return os.path.exists(os.path.join(self.datadir, "PG_VERSION"))

    @property
    def running(self) -> bool:
        return self._running

    # ------------------------------------------------------------------ config files

    def _write_file(self, path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        _chown_to_server_user(path)

    def _write_config(self) -> None:
        conf = os.path.join(self.datadir, "postgresql.conf")
        with open(conf) as f:
            text = f.read()
        include = f"include_if_exists '{HARNESS_CONF}'"
        if include not in text:
            with open(conf, "a") as f:
                f.write(f"\n# pgdog-ev test harness settings\n{include}\n")
        values: dict[str, str] = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self.socket_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "hot_standby": "on",
            "logging_collector": "off",
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "log_min_messages": "warning",
            "lc_messages": "C",
        }
        if self.ssl is not None:
            values.update(self._install_ssl_files(*self.ssl))
        values.update(self.settings)
        lines = [f"{k} = {_conf_value(str(v))}" for k, v in values.items()]
        self._write_file(os.path.join(self.datadir, HARNESS_CONF), "\n".join(lines) + "\n")
        self._write_hba()

    def _install_ssl_files(self, cert: str, key: str) -> dict[str, str]:
        """Copy the certificate and key where the server user can read them (PostgreSQL refuses a
        key readable by others); returns the settings that turn TLS on."""
        names = {"ssl_cert_file": "server.crt", "ssl_key_file": "server.key"}
        for source, name in ((cert, names["ssl_cert_file"]), (key, names["ssl_key_file"])):
            with open(source) as f:
                self._write_file(os.path.join(self.datadir, name), f.read())
        return {"ssl": "on", **names}

    def _write_hba(self) -> None:
        lines = [
            "# pgdog-ev test harness",
            "local all all trust",
            "local replication all trust",
            "host replication all 127.0.0.1/32 trust",
            "host all postgres 127.0.0.1/32 trust",
            *self._hba_extra,
            f"host all all 127.0.0.1/32 {self.auth}",
        ]
        self._write_file(os.path.join(self.datadir, "pg_hba.conf"), "\n".join(lines) + "\n")

    # ------------------------------------------------------------------ lifecycle

    def _initdb(self) -> None:
        self._run(
            [
                self._bin("initdb"),
                "-D",
                self.datadir,
                "-A",
                "trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "-N",
            ],
            timeout=T_LONG,
        )

    def start(self) -> PgServer:
        """initdb (unless the data dir already exists), write config, pg_ctl start. Returns self."""
        if self._running:
            return self
        self._cleaned = False
        with _live_lock:
            _live.add(self)
        self._make_server_dir()
        if not self.initialized:
            self._initdb()
        for attempt in range(2):
            self._write_config()
            log_size = os.path.getsize(self.logfile) if os.path.exists(self.logfile) else 0
            res = self._run(
                [self._bin("pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-w", "-t", "60", "start"],
                timeout=T_LONG,
                check=False,
            )
            if res.returncode == 0:
                self._running = True
                return self
            new_log = self._read_log(log_size)
            if attempt == 0 and self._auto_port and "already in use" in new_log:
                self.port = free_port()
                continue
            raise PgServerError(
                f"{self.name}: PostgreSQL failed to start (pg_ctl exit {res.returncode}) "
                f"on port {self.port}, datadir {self.datadir}\n"
                f"pg_ctl stderr: {res.stderr.strip()}\n--- server log tail ---\n{self.log_tail()}"
            )
        raise AssertionError("unreachable")

    def is_running(self) -> bool:
        """Ask pg_ctl whether a postmaster runs on the data dir (also one left from a previous run)."""
        if not self.initialized:
            return False
        res = self._run([self._bin("pg_ctl"), "-D", self.datadir, "status"], check=False)
        return res.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if not self.initialized:
            self._running = False
            return
        if self._running or self.is_running():
            self._run(
                [self._bin("pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "-t", "60", "stop"],
                timeout=T_LONG,
                check=False,
            )
            if self.is_running():
                if mode != "immediate":
                    self._run(
                        [self._bin("pg_ctl"), "-D", self.datadir, "-m", "immediate", "-w", "stop"],
                        timeout=T_LONG,
                        check=False,
                    )
                if self.is_running():
                    raise PgServerError(f"{self.name}: could not stop server\n{self.log_tail()}")
        self._running = False

    def kill(self) -> None:
        """Crash-stop: pg_ctl stop -m immediate."""
        self.stop(mode="immediate")

    def restart(self) -> PgServer:
        self.stop()
        return self.start()

    def reload(self) -> None:
        """Rewrite harness config / pg_hba and SIGHUP the server."""
        self._write_config()
        if self._running:
            self._run([self._bin("pg_ctl"), "-D", self.datadir, "reload"])

    def promote(self, timeout: float = 60) -> None:
        self._run([self._bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "60", "promote"], timeout=T_LONG)
        deadline = time.monotonic() + timeout
        while self.psql("SELECT pg_is_in_recovery()") != "f":
            if time.monotonic() > deadline:
                raise PgServerError(f"{self.name}: still in recovery after promote\n{self.log_tail()}")
            time.sleep(0.05)
        self.primary = None

    def make_replica(
        self, name: str = "replica", *, settings: dict[str, str] | None = None, port: int | None = None,
        persistent: bool = False,
    ) -> PgServer:
        """pg_basebackup -R -X stream from this server into a new server dir; start it as hot standby.
        `port` and `persistent` as for PgServer (the demo keeps its replica between runs)."""
        if not self._running:
            raise PgServerError(f"{self.name}: start the primary before make_replica()")
        replica = PgServer(
            self.base_dir,
            auth=self.auth,
            settings={**self.settings, **(settings or {})},
            name=name,
            ssl=self.ssl,
            port=port,
            persistent=persistent,
        )
        if os.path.exists(replica.server_dir):
            replica._cleaned = True
            with _live_lock:
                _live.discard(replica)
            raise ValueError(f"{replica.server_dir} already exists; pick another replica name")
        replica.primary = self
        replica._hba_extra = list(self._hba_extra)
        self.replicas.append(replica)
        try:
            replica._make_server_dir()
            self._run(
                [
                    self._bin("pg_basebackup"),
                    "-D",
                    replica.datadir,
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ],
                timeout=T_LONG,
            )
            replica.start()
        except BaseException:
            replica.cleanup()
            raise
        return replica

    def wait_for_replication(self, timeout: float = 30) -> None:
        """On a replica: wait until it has replayed the primary's current WAL position."""
        if self.primary is None:
            raise PgServerError(f"{self.name} is not a replica made by make_replica()")
        target = self.primary.psql("SELECT pg_current_wal_insert_lsn()")
        deadline = time.monotonic() + timeout
        q = f"SELECT coalesce(pg_last_wal_replay_lsn() >= {quote_literal(target)}::pg_lsn, false)"
        while True:
            with contextlib.suppress(PgServerError):
                if self.psql(q) == "t":
                    return
            if time.monotonic() > deadline:
                raise PgServerError(
                    f"{self.name}: replication did not reach {target} within {timeout}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Stop (if running) and remove the server's files (unless persistent). Safe to call twice."""
        if self._cleaned:
            return
        for r in list(self.replicas):
            with contextlib.suppress(Exception):
                r.cleanup()
        try:
            self.stop()
        except Exception:
            with contextlib.suppress(Exception):
                self.stop(mode="immediate")
        finally:
            self._cleaned = True
            with _live_lock:
                _live.discard(self)
        if self.persistent:
            return
        shutil.rmtree(self.server_dir, ignore_errors=True)
        if self._own_base:
            with contextlib.suppress(OSError):
                os.rmdir(self.base_dir)  # only if empty: replicas made elsewhere may live there

    # ------------------------------------------------------------------ logs

    def _read_log(self, offset: int = 0) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n: int = 50) -> str:
        lines = self._read_log().splitlines()
        return "\n".join(lines[-n:]) if lines else f"(no log at {self.logfile})"

    # ------------------------------------------------------------------ connections / SQL

    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        """libpq keyword/value connection string over TCP."""
        parts = [
            f"host={self.host}",
            f"port={self.port}",
            f"user={dsn_quote(user)}",
            f"dbname={dsn_quote(dbname)}",
        ]
        if password is not None:
            parts.append(f"password={dsn_quote(password)}")
        return " ".join(parts)

    def url(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        from urllib.parse import quote

        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def psql(self, sql: str, db: str = "postgres", user: str = "postgres", timeout: float = T_SHORT) -> str:
        """Run SQL (psql meta-commands allowed) over the unix socket; return stdout without the final newline."""
        res = self._run(
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.socket_dir,
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                db,
                "-f",
                "-",
            ],
            input=sql,
            timeout=timeout,
            as_server_user=False,
            check=False,
        )
        if res.returncode != 0:
            raise PgServerError(f"{self.name}: psql failed (exit {res.returncode}): {res.stderr.strip()}")
        return res.stdout.rstrip("\n")

    def create_user(
        self,
        name: str,
        password: str,
        *,
        superuser: bool = False,
        password_encryption: str = "scram-sha-256",
    ) -> None:
        """CREATE ROLE ... LOGIN PASSWORD with the given password_encryption ("md5" or "scram-sha-256").

        An md5-encrypted password cannot log in through a scram-sha-256 pg_hba line, so for md5
        users on a non-md5 server a per-user `md5` pg_hba line is added (and the server reloaded).
        """
        attrs = "LOGIN SUPERUSER" if superuser else "LOGIN"
        self.psql(
            f"SET password_encryption = {quote_literal(password_encryption)};\n"
            f"CREATE ROLE {quote_ident(name)} {attrs} PASSWORD {quote_literal(password)};\n"
        )
        if password_encryption == "md5" and self.auth not in ("md5", "trust", "password"):
            self._hba_extra.append(f"host all {quote_ident(name)} 127.0.0.1/32 md5")
            self.reload()

    def create_database(self, name: str, owner: str | None = None) -> None:
        owner_sql = f" OWNER {quote_ident(owner)}" if owner else ""
        self.psql(f"CREATE DATABASE {quote_ident(name)}{owner_sql};\n")
