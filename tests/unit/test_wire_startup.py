from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgdog_ev.wire import errors
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.startup import (
    MAX_STARTUP_PACKET,
    PROTOCOL_3_0,
    PROTOCOL_3_2,
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    build_cancel_request,
    build_gssenc_request,
    build_ssl_request,
    build_startup,
    parse_options,
    parse_startup,
    split_options,
    startup_length,
)


def _raw(version: int, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + version.to_bytes(4, "big") + payload


def test_known_vectors() -> None:
    assert build_ssl_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert build_gssenc_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    assert build_cancel_request(7, b"\x01\x02\x03\x04") == (
        b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x07\x01\x02\x03\x04"
    )
    assert build_startup({"user": "u"}) == b"\x00\x00\x00\x10\x00\x03\x00\x00user\x00u\x00\x00"


def test_special_requests() -> None:
    assert parse_startup(build_ssl_request()) == SSLRequest()
    assert parse_startup(build_gssenc_request()) == GSSENCRequest()
    assert parse_startup(build_cancel_request(123, b"abcd")) == CancelRequest(123, b"abcd")
    long_secret = bytes(range(32))
    assert parse_startup(build_cancel_request(2**32 - 1, long_secret)) == CancelRequest(
        2**32 - 1, long_secret
    )


@pytest.mark.parametrize("secret_len", [0, 3, 257])
def test_cancel_secret_length(secret_len: int) -> None:
    packet = (12 + secret_len).to_bytes(4, "big") + (80877102).to_bytes(4, "big") + b"\0" * 4
    packet += b"x" * secret_len
    packet = (len(packet)).to_bytes(4, "big") + packet[4:]
    with pytest.raises(ProtocolViolation):
        parse_startup(packet)


def test_ssl_request_with_extra_bytes() -> None:
    with pytest.raises(ProtocolViolation):
        parse_startup(b"\x00\x00\x00\x09\x04\xd2\x16\x2f\x00")


def test_startup_round_trip_and_helpers() -> None:
    params = {"user": "alice", "database": "db", "application_name": "app", "options": "-c a=b"}
    msg = parse_startup(build_startup(params))
    assert isinstance(msg, StartupMessage)
    assert msg.version == PROTOCOL_3_0
    assert (msg.major, msg.minor) == (3, 0)
    assert msg.params == params
    assert (msg.user, msg.database, msg.options) == ("alice", "db", "-c a=b")
    assert msg.protocol_options == ()


def test_database_defaults_to_user() -> None:
    msg = parse_startup(build_startup({"user": "bob"}))
    assert isinstance(msg, StartupMessage)
    assert msg.database == "bob"
    assert msg.options == ""
    msg = parse_startup(build_startup({"user": "bob", "database": ""}))
    assert isinstance(msg, StartupMessage)
    assert msg.database == "bob"


def test_protocol_options_are_separated() -> None:
    packet = build_startup({"user": "u", "_pq_.foo": "1", "_pq_.bar": "x", "x": "y"}, PROTOCOL_3_2)
    msg = parse_startup(packet)
    assert isinstance(msg, StartupMessage)
    assert msg.version == PROTOCOL_3_2
    assert msg.params == {"user": "u", "x": "y"}
    assert msg.protocol_options == ("_pq_.foo", "_pq_.bar")


def test_higher_minor_accepted_for_negotiation() -> None:
    msg = parse_startup(build_startup({"user": "u"}, (3 << 16) | 9))
    assert isinstance(msg, StartupMessage)
    assert msg.minor == 9


@pytest.mark.parametrize("version", [(2 << 16), (4 << 16) | 1, (1234 << 16) | 5681])
def test_unsupported_major(version: int) -> None:
    with pytest.raises(ProtocolViolation) as info:
        parse_startup(build_startup({"user": "u"}, version))
    assert info.value.sqlstate == errors.FEATURE_NOT_SUPPORTED
    major, minor = version >> 16, version & 0xFFFF
    assert str(info.value) == f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2"


@pytest.mark.parametrize("params", [{}, {"database": "d"}, {"user": ""}])
def test_missing_user(params: dict[str, str]) -> None:
    with pytest.raises(ProtocolViolation) as info:
        parse_startup(build_startup(params))
    assert info.value.sqlstate == errors.INVALID_AUTHORIZATION
    assert "no PostgreSQL user name" in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # no terminator at all
        b"user\0u\0",  # missing final terminator
        b"user\0u",  # unterminated value
        b"user\0",  # name without value
        b"user\0u\0\0\0",  # extra bytes after terminator
        b"\0user\0u\0\0",  # empty key
        b"user\0u\0user\0v\0\0",  # duplicate key
        b"user\0u\0_pq_.a\0\0_pq_.a\0\0\0",  # duplicate protocol option
        b"user\0\xff\xfe\0\0",  # invalid UTF-8
    ],
)
def test_malformed_params(payload: bytes) -> None:
    with pytest.raises(ProtocolViolation) as info:
        parse_startup(_raw(PROTOCOL_3_0, payload))
    assert info.value.sqlstate == errors.PROTOCOL_VIOLATION


