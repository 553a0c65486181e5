"""SASLprep (RFC 4013) and PostgreSQL's raw-bytes fallback."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgdog_ev.auth import SASLprepError, prepare_password, saslprep


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("I\u00adX", "IX"),  # soft hyphen mapped to nothing
        ("user", "user"),  # no transformation
        ("USER", "USER"),  # case preserved
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # NFKC
        ("a\u00a0b", "a b"),  # non-ASCII space mapped to SPACE
        ("", ""),
    ],
)
def test_rfc4013_examples(given_: str, expected: str) -> None:
    assert saslprep(given_) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "\u0007",  # prohibited ASCII control
        "a\u0007b",
        "\u0627\u0031",  # RandALCat must start and end the string (RFC 4013 example)
        "\u0627a\u0627",  # RandALCat mixed with LCat
        "\ue000",  # private use
        "\u0221",  # unassigned in Unicode 3.2
        "\u00ad",  # maps to empty
    ],
)
def test_saslprep_failures(bad: str) -> None:
    with pytest.raises(SASLprepError):
        saslprep(bad)


def test_bidi_ok() -> None:
    assert saslprep("\u0627\u0031\u0627") == "\u0627\u0031\u0627"


def test_prepare_password_success_uses_prepared_utf8() -> None:
    assert prepare_password("I\u00adX") == b"IX"
    assert prepare_password("\u2168") == b"IX"
    assert prepare_password("p\u00e4ss") == "p\u00e4ss".encode()


def test_prepare_password_failure_falls_back_to_raw_bytes() -> None:
    assert prepare_password("\u0007") == b"\x07"
    assert prepare_password("\u00e9\u0007x") == "\u00e9\u0007x".encode()
    assert prepare_password("\u00ad") == b"\xc2\xad"
    assert prepare_password("\u0627\u0031") == "\u0627\u0031".encode()


def test_prepare_password_surrogateescape_roundtrip() -> None:
    raw = b"pw\xff\xfe"
    assert prepare_password(raw.decode("utf-8", "surrogateescape")) == raw


@given(st.text())
def test_prepare_password_total(s: str) -> None:
    out = prepare_password(s)
    assert isinstance(out, bytes)
    try:
        assert out == saslprep(s).encode("utf-8")
    except SASLprepError:
        pass
