"""Config.pool_settings: user > database > general precedence and server credentials."""

from __future__ import annotations

from pgdog_ev.config import Config, PoolSettings, load_config_text


def entropy(n: int) -> bytes:
    return bytes(n)


def config_of(pgdog: str, users: str) -> Config:
    return load_config_text(pgdog, users, entropy=entropy)


GENERAL = """
[general]
default_pool_size = 10
min_pool_size = 1
pooler_mode = "transaction"
idle_timeout = 1000
server_lifetime = 2000
checkout_timeout = 111
connect_timeout = 222
query_timeout = 333
rollback_timeout = 444
"""


def settings(db_extra: str = "", user_extra: str = "", role: str = "primary") -> PoolSettings:
    pgdog = GENERAL + f'[[databases]]\nname = "app"\nhost = "h"\nrole = "{role}"\n{db_extra}'
    users = f'[[users]]\nname = "alice"\ndatabase = "app"\npassword = "pw"\n{user_extra}'
    config = config_of(pgdog, users)
    (user,) = config.users
    (db,) = config.databases
    return config.pool_settings(user, db)


def test_general_only() -> None:
    s = settings()
    assert (s.pool_size, s.min_pool_size, s.pooler_mode) == (10, 1, "transaction")
    assert (s.idle_timeout, s.server_lifetime, s.statement_timeout) == (1000, 2000, None)
    assert (s.checkout_timeout, s.connect_timeout, s.query_timeout, s.rollback_timeout) == (
        111,
        222,
        333,
        444,
    )
    assert (s.server_user, s.server_password, s.server_database) == ("alice", "pw", "app")


def test_database_overrides_general() -> None:
    db = 'pool_size = 5\nmin_pool_size = 2\npooler_mode = "session"\nidle_timeout = 9\n'
    db += 'server_lifetime = 8\nstatement_timeout = 7\ndatabase_name = "real"\n'
    s = settings(db_extra=db)
    assert (s.pool_size, s.min_pool_size, s.pooler_mode) == (5, 2, "session")
    assert (s.idle_timeout, s.server_lifetime, s.statement_timeout) == (9, 8, 7)
    assert s.server_database == "real"


def test_user_overrides_database() -> None:
    db = 'pool_size = 5\nmin_pool_size = 2\npooler_mode = "session"\nidle_timeout = 9\n'
    db += "server_lifetime = 8\nstatement_timeout = 7\n"
    user = 'pool_size = 3\nmin_pool_size = 0\npooler_mode = "transaction"\nidle_timeout = 6\n'
    user += "server_lifetime = 5\nstatement_timeout = 4\n"
    s = settings(db_extra=db, user_extra=user)
    assert (s.pool_size, s.min_pool_size, s.pooler_mode) == (3, 0, "transaction")
    assert (s.idle_timeout, s.server_lifetime, s.statement_timeout) == (6, 5, 4)


def test_role_specific_keys() -> None:
    s = settings(db_extra="pool_size = 5\npool_size_replica = 2\n", role="replica")
    assert s.pool_size == 2
    s = settings(db_extra="pool_size = 5\npool_size_replica = 2\n", role="primary")
    assert s.pool_size == 5
    s = settings(db_extra="pool_size_replica = 2\n", user_extra="pool_size = 4\n", role="replica")
    assert s.pool_size == 4  # anything on the user beats the database


def test_server_credentials_precedence() -> None:
    assert settings(user_extra='server_user = "su"\nserver_password = "sp"\n').server_user == "su"
    s = settings(user_extra='server_user = "su"\nserver_password = "sp"\n')
    assert (s.server_user, s.server_password) == ("su", "sp")
    s = settings(
        db_extra='user = "dbu"\npassword = "dbp"\n', user_extra='server_user = "su"\nserver_password = "sp"\n'
    )
    assert (s.server_user, s.server_password) == ("dbu", "dbp")


def test_server_password_may_be_none() -> None:
    pgdog = '[[databases]]\nname = "app"\nhost = "h"\n'
    verifier = "md5d41d8cd98f00b204e9800998ecf8427e"
    config = config_of(pgdog, f'[[users]]\nname = "u"\ndatabase = "app"\npassword_hash = "{verifier}"\n')
    assert config.pool_settings(config.users[0], config.databases[0]).server_password is None


def test_read_only_and_replication() -> None:
    s = settings(db_extra="read_only = true\n", user_extra="replication_mode = true\n")
    assert s.read_only is True and s.replication_mode is True
    assert settings(db_extra="read_only = true\n", user_extra="read_only = false\n").read_only is False