def test_startup_length() -> None:
    assert startup_length(b"") is None
    assert startup_length(b"\x00\x00\x00") is None
    assert startup_length(b"\x00\x00\x00\x08") == 8
    assert startup_length(memoryview(b"\x00\x00\x27\x10rest")) == MAX_STARTUP_PACKET
    for bad in (0, 4, 7, MAX_STARTUP_PACKET + 1, 2**31, 2**32 - 1):
        with pytest.raises(ProtocolViolation, match="invalid length of startup packet"):
            startup_length(bad.to_bytes(4, "big"))


@pytest.mark.parametrize("packet", [b"", b"\x00\x00\x00\x08\x00\x03", b"\x00\x00\x00\x09\x00\x03\x00\x00"])
def test_parse_startup_length_mismatch(packet: bytes) -> None:
    with pytest.raises(ProtocolViolation, match="invalid length"):
        parse_startup(packet)


def test_parse_startup_too_long() -> None:
    payload = b"user\0" + b"x" * MAX_STARTUP_PACKET + b"\0\0"
    with pytest.raises(ProtocolViolation, match="invalid length"):
        parse_startup(_raw(PROTOCOL_3_0, payload))


def test_parse_startup_accepts_memoryview_and_bytearray() -> None:
    packet = build_startup({"user": "u"})
    assert parse_startup(memoryview(packet)) == parse_startup(bytearray(packet)) == parse_startup(packet)


_names = st.text(
    st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=20
)
_values = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)


@given(st.dictionaries(_names.filter(lambda n: not n.startswith("_pq_.")), _values, max_size=8), _values)
def test_startup_round_trip_property(params: dict[str, str], user: str) -> None:
    params = {**params, "user": user or "u"}
    msg = parse_startup(build_startup(params))
    assert isinstance(msg, StartupMessage)
    assert msg.params == params


@given(st.integers(0, 2**32 - 1), st.binary(min_size=4, max_size=256))
def test_cancel_round_trip_property(pid: int, secret: bytes) -> None:
    assert parse_startup(build_cancel_request(pid, secret)) == CancelRequest(pid, secret)


@given(st.binary(max_size=300))
def test_parse_startup_fuzz(data: bytes) -> None:
    packet = (len(data) + 4).to_bytes(4, "big") + data
    try:
        parse_startup(packet)
    except ProtocolViolation:
        pass
    try:
        parse_startup(data)
    except ProtocolViolation:
        pass


@given(st.binary(max_size=100))
def test_parse_startup_fuzz_v3(data: bytes) -> None:
    try:
        parse_startup(_raw(PROTOCOL_3_0, data))
    except ProtocolViolation:
        pass


# --- options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("-c search_path=foo", {"search_path": "foo"}),
        ("-csearch_path=foo", {"search_path": "foo"}),
        ("--search_path=foo", {"search_path": "foo"}),
        ("--search-path=foo", {"search_path": "foo"}),
        ("-c statement-timeout=5s", {"statement_timeout": "5s"}),
        ("-c a=1 -c b=2\t--c=3\n-cd=4", {"a": "1", "b": "2", "c": "3", "d": "4"}),
        (r"-c application_name=my\ app", {"application_name": "my app"}),
        (r"-c search_path=a\\b", {"search_path": "a\\b"}),
        (r"-c\ x=y", {" x": "y"}),  # like PostgreSQL, the escaped space stays in the name
        ("-c a=", {"a": ""}),
        ("-c a=b=c", {"a": "b=c"}),
        ("-c a=1 -c a=2", {"a": "2"}),
        (r"-c a=x\ ", {"a": "x "}),
        ("--", {}),
    ],
)
def test_parse_options(options: str, expected: dict[str, str]) -> None:
    assert parse_options(options) == expected


@pytest.mark.parametrize(
    "options",
    ["-c", "-c a", "--a", "-c =x", "-B 10", "-e", "foo", "-", "-- a=b", r"-c\ a\ =b x", "---"],
)
def test_parse_options_rejects(options: str) -> None:
    with pytest.raises(ProtocolViolation) as info:
        parse_options(options)
    assert info.value.sqlstate == errors.SYNTAX_ERROR


def test_split_options_matches_pg_split_opts() -> None:
    assert split_options(r"  a\ b  c\\d  e\ ") == ["a b", "c\\d", "e "]
    assert split_options("x\\") == ["x"]


@given(st.text(max_size=60))
def test_parse_options_fuzz(options: str) -> None:
    try:
        parse_options(options)
    except ProtocolViolation:
        pass
