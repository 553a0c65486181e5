"""Shared fixtures: a real PostgreSQL per xdist worker (`pg`), extra servers (`pg_factory`),
and proxies under test (`proxy_factory`). Failing tests that used a proxy get its log tail and
decoded event log appended to the report."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pgdog_ev.native  # noqa: F401  (before any compiled module: see pgdog_ev/native.py)
from tests.harness.pgserver import PgServer, PgServerError
from tests.harness.proxy import ProxyProcess, decode_event_log

INTEGRATION_DIR = Path(__file__).parent / "integration"

APP_USER, APP_PASSWORD = "app", "app_pw"
MD5_USER, MD5_PASSWORD = "app_md5", "md5_pw"
APP_DB = "app"

_PROXIES = pytest.StashKey[list[ProxyProcess]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """One PostgreSQL per xdist worker: scram auth, users app/app_pw (scram) and
    app_md5/md5_pw (md5), database `app` owned by app."""
    server = PgServer(name=f"pg-{_worker_id()}", auth="scram-sha-256")
    try:
        server.start()
        server.create_user(APP_USER, APP_PASSWORD)
        server.create_user(MD5_USER, MD5_PASSWORD, password_encryption="md5")
        server.create_database(APP_DB, owner=APP_USER)
    except PgServerError as e:
        server.cleanup()
        pytest.fail(f"could not start PostgreSQL for tests:\n{e}", pytrace=False)
    yield server
    server.cleanup()


@pytest.fixture
def pg_factory() -> Iterator[Callable[..., PgServer]]:
    """Extra, function-scoped servers: pg_factory(**PgServer kwargs) returns a started PgServer."""
    servers: list[PgServer] = []

    def make(**kwargs: Any) -> PgServer:
        s = PgServer(**kwargs)
        servers.append(s)
        try:
            s.start()
        except PgServerError as e:
            pytest.fail(f"could not start PostgreSQL:\n{e}", pytrace=False)
        return s

    yield make
    for s in reversed(servers):
        s.cleanup()


@pytest.fixture
def proxy_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """proxy_factory(general=..., databases=..., users=..., admin=None, env=None, start=True, argv=None)
    returns a started ProxyProcess; all are stopped at teardown. Their directories live under
    pytest's basetemp, so logs and event logs of failed tests can still be inspected."""
    proxies: list[ProxyProcess] = []
    request.node.stash[_PROXIES] = proxies

    def make(
        general: dict[str, Any] | None = None,
        databases: list[dict[str, Any]] | None = None,
        users: list[dict[str, Any]] | None = None,
        admin: dict[str, Any] | None = None,
        *,
        env: dict[str, str] | None = None,
        argv: list[str] | None = None,
        start: bool = True,
        timeout: float = 20,
    ) -> ProxyProcess:
        p = ProxyProcess(
            general or {},
            databases or [],
            users or [],
            admin=admin,
            base_dir=str(tmp_path_factory.mktemp("proxy")),
            env=env,
            argv=argv,
        )
        proxies.append(p)
        if start:
            p.start(timeout=timeout)
        return p

    yield make
    for p in reversed(proxies):
        p.cleanup()


@pytest.fixture(scope="module")
def module_proxy_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Like proxy_factory, but module-scoped: for a proxy shared by the tests of one module.
    Its log tail and event log are appended to the report of any failing test of that module."""
    proxies: list[ProxyProcess] = []
    request.node.stash[_PROXIES] = proxies

    def make(
        general: dict[str, Any] | None = None,
        databases: list[dict[str, Any]] | None = None,
        users: list[dict[str, Any]] | None = None,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 20,
    ) -> ProxyProcess:
        p = ProxyProcess(
            general or {},
            databases or [],
            users or [],
            base_dir=str(tmp_path_factory.mktemp("mproxy")),
            env=env,
        )
        proxies.append(p)
        p.start(timeout=timeout)
        return p

    yield make
    for p in reversed(proxies):
        p.cleanup()


@pytest.fixture(scope="session")
def poll() -> Callable[..., Any]:
    """poll(fn, timeout=10, interval=0.05, what=...): call fn until it returns a truthy value
    (returned); AssertionError naming `what` and the last value/exception after the deadline."""

    def _poll(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                value = fn()
            except Exception as e:  # reported if the deadline passes
                value, last = None, e
            else:
                last = value
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or 'condition'} not met within {timeout}s (last: {last!r})")
            time.sleep(interval)

    return _poll


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report: pytest.TestReport = yield
    proxies = item.stash.get(_PROXIES, None)
    module = item.getparent(pytest.Module)
    shared = module.stash.get(_PROXIES, None) if module is not None else None
    if shared:
        proxies = [*(proxies or []), *shared]
    if report.failed and proxies and report.when in ("call", "setup", "teardown"):
        for i, p in enumerate(proxies):
            label = f"proxy[{i}] {p.host}:{p.port} pid={p.pid} exit={p.returncode}"
            report.sections.append((f"{label} log tail", p.log_tail(80)))
            for path in p.event_log_paths() or [p.event_log_path]:
                events = decode_event_log(path, tail=200)
                body = f"{path}\n{_last_lines(events, 200)}" if events else f"{path} (not decoded)"
                report.sections.append((f"{label} event log", body))
    return report


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


# The chaos tests (tests/chaos) record what each case injected and observed as a user property.
CHAOS_SUMMARY_KEY = "chaos"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = []
    for key in ("passed", "failed"):
        for report in terminalreporter.stats.get(key, []):
            for name, value in getattr(report, "user_properties", []):
                if name == CHAOS_SUMMARY_KEY and report.when == "call":
                    lines.append((key, json.loads(value)))
    if not lines:
        return
    terminalreporter.section("chaos cases")
    for outcome, s in sorted(lines, key=lambda x: x[1]["case"]):
        terminalreporter.write_line(f"{s['case']} [{outcome}]: injected {s['injected']}")
        terminalreporter.write_line(f"    observed {s['observed']}")
