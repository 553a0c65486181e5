"""Every kind of configuration error names the file, the table and the key."""

from __future__ import annotations

import pickle

import pytest

from pgdog_ev.config import ConfigError, load_config_text


def entropy(n: int) -> bytes:
    return bytes(n)


def error_of(pgdog: str | None = None, users: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config_text(pgdog, users, entropy=entropy)
    return info.value


APP = '[[databases]]\nname = "app"\nhost = "h"\n'


def test_wrong_type_message() -> None:
    error = error_of('[general]\ncheckout_timeout = "5s"\n')
    assert (
        str(error)
        == 'pgdog.toml: [general] checkout_timeout: expected an integer (milliseconds), got string "5s"'
    )
    assert (error.file, error.table, error.key) == ("pgdog.toml", "[general]", "checkout_timeout")


@pytest.mark.parametrize("key", ["port", "default_pool_size", "checkout_timeout", "query_timeout"])
def test_bool_is_not_an_int(key: str) -> None:
    error = error_of(f"[general]\n{key} = true\n")
    assert error.key == key
    assert "got boolean true" in str(error)


def test_float_is_not_an_int() -> None:
    assert "got float 1.5" in str(error_of("[general]\nport = 1.5\n"))


def test_bool_is_not_a_float() -> None:
    assert "expected a number, got boolean false" in str(error_of("[general]\nmirror_exposure = false\n"))


def test_bool_key_rejects_string() -> None:
    error = error_of('[general]\ndry_run = "yes"\n')
    assert str(error) == 'pgdog.toml: [general] dry_run: expected a boolean (true or false), got string "yes"'


def test_range_errors() -> None:
    assert "must be <= 65535, got 70000" in str(error_of("[general]\nport = 70000\n"))
    assert "must be >= 0, got -1" in str(error_of("[general]\nidle_timeout = -1\n"))
    assert "must be >= 1024, got 100" in str(error_of("[general]\nmax_message_size = 100\n"))
    assert "must be <= 1.0" in str(error_of("[general]\nmirror_exposure = 1.5\n"))


def test_bad_choice_lists_allowed_values() -> None:
    error = error_of('[general]\nload_balancing_strategy = "fastest"\n')
    assert error.key == "load_balancing_strategy"
    assert str(error) == (
        "pgdog.toml: [general] load_balancing_strategy: expected one of "
        '"random", "round_robin", "least_active_connections", "weighted_round_robin", got "fastest"'
    )


def test_statement_pooling_rejected_clearly() -> None:
    for text in ('[general]\npooler_mode = "statement"\n', APP + 'pooler_mode = "statement"\n'):
        message = str(error_of(text))
        assert '"statement" pooling is not supported' in message
        assert '"transaction", "session"' in message


def test_unknown_key_in_general() -> None:
    error = error_of("[general]\ncheckout_timout = 5\n")
    assert (
        str(error)
        == 'pgdog.toml: [general]: unknown key "checkout_timout" (did you mean "checkout_timeout"?)'
    )
    assert error.key == "checkout_timout"


def test_unknown_key_in_databases() -> None:
    error = error_of(APP + 'hostname = "x"\n')
    assert str(error).startswith('pgdog.toml: [[databases]] #1 (name "app"): unknown key "hostname"')
    assert error.table == '[[databases]] #1 (name "app")'


def test_unknown_key_in_users() -> None:
    users = '[[users]]\nname = "alice"\ndatabase = "app"\n[[users]]\nname = "bob"\npasword = "x"\n'
    error = error_of(APP, users)
    assert str(error).startswith('users.toml: [[users]] #2 (name "bob"): unknown key "pasword"')
    assert (error.file, error.table, error.key) == ("users.toml", '[[users]] #2 (name "bob")', "pasword")


@pytest.mark.parametrize("which", ["pgdog", "users"])
def test_unknown_key_in_admin(which: str) -> None:
    text = '[admin]\nusername = "x"\n'
    error = error_of(text, None) if which == "pgdog" else error_of(None, text)
    assert error.file == f"{which}.toml" and error.table == "[admin]" and error.key == "username"
    assert 'unknown key "username"' in str(error)


def test_missing_required_key() -> None:
    error = error_of('[[databases]]\nhost = "h"\n')
    assert str(error) == 'pgdog.toml: [[databases]] #1: missing required key "name"'
    assert error.key == "name"
    assert 'missing required key "host"' in str(error_of('[[databases]]\nname = "app"\n'))
    assert 'missing required key "name"' in str(error_of(APP, '[[users]]\ndatabase = "app"\n'))


def test_unknown_top_level_table() -> None:
    error = error_of("[sharded_mapping]\nx = 1\n")
    assert error.table == "[sharded_mapping]"
    assert "pgdog.toml: [sharded_mapping]: unknown table" in str(error)
    error = error_of(None, "[[databases]]\nname = 1\n")
    assert error.file == "users.toml" and error.table == "[[databases]]"


def test_top_level_key_outside_general() -> None:
    error = error_of("port = 6432\n")
    assert error.key == "port"
    assert "belong under [general]" in str(error)


def test_table_of_wrong_shape() -> None:
    assert "[general]: expected a table, got an array" in str(error_of("[[general]]\nport = 1\n"))
    assert "[[databases]]: expected an array of tables, got integer 5" in str(error_of("databases = 5\n"))
    assert "[[users]]: entry #1: expected a table" in str(error_of(None, "users = [1]\n"))
    assert "[rewrite]: expected a table" in str(error_of("rewrite = 1\n"))


def test_string_list_elements_checked() -> None:
    error = error_of(APP, '[[users]]\nname = "a"\ndatabase = "app"\npasswords = ["x", 2]\n')
    assert error.key == "passwords"
    assert "element #2: expected a string, got integer 2" in str(error)


def test_bad_password_hash() -> None:
    error = error_of(APP, '[[users]]\nname = "a"\ndatabase = "app"\npassword_hash = "hunter2"\n')
    assert error.key == "password_hash" and "SCRAM-SHA-256" in str(error)


def test_alias_and_canonical_both_set() -> None:
    error = error_of("[general]\ndefault_pool_size = 5\nmax_pool_size = 6\n")
    assert error.key == "max_pool_size" and "same setting" in str(error)


def test_toml_syntax_error_has_line() -> None:
    error = error_of('[general]\nport = 6432\nhost = "unterminated\n')
    assert error.file == "pgdog.toml"
    assert "invalid TOML" in str(error)
    assert "line 3" in str(error)
    users_error = error_of(None, "[[users]\n")
    assert users_error.file == "users.toml" and "line 1" in str(users_error)


def test_error_survives_pickling() -> None:
    error = error_of("[general]\nport = true\n")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert (copy.file, copy.table, copy.key, copy.detail) == (
        error.file,
        error.table,
        error.key,
        error.detail,
    )


def test_config_error_without_location() -> None:
    assert str(ConfigError("just this")) == "just this"
    assert str(ConfigError("x", file="f")) == "f: x"
    assert str(ConfigError("x", file="f", key="k")) == "f: k: x"
