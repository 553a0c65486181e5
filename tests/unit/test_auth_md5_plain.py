"""MD5 and cleartext password checks."""

from __future__ import annotations

import hashlib

from pgdog_ev.auth import md5_check, md5_check_stored, md5_hash, md5_hash_from_stored, md5_stored, plain_check

SALT = b"\x01\x02\x03\x04"


def test_md5_known_vector_formula_and_literal() -> None:
    inner = hashlib.md5(b"secret" + b"postgres").hexdigest()
    expected = b"md5" + hashlib.md5(inner.encode() + SALT).hexdigest().encode()
    assert md5_hash("postgres", "secret", SALT) == expected
    assert md5_hash("postgres", "secret", SALT) == b"md5bb41a296aab6baccb36ff243a562abff"
    assert md5_stored("postgres", "secret") == "md553f48b7c4b76a86ce72276c5755f217d"


def test_md5_stored_matches_postgres() -> None:
    # CREATE ROLE carol PASSWORD 'secret' with password_encryption=md5 on PostgreSQL 15.
    assert md5_stored("carol", "secret") == "md57c53eaf86052083b816bfc7c7a6edf5d"


def test_md5_check() -> None:
    resp = md5_hash("postgres", "secret", SALT)
    assert md5_check("postgres", "secret", SALT, resp)
    assert md5_check("postgres", "secret", SALT, resp + b"\x00")  # C string from PasswordMessage
    assert not md5_check("postgres", "secret", b"\x01\x02\x03\x05", resp)
    assert not md5_check("postgres", "Secret", SALT, resp)
    assert not md5_check("other", "secret", SALT, resp)
    assert not md5_check("postgres", "secret", SALT, b"")


def test_md5_check_stored() -> None:
    stored = md5_stored("postgres", "secret")
    resp = md5_hash("postgres", "secret", SALT)
    assert md5_hash_from_stored(stored, SALT) == resp
    assert md5_check_stored(stored, SALT, resp)
    assert not md5_check_stored(stored, b"\x00\x00\x00\x00", resp)
    assert not md5_check_stored("md5nothex", SALT, resp)
    assert not md5_check_stored("secret", SALT, resp)
    assert not md5_check_stored(stored.upper(), SALT, resp)


def test_plain_check() -> None:
    assert plain_check(["a", "hunter2"], b"hunter2")
    assert plain_check(["hunter2"], b"hunter2\x00")
    assert not plain_check(["hunter2"], b"hunter3")
    assert not plain_check([], b"")
    assert not plain_check(["hunter2"], b"")
    assert plain_check(["p\u00e4ss"], "p\u00e4ss".encode())
    assert plain_check([""], b"\x00")
