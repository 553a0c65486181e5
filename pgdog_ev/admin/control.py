"""Commands that change the running proxy: SET, RELOAD, RECONNECT, PAUSE, RESUME,
MAINTENANCE and SHUTDOWN.

Each returns its CommandComplete bytes, or raises AdminError with the
SQLSTATE to answer. PAUSE is the one that can wait (for servers to close) and is
handled by the console, which owns the waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdog_ev.admin.parser import AdminSyntaxError
from pgdog_ev.admin.resultset import done
from pgdog_ev.config import ConfigError
from pgdog_ev.config.general_set import apply_override

if TYPE_CHECKING:
    from pgdog_ev.admin.host import ConsoleHost
    from state.pool import Pool

INVALID_PARAMETER_VALUE = "22023"
CONFIG_FILE_ERROR = "F0000"
UNDEFINED_DATABASE = "3D000"


class AdminError(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def target_pools(host: ConsoleHost, verb: str, args: tuple[str, ...]) -> list[Pool]:
    """Pools named by ``[db]`` or ``[user db]`` (all of them with no argument)."""
    pools = sorted(host.directory.pools.values(), key=lambda p: p.id)
    if not args:
        return pools
    if len(args) == 1:
        chosen = [p for p in pools if p.key.database == args[0]]
        what = f'database "{args[0]}"'
    elif len(args) == 2:
        chosen = [p for p in pools if (p.key.user, p.key.database) == args]
        what = f'user "{args[0]}" on database "{args[1]}"'
    else:
        raise AdminSyntaxError(f"expected {verb} [db] or {verb} [user db]")
    if not chosen:
        raise AdminError(UNDEFINED_DATABASE, f"{verb}: no pool for {what}")
    return chosen


def admin_set(host: ConsoleHost, key: str, value: str) -> bytes:
    # Applied to the configured totals: with several workers each one takes its share of the new
    # value, as it did of the file's.
    try:
        general = apply_override(host.configured.general, key, value)
    except ConfigError as exc:
        raise AdminError(INVALID_PARAMETER_VALUE, str(exc)) from None
    host.apply_general(general)
    return done("SET")


def reload(host: ConsoleHost) -> bytes:
    if not host.reload():
        raise AdminError(CONFIG_FILE_ERROR, f"RELOAD failed, the running configuration is unchanged: "
                                            f"{host.reload_error or 'no configuration files to read'}")
    return done("RELOAD")


def reconnect(host: ConsoleHost, args: tuple[str, ...]) -> bytes:
    now = host.now()
    for pool in target_pools(host, "RECONNECT", args):
        pool.reconnect(now)
    return done("RECONNECT")


def resume(host: ConsoleHost, args: tuple[str, ...]) -> list[Pool]:
    now = host.now()
    pools = target_pools(host, "RESUME", args)
    for pool in pools:
        pool.resume(now)
    return pools


def maintenance(host: ConsoleHost, args: tuple[str, ...]) -> bytes:
    if not args or args[0] not in ("on", "off"):
        raise AdminSyntaxError("expected MAINTENANCE ON|OFF [db]")
    now = host.now()
    on = args[0] == "on"
    for pool in target_pools(host, "MAINTENANCE", args[1:]):
        pool.set_maintenance(now, on)
    return done("MAINTENANCE")
