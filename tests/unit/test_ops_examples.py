"""What ships in ops/ stays valid: every example config loads with the real loader and describes
the layout its comments promise, and the systemd unit keeps its hardening (checked by
`systemd-analyze verify` where systemd is installed, and by a plain parse everywhere)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgdog_ev.config import Config, load_config
from pgdog_ev.config.model import General

OPS = Path(__file__).resolve().parents[2] / "ops"
EXAMPLES = OPS / "examples"
UNIT = OPS / "systemd" / "pgdog-ev.service"


def _load(directory: Path) -> Config:
    # No environment: a PGDOG_* variable of the machine running the tests must not change them.
    return load_config(str(directory / "pgdog.toml"), str(directory / "users.toml"), entropy=os.urandom, env={})


def _layout(config: Config, name: str) -> list[tuple[int, str, str]]:
    return [(d.shard, d.role, d.host) for d in config.hosts(name)]


def test_single_database() -> None:
    config = _load(EXAMPLES)
    assert config.database_names() == ["app"]
    assert _layout(config, "app") == [(0, "primary", "127.0.0.1")]
    assert [(u.name, u.database) for u in config.users] == [("app", "app")]
    assert config.general.pooler_mode == "transaction"


def test_primary_and_replicas() -> None:
    config = _load(EXAMPLES / "replicas")
    assert config.database_names() == ["app"]
    assert _layout(config, "app") == [
        (0, "primary", "10.0.0.1"),
        (0, "replica", "10.0.0.2"),
        (0, "replica", "10.0.0.3"),
    ]
    assert sorted(u.name for u in config.users_for("app")) == ["app", "reporting"]
    assert config.user("reporting", "app").read_only is True  # type: ignore[union-attr]
    assert config.general.load_balancing_strategy == "round_robin"
    assert config.general.event_log == "/var/log/pgdog-ev/pgdog-ev.evlog"


def test_two_shards() -> None:
    config = _load(EXAMPLES / "sharded")
    assert config.database_names() == ["shop"]
    assert _layout(config, "shop") == [
        (0, "primary", "10.0.1.1"),
        (0, "replica", "10.0.1.2"),
        (1, "primary", "10.0.2.1"),
        (1, "replica", "10.0.2.2"),
    ]
    assert {d.shard: d.database_name for d in config.hosts("shop")} == {0: "shop_0", 1: "shop_1"}
    assert [(u.name, u.database) for u in config.users] == [("shop", "shop")]
    assert config.extra_sections["sharded_tables"] == [
        {"database": "shop", "column": "customer_id", "data_type": "bigint"}
    ]
    assert config.extra_sections["omnisharded_tables"][0]["tables"] == ["countries", "currencies"]


# --- the systemd unit --------------------------------------------------------------------------

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "",
    "LimitNOFILE": "65536",
    "User": "pgdog-ev",
    "Group": "pgdog-ev",
    "LogsDirectory": "pgdog-ev",
}


def _unit() -> configparser.ConfigParser:
    # systemd allows repeated keys (later ones add or reset); keep the last, as a reset would.
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60}
    for suffix, factor in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * factor
    return float(value)


def test_unit_parses_with_hardening() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Type"] == "notify"
    for key, value in HARDENING.items():
        assert service.get(key) == value, key
    exec_start = service["ExecStart"].split()
    assert exec_start[0].endswith("/pgdog-ev") and exec_start[1] == "run"
    assert exec_start[2:] == ["--config", "/etc/pgdog-ev/pgdog.toml", "--users", "/etc/pgdog-ev/users.toml"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    # The drain must finish before systemd gives up on it.
    assert _seconds(service["TimeoutStopSec"]) > General().shutdown_timeout / 1000
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_command_line_is_accepted_by_the_cli() -> None:
    from pgdog_ev.cli import parser

    args = parser().parse_args(_unit()["Service"]["ExecStart"].split()[1:])
    assert (args.command, args.config, args.users) == ("run", "/etc/pgdog-ev/pgdog.toml", "/etc/pgdog-ev/users.toml")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at this checkout's console script (or any
    # executable) in a copy, leaving everything else as shipped.
    script = Path(sys.executable).parent / "pgdog-ev"
    target = str(script) if script.exists() else shutil.which("true") or "/bin/true"
    exec_path = _unit()["Service"]["ExecStart"].split()[0]
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(exec_path, target))
    res = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    output = res.stdout + res.stderr
    assert res.returncode == 0, output
    # Unknown keys are only warnings for verify: fail on any complaint about our file.
    assert UNIT.name not in output, output
