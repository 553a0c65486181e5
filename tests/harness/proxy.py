"""The proxy under test as a subprocess: `python -m pgdog_ev run -c pgdog.toml -u users.toml`.

`ProxyProcess` writes both TOML files (PgDog's format) into its own directory, picks a free port,
points `[general] event_log` at a file in that directory, and starts/stops/reloads the proxy.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal as _signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from tests.harness.pgserver import dsn_quote
from tests.harness.ports import free_port, wait_for_port

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# --------------------------------------------------------------------------- TOML writer

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(k: str) -> str:
    if not isinstance(k, str):
        raise TypeError(f"TOML keys must be strings, got {k!r}")
    return k if _BARE_KEY.fullmatch(k) else _toml_str(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} as TOML")


def dump_toml(doc: Mapping[str, Any]) -> str:
    """Serialize a document of the shape PgDog's configs use.

    Top-level values may be scalars/lists (written first), dicts (`[table]`) or lists of dicts
    (`[[array]]`). Table values are strings, ints, floats, bools, lists of those, or inline dicts.
    None values are skipped.
    """
    head: list[str] = []
    body: list[str] = []

    def table_lines(d: Mapping[str, Any]) -> list[str]:
        return [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d.items() if v is not None]

    for key, val in doc.items():
        if val is None:
            continue
        if isinstance(val, Mapping):
            body.append(f"[{_toml_key(key)}]")
            body.extend(table_lines(val))
            body.append("")
        elif isinstance(val, list | tuple) and val and all(isinstance(x, Mapping) for x in val):
            for item in val:
                body.append(f"[[{_toml_key(key)}]]")
                body.extend(table_lines(item))
                body.append("")
        elif isinstance(val, list | tuple) and not val:
            continue  # an empty array of tables: nothing to write
        else:
            head.append(f"{_toml_key(key)} = {_toml_value(val)}")
    if head and body:
        head.append("")
    return "\n".join(head + body).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- event log decoding


def decode_event_log(path: str, tail: int = 200, timeout: float = 30) -> str | None:
    """Decode the last `tail` events with `python -m pgdog_ev events PATH --tail N`; None if that fails."""
    if not os.path.exists(path):
        return None
    try:
        res = subprocess.run(
            [sys.executable, "-m", "pgdog_ev", "events", path, "--tail", str(tail)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            env=_child_env(None),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + pp if pp else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------- the process


class ProxyError(RuntimeError):
    pass


class ProxyProcess:
    """One proxy subprocess with its own directory, config files, log and event log.

    `argv` overrides the command (for tests of the harness); "{config}" and "{users}" in it are
    replaced by the config file paths.
    """

    def __init__(
        self,
        general: Mapping[str, Any],
        databases: Sequence[Mapping[str, Any]],
        users: Sequence[Mapping[str, Any]],
        admin: Mapping[str, Any] | None = None,
        base_dir: str | None = None,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self._own_dir = base_dir is None
        if base_dir is None:
            base_dir = tempfile.mkdtemp(prefix="pgdog-ev-proxy-")
        else:
            os.makedirs(base_dir, exist_ok=True)
        self.dir = os.path.abspath(base_dir)
        self.config_path = os.path.join(self.dir, "pgdog.toml")
        self.users_path = os.path.join(self.dir, "users.toml")
        self.log_path = os.path.join(self.dir, "proxy.log")
        self.env = dict(env or {})
        self._argv = list(argv) if argv is not None else None
        self.proc: subprocess.Popen | None = None
        self._log_file: Any = None
        self._cleaned = False
        self._auto_port = "port" not in general
        self.general: dict[str, Any] = {}
        self.databases: list[dict[str, Any]] = []
        self.users: list[dict[str, Any]] = []
        self.admin: dict[str, Any] | None = None
        self._set(general, databases, users, admin)
        self.write_config()

    # ------------------------------------------------------------------ config

    def _set(
        self,
        general: Mapping[str, Any] | None,
        databases: Sequence[Mapping[str, Any]] | None,
        users: Sequence[Mapping[str, Any]] | None,
        admin: Mapping[str, Any] | None,
    ) -> None:
        if general is not None:
            old = self.general
            g = dict(general)
            g.setdefault("host", old.get("host", "127.0.0.1"))
            if "port" not in g:
                g["port"] = old.get("port") or free_port()
            g.setdefault("event_log", old.get("event_log", os.path.join(self.dir, "pgdog-ev.evlog")))
            self.general = g
        if databases is not None:
            self.databases = [dict(d) for d in databases]
        if users is not None:
            self.users = [dict(u) for u in users]
        if admin is not None:
            self.admin = dict(admin)

    @property
    def host(self) -> str:
        return str(self.general["host"])

    @property
    def port(self) -> int:
        return int(self.general["port"])

    @property
    def event_log_path(self) -> str:
        p = str(self.general["event_log"])
        return p if os.path.isabs(p) else os.path.join(self.dir, p)

    def event_log_paths(self) -> list[str]:
        """The event log files this proxy wrote: its `event_log`, or with `workers = N` each
        worker's own file (`pgdog-ev.w<i>.evlog`, see pgdog_ev/workers/share.py)."""
        path = self.event_log_path
        if os.path.exists(path):
            return [path]
        head, tail = os.path.split(path)
        stem, ext = os.path.splitext(tail)
        pattern = re.compile(re.escape(stem) + r"\.w[0-9]+" + re.escape(ext))
        try:
            names = sorted(n for n in os.listdir(head or ".") if pattern.fullmatch(n))
        except OSError:
            return []
        return [os.path.join(head, n) for n in names]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def config_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"general": self.general, "databases": self.databases}
        if self.admin is not None:
            doc["admin"] = self.admin
        return doc

    def write_config(self) -> None:
        """Write both files atomically (rename), so a reload never reads half a file."""
        for path, doc in ((self.config_path, self.config_doc()), (self.users_path, {"users": self.users})):
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(dump_toml(doc))
            os.replace(tmp, path)

    def update(
        self,
        general: Mapping[str, Any] | None = None,
        databases: Sequence[Mapping[str, Any]] | None = None,
        users: Sequence[Mapping[str, Any]] | None = None,
        admin: Mapping[str, Any] | None = None,
        *,
        reload: bool = True,
    ) -> None:
        """Replace the given sections (host/port/event_log kept unless given), rewrite, SIGHUP."""
        self._set(general, databases, users, admin)
        self.write_config()
        if reload:
            self.reload()

    def reload(self) -> None:
        """Rewrite the files from the current dicts and send SIGHUP."""
        self.write_config()
        self.signal(_signal.SIGHUP)

    # ------------------------------------------------------------------ lifecycle

    def argv(self) -> list[str]:
        if self._argv is not None:
            return [
                a.replace("{config}", self.config_path).replace("{users}", self.users_path)
                for a in self._argv
            ]
        return [sys.executable, "-m", "pgdog_ev", "run", "-c", self.config_path, "-u", self.users_path]

    def _launch(self) -> None:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.dir,
            env=_child_env(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, timeout: float = 20) -> ProxyProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise ProxyError("proxy already running")
        self._cleaned = False
        for attempt in range(2):
            log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            self._launch()
            assert self.proc is not None
            if wait_for_port(self.host, self.port, timeout=timeout, proc=self.proc):
                return self
            code = self.proc.poll()
            new_log = self.log_text()[log_offset:]
            if code is None:
                self._kill_now()
                raise ProxyError(
                    f"proxy did not accept connections on {self.host}:{self.port} within {timeout}s\n"
                    f"command: {' '.join(self.argv())}\n--- proxy log ---\n{self._tail(new_log)}"
                )
            self._close_log()
            if (
                attempt == 0
                and self._auto_port
                and re.search(r"address already in use|errno 98", new_log, re.I)
            ):
                self.general["port"] = free_port()
                self.write_config()
                continue
            raise ProxyError(
                f"proxy exited early with code {code}\ncommand: {' '.join(self.argv())}\n"
                f"--- proxy log ---\n{self._tail(new_log)}"
            )
        raise AssertionError("unreachable")

    def signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise ProxyError(f"proxy not running (exit code {self.returncode})")
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        """Wait for the process to exit on its own; returns its exit code (TimeoutExpired if not)."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_now()
        self._close_log()
        return self.proc.returncode

    def _kill_now(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, _signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def cleanup(self, remove_files: bool = True) -> None:
        """Stop the process; remove its directory if the harness created it. Safe to call twice."""
        if self._cleaned:
            return
        self.stop()
        self._cleaned = True
        if remove_files and self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ProxyProcess:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ------------------------------------------------------------------ logs / connecting

    def log_text(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @staticmethod
    def _tail(text: str, n: int = 80) -> str:
        lines = text.splitlines()
        return "\n".join(lines[-n:]) if lines else "(empty log)"

    def log_tail(self, n: int = 80) -> str:
        return self._tail(self.log_text(), n)

    def dsn(self, user: str, password: str | None, dbname: str) -> str:
        parts = [
            f"host={self.host}",
            f"port={self.port}",
            f"user={dsn_quote(user)}",
            f"dbname={dsn_quote(dbname)}",
        ]
        if password is not None:
            parts.append(f"password={dsn_quote(password)}")
        return " ".join(parts)

    def url(self, user: str, password: str | None, dbname: str) -> str:
        from urllib.parse import quote

        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def __repr__(self) -> str:
        return f"<ProxyProcess {self.host}:{self.port} pid={self.pid} dir={self.dir}>"
