"""The configuration and the passwords of a re-execution.

The capture holds pgdog.toml and users.toml with their secrets replaced by markers
(:mod:`pgdog_ev.capture.redact`). That is enough for everything the proxy decides except logins
that need a real secret: a SCRAM exchange (client or server side) checks a proof made from the
password, and a masked cleartext password cannot be typed again. ``-c``/``-u`` give the real
files; they must describe the same settings (same configuration digest, which treats secrets as
"set / not set") as the captured run.

A client's masked cleartext or MD5 PasswordMessage is rebuilt when the event log shows that the
client logged in: from a password of its user that the re-executed session accepts (with the real
users.toml, or, for MD5, with the marker password the redacted users.toml holds, since the
re-executed proxy checks against that). A client whose login failed gets the mask, which fails
the same way.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from typing import Any

from pgdog_ev.auth.md5 import md5_hash, md5_hash_from_stored
from pgdog_ev.capture.redact import SECRET_KEYS, dump_toml, has_markers, is_marker
from pgdog_ev.config import Config, ConfigError, load_config_text

__all__ = ["ConfigSource", "ReexecError", "password_body"]


class ReexecError(Exception):
    """Re-execution cannot start (exit status 2); the message says why."""


def _read(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReexecError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _entry_key(table: str, entry: dict[str, Any]) -> tuple[Any, ...] | None:
    """What names the same [[users]] / [[databases]] entry in two versions of a file."""
    if table == "users":
        return (entry.get("name"), entry.get("database"), tuple(entry.get("databases") or ()),
                entry.get("all_databases"))
    if table == "databases":
        return (entry.get("name"), entry.get("host"), entry.get("port"), entry.get("shard"), entry.get("role"))
    return None


def merge_secrets(captured: dict[str, Any], real: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The captured document with its masked secrets taken from the same places of ``real``
    (users by name and database, databases by name and address); (document, secrets taken)."""
    taken = 0

    def table(cap: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
        nonlocal taken
        out = dict(cap)
        for key, value in cap.items():
            if key in SECRET_KEYS and key in other and is_marker(value) and not is_marker(other[key]):
                out[key] = other[key]
                taken += 1
            elif isinstance(value, dict) and isinstance(other.get(key), dict):
                out[key] = table(value, other[key])
        return out

    merged: dict[str, Any] = {}
    for name, value in captured.items():
        other = real.get(name)
        if isinstance(value, dict) and isinstance(other, dict):
            merged[name] = table(value, other)
        elif isinstance(value, list) and isinstance(other, list) and all(isinstance(e, dict) for e in value):
            entries = [e for e in other if isinstance(e, dict)]
            index: dict[Any, dict[str, Any]] = {}
            for e in entries:
                index.setdefault(_entry_key(name, e), e)
            rows = []
            for i, e in enumerate(value):
                k = _entry_key(name, e)
                match = index.get(k, {}) if k is not None else (entries[i] if i < len(entries) else {})
                rows.append(table(e, match))
            merged[name] = rows
        else:
            merged[name] = value
    return merged, taken


class ConfigSource:
    """Builds the Config of the captured run (and of each captured reload)."""

    def __init__(self, config_file: str | None, users_file: str | None) -> None:
        self.config_file = config_file
        self.users_file = users_file
        self.config_text = _read(config_file, "pgdog.toml")
        self.users_text = _read(users_file, "users.toml")
        self.redacted: list[str] = []
        self.notes: list[str] = []

    def build(self, texts: dict[str, Any], digest: str, what: str) -> Config:
        """The Config for captured ``texts``, checked against ``digest``; ReexecError if impossible.

        Files given with -c/-u are used as they are when they describe the captured settings;
        otherwise (they were edited since, e.g. for a reload that followed) only their passwords
        are put into the captured files, at the same users and databases."""
        self.notes = []
        if self.config_file is not None or self.users_file is not None:
            try:
                return self._build(self.config_text if self.config_file is not None else texts.get("pgdog_toml"),
                                   self.users_text if self.users_file is not None else texts.get("users_toml"),
                                   texts, digest, what, given=True)
            except ReexecError as exc:
                first = exc
            pgdog, n1 = self._merge(texts.get("pgdog_toml"), self.config_text)
            users, n2 = self._merge(texts.get("users_toml"), self.users_text)
            if n1 + n2 == 0:
                raise first
            self.notes.append(f"{first}; their passwords were put into the captured files instead")
            return self._build(pgdog, users, texts, digest, what, given=False)
        return self._build(texts.get("pgdog_toml"), texts.get("users_toml"), texts, digest, what, given=False)

    @staticmethod
    def _merge(captured: str | None, real: str | None) -> tuple[str | None, int]:
        if captured is None or real is None or not has_markers(captured):
            return captured, 0
        try:
            doc, taken = merge_secrets(tomllib.loads(captured), tomllib.loads(real))
        except tomllib.TOMLDecodeError:
            return captured, 0
        return dump_toml(doc), taken

    def _build(self, pgdog: str | None, users: str | None, texts: dict[str, Any], digest: str, what: str,
               given: bool) -> Config:
        for name, text, path, option in (("pgdog.toml", pgdog, texts.get("config_path"), "-c"),
                                         ("users.toml", users, texts.get("users_path"), "-u")):
            if text is None and path is not None:
                raise ReexecError(f"{what}: the capture does not hold {name} (it could not be read or "
                                  f"rewritten when the run was captured); give it with {option}")
        self.redacted = [name for name, text in (("pgdog.toml", pgdog), ("users.toml", users)) if has_markers(text)]
        env = texts.get("env") or {}
        try:
            loaded = load_config_text(pgdog, users, entropy=os.urandom, env=env,
                                      config_name=(self.config_file if given else None) or "pgdog.toml (captured)",
                                      users_name=(self.users_file if given else None) or "users.toml (captured)")
        except ConfigError as exc:
            raise ReexecError(f"{what}: the configuration does not load: {exc}") from None
        # Paths as the captured run resolved them (the digest covers event_log).
        general = dataclasses.replace(loaded.general, event_log=texts.get("event_log") or loaded.general.event_log)
        config = Config.build(general, loaded.databases, loaded.users, loaded.admin, loaded.extra_sections,
                              config_path=self.config_file or texts.get("config_path"),
                              users_path=self.users_file or texts.get("users_path"))
        if config.digest != digest:
            given_files = " and ".join(f"{opt} {path}" for opt, path in (("-c", self.config_file), ("-u", self.users_file))
                                 if path is not None)
            source = f"the files given ({given_files})" if given else "the files held in the capture"
            raise ReexecError(f"{what}: {source} do not describe the captured configuration "
                              f"(digest {config.digest[:12]}, captured {digest[:12]})")
        return config


def password_body(session: Any, body_len: int) -> bytes | None:
    """A PasswordMessage body of ``body_len`` bytes that the re-executed ``session`` accepts, or None.

    MD5: ``md5`` + the salted hash (from each plain password, then from a stored MD5 hash);
    cleartext: a plain password of exactly the captured length."""
    login = getattr(session, "login", None)
    if login is None:
        return None
    auth_type = login.auth_type
    candidates: list[bytes] = []
    if auth_type == "md5":
        salt = session._md5_salt
        candidates += [md5_hash(login.user, pw, salt) + b"\0" for pw in login.passwords]
        if login.md5_stored:
            try:
                candidates.append(md5_hash_from_stored(login.md5_stored, salt) + b"\0")
            except ValueError:
                pass
    elif auth_type in ("plain", "trust"):
        candidates += [pw.encode("utf-8") + b"\0" for pw in login.passwords]
    for body in candidates:
        if len(body) == body_len:
            return body
    return None
