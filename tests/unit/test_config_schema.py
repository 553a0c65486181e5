"""The schema tables and the dataclasses agree, and the example files load."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from pgdog_ev.config import AdminConfig, DatabaseEntry, General, UserEntry, load_config
from pgdog_ev.config.kinds import ChoiceKind
from pgdog_ev.config.schema import ADMIN_KEYS, DATABASE_KEYS, GENERAL_KEYS, USER_KEYS

EXAMPLES = Path(__file__).resolve().parents[2] / "ops" / "examples"


def test_general_fields_match_schema() -> None:
    fields = {field.name: field for field in dataclasses.fields(General)}
    assert list(fields) == [spec.name for spec in GENERAL_KEYS]
    for spec in GENERAL_KEYS:
        assert fields[spec.name].default == spec.default, spec.name


def test_literal_types_match_choices() -> None:
    hints = typing.get_type_hints(General)
    for spec in GENERAL_KEYS:
        if not isinstance(spec.kind, ChoiceKind):
            continue
        literal_args = typing.get_args(hints[spec.name])
        if literal_args:
            assert set(literal_args) == set(spec.kind.choices), spec.name


def test_entry_fields_cover_schema() -> None:
    database_fields = {field.name for field in dataclasses.fields(DatabaseEntry)}
    assert database_fields == {spec.name for spec in DATABASE_KEYS}
    user_fields = {field.name for field in dataclasses.fields(UserEntry)}
    # The target keys are expanded into `database`; password(s) merge into `passwords`.
    expected = {spec.name for spec in USER_KEYS} - {"databases", "all_databases", "password"}
    assert user_fields == expected
    admin_fields = {field.name for field in dataclasses.fields(AdminConfig)}
    assert admin_fields == {spec.name for spec in ADMIN_KEYS} | {"password_generated"}


def test_every_spec_has_doc_and_valid_default() -> None:
    for spec in GENERAL_KEYS + DATABASE_KEYS + USER_KEYS + ADMIN_KEYS:
        assert spec.doc, spec.name
        if spec.default is not None:
            assert spec.from_toml(spec.default) == spec.default, spec.name


def test_example_files_load() -> None:
    config = load_config(
        str(EXAMPLES / "pgdog.toml"), str(EXAMPLES / "users.toml"), entropy=lambda n: bytes(n), env={}
    )
    assert config.database_names() == ["app"]
    (user,) = config.users
    assert user.name == "app" and user.database == "app" and user.passwords
    settings = config.pool_settings(user, config.hosts("app")[0])
    assert settings.pool_size == 10 and settings.pooler_mode == "transaction"
    assert Path(config.general.event_log) == EXAMPLES / "pgdog-ev.evlog"
