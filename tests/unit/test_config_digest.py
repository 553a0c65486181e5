"""Config.digest: stable for the same effective settings, different when one changes."""

from __future__ import annotations

import os
import subprocess
import sys

from pgdog_ev.config import load_config_text

PGDOG = """
[general]
port = 6500
checkout_timeout = 1000

[[databases]]
name = "app"
host = "h"

[rewrite]
enabled = true
"""
USERS = '[[users]]\nname = "u"\ndatabase = "app"\npassword = "pw"\n'


def digest(pgdog: str = PGDOG, users: str = USERS, seed: int = 1) -> str:
    return load_config_text(pgdog, users, entropy=lambda n: bytes([seed]) * n).digest


def test_digest_is_stable() -> None:
    first = digest()
    assert len(first) == 64 and int(first, 16) >= 0
    assert digest() == first
    # Layout and spelling that do not change the effective values do not change the digest.
    reordered = PGDOG.replace("port = 6500\ncheckout_timeout = 1000", "checkout_timeout = 1_000\nport = 6500")
    assert digest(reordered) == first
    # Generated admin passwords are random per start: they must not move the digest.
    assert digest(seed=2) == first


def test_digest_stable_across_processes() -> None:
    code = (
        "from pgdog_ev.config import load_config_text\n"
        f"print(load_config_text({PGDOG!r}, {USERS!r}, entropy=lambda n: bytes(n)).digest)\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="random")
    out = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        ).stdout
        for _ in range(2)
    }
    assert out == {digest() + "\n"}


def test_digest_changes_with_values() -> None:
    base = digest()
    assert digest(PGDOG.replace("1000", "1001")) != base
    assert digest(PGDOG.replace("enabled = true", "enabled = false")) != base
    assert digest(users=USERS + "pool_size = 3\n") != base
    assert digest(PGDOG + '[admin]\nuser = "root"\n') != base


def test_digest_does_not_depend_on_secret_values() -> None:
    assert digest(users=USERS.replace("pw", "other")) == digest()
    # ...but whether a secret is set at all is part of the settings.
    assert digest(users=USERS.replace('password = "pw"\n', "")) != digest()
