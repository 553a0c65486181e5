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
from state.pool import PoolKey
from state.reasons import Reason
from tests.unit.idle_poller import IdlePoller


def _config(tmp_path: Path, replica_ports: list[int], discovery: bool = True, extra_db: bool = False) -> Config:
    text = (f'[general]\nhost = "127.0.0.1"\nport = 0\nevent_log = ""\n'
            f"require_healthcheck_on_discovery = {str(discovery).lower()}\n"
            '[[databases]]\nname = "app"\nhost = "127.0.0.1"\nport = 1\n')
    for port in replica_ports:
        text += f'[[databases]]\nname = "app"\nhost = "127.0.0.1"\nport = {port}\nrole = "replica"\n'
    users = '[[users]]\nname = "alice"\ndatabase = "app"\npassword = "pw"\n'
    if extra_db:
        text += '[[databases]]\nname = "other"\nhost = "127.0.0.1"\nport = 7\n'
        text += '[[databases]]\nname = "other"\nhost = "127.0.0.1"\nport = 8\nrole = "replica"\n'
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
