"""A worker the supervisor restarts takes its first configuration as a reload of the pools the
daemon ran before (``settled``): require_healthcheck_on_discovery then bans, in it too, the hosts
a reload added since the daemon started."""

from __future__ import annotations

import os
from pathlib import Path

from loop.clock import ManualClock
from loop.reactor import Reactor
from pgdog_ev.config import Config, load_config
from pgdog_ev.daemon import Daemon
from pgdog_ev.proxy.directory import pool_keys
from pgdog_ev.sdnotify import SystemdNotifier
from pgdog_ev.workers.supervisor import Supervisor
from state.pool import PoolKey
from state.reasons import Reason
from tests.unit.idle_poller import IdlePoller


def _config(tmp_path: Path, replica_ports: list[int], discovery: bool = True, extra_db: bool = False,
            other_ports: tuple[int, ...] = (7, 8)) -> Config:
    text = (f'[general]\nhost = "127.0.0.1"\nport = 0\nevent_log = ""\n'
            f"require_healthcheck_on_discovery = {str(discovery).lower()}\n"
            '[[databases]]\nname = "app"\nhost = "127.0.0.1"\nport = 1\n')
    for port in replica_ports:
        text += f'[[databases]]\nname = "app"\nhost = "127.0.0.1"\nport = {port}\nrole = "replica"\n'
    users = '[[users]]\nname = "alice"\ndatabase = "app"\npassword = "pw"\n'
    if extra_db:
        for i, port in enumerate(other_ports):
            role = "primary" if i == 0 else "replica"
            text += f'[[databases]]\nname = "other"\nhost = "127.0.0.1"\nport = {port}\nrole = "{role}"\n'
        users += '[[users]]\nname = "alice"\ndatabase = "other"\npassword = "pw"\n'
    (tmp_path / "pgdog.toml").write_text(text)
    (tmp_path / "users.toml").write_text(users)
    return load_config(str(tmp_path / "pgdog.toml"), str(tmp_path / "users.toml"), entropy=os.urandom, env={})


def _bans(daemon: Daemon) -> dict[tuple[str, int], Reason]:
    out = {}
    for cluster in daemon.directory.clusters.values():
        for pool in cluster.pools:
            ban = cluster.bans.get(pool.id)
            if ban is not None:
                out[(pool.key.database, pool.key.port)] = ban.reason
    return out


def _daemon(config: Config, settled: set[PoolKey] | None) -> Daemon:
    return Daemon(config, reactor=Reactor(clock=ManualClock(100.0), poller=IdlePoller()),
                  notifier=SystemdNotifier(None, pid=0), settled_pools=settled)


def test_a_restarted_worker_bans_the_hosts_added_since_the_start(tmp_path: Path) -> None:
    settled = pool_keys(_config(tmp_path, [2]))
    assert {(k.user, k.database, k.port, k.role) for k in settled} == {
        ("alice", "app", 1, "primary"), ("alice", "app", 2, "replica")}
    config = _config(tmp_path, [2, 3], extra_db=True)
    daemon = _daemon(config, settled)
    try:
        # Port 3 came with a reload; "other" is new as a whole (no host of it is more proven).
        assert _bans(daemon) == {("app", 3): Reason.BAN_DISCOVERY}
    finally:
        daemon._finish()


def test_a_first_start_or_the_setting_off_bans_nothing(tmp_path: Path) -> None:
    settled = pool_keys(_config(tmp_path, [2]))
    for config, known in ((_config(tmp_path, [2, 3]), None),
                          (_config(tmp_path, [2, 3], discovery=False), settled)):
        daemon = _daemon(config, known)
        try:
            assert _bans(daemon) == {}
        finally:
            daemon._finish()


def test_the_supervisor_keeps_what_every_worker_has_not_discovered(tmp_path: Path) -> None:
    """Reload by reload, the pools a restarted worker is told are known: those kept since the
    start and those of a database new as a whole; not a host added to a database already there,
    nor one removed and added again."""
    sup = Supervisor(_config(tmp_path, [2]), None, None, [])
    try:
        def known() -> set[tuple[str, int]]:
            return {(k.database, k.port) for k in sup._settled}

        assert known() == {("app", 1), ("app", 2)}
        sup._take(_config(tmp_path, [2, 3], extra_db=True, other_ports=(7,)))
        assert known() == {("app", 1), ("app", 2), ("other", 7)}
        sup._take(_config(tmp_path, [2, 3], extra_db=True, other_ports=(7, 8)))
        assert known() == {("app", 1), ("app", 2), ("other", 7)}
        sup._take(_config(tmp_path, [3], extra_db=True, other_ports=(7, 8)))
        assert known() == {("app", 1), ("other", 7)}
        sup._take(_config(tmp_path, [2, 3], extra_db=True, other_ports=(7, 8)))
        assert known() == {("app", 1), ("other", 7)}
    finally:
        sup.reactor.close()


def test_reload_at_a_console_rereads_the_files_in_the_supervisor_too(tmp_path: Path) -> None:
    """RELOAD typed at a worker's console reaches the supervisor as a gather: it must update its
    own view (and its known pools) as SIGHUP does."""
    sup = Supervisor(_config(tmp_path, [2]), None, None, [])
    sup.reload_config = lambda: _config(tmp_path, [3])
    gathered: list[dict[str, object]] = []
    sup._gather = lambda request, *a, **k: gathered.append(request)  # type: ignore[method-assign]
    worker = sup.workers[0]
    try:
        sup._on_message(worker, worker.channel, {"op": "gather", "req": 1, "request": {"run": "SHOW POOLS"}})
        assert {k.port for k in sup._settled} == {1, 2}
        sup._on_message(worker, worker.channel,
                        {"op": "gather", "req": 2, "request": {"run": "RELOAD", "reload_config": True}})
        assert {k.port for k in sup._settled} == {1} and len(gathered) == 2
    finally:
        sup.reactor.close()
