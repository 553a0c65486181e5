from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer


def split(msg: bytes) -> tuple[int, bytes]:
    """Run a built message through the Framer so header and body are checked together."""
    out = Framer(1 << 20).feed(msg)
    assert len(out) == 1
    return out[0]


def body_of(msg: bytes, type_byte: int) -> bytes:
    t, body = split(msg)
    assert t == type_byte
    return body


_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=50)
_int16 = st.integers(-(2**15), 2**15 - 1)
_value = st.none() | st.binary(max_size=50)


def test_known_vectors() -> None:
    assert fe.query("select 1") == b"Q\x00\x00\x00\x0dselect 1\x00"
    assert fe.sync() == b"S\x00\x00\x00\x04"
    assert fe.flush() == b"H\x00\x00\x00\x04"
    assert fe.terminate() == b"X\x00\x00\x00\x04"
    assert fe.copy_done() == b"c\x00\x00\x00\x04"
    assert fe.execute("", 0) == b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00"
    assert fe.describe("S", "s1") == b"D\x00\x00\x00\x08Ss1\x00"
    assert fe.parse("", "select $1", [23]) == b"P\x00\x00\x00\x15\x00select $1\x00\x00\x01\x00\x00\x00\x17"
    assert fe.bind("", "", [], [b"1", None], []) == (
        b"B\x00\x00\x00\x15\x00\x00\x00\x00\x00\x02\x00\x00\x00\x011\xff\xff\xff\xff\x00\x00"
    )
    assert fe.password("pw") == b"p\x00\x00\x00\x07pw\x00"


@given(_text)
def test_query_round_trip(sql: str) -> None:
    assert fe.parse_query(body_of(fe.query(sql), fe.QUERY)) == sql


@given(_text, _text, st.lists(st.integers(0, 2**32 - 1), max_size=10))
def test_parse_round_trip(name: str, sql: str, types: list[int]) -> None:
    msg = fe.parse_parse(body_of(fe.parse(name, sql, types), fe.PARSE))
    assert msg == fe.Parse(name, sql, tuple(types))


@st.composite
def _binds(draw: st.DrawFn) -> tuple[str, str, list[int], list[bytes | None], list[int]]:
    params = draw(st.lists(_value, max_size=8))
    nformats = draw(st.sampled_from(sorted({0, 1, len(params)})))
    formats = draw(st.lists(st.integers(0, 1), min_size=nformats, max_size=nformats))
    result_formats = draw(st.lists(st.integers(0, 1), max_size=5))
    return draw(_text), draw(_text), formats, params, result_formats


@given(_binds())
def test_bind_round_trip(args: tuple[str, str, list[int], list[bytes | None], list[int]]) -> None:
    portal, statement, formats, params, result_formats = args
    body = body_of(fe.bind(portal, statement, formats, params, result_formats), fe.BIND)
    assert fe.parse_bind(body) == fe.Bind(
        portal, statement, tuple(formats), tuple(params), tuple(result_formats)
    )
    assert fe.statement_name_of_bind(body) == statement


def test_bind_format_count_mismatch() -> None:
    body = body_of(fe.bind("", "", [0, 1], [b"a", b"b", b"c"], []), fe.BIND)
    with pytest.raises(ProtocolViolation):
        fe.parse_bind(body)


def test_bind_many_params() -> None:
    params = [b"x"] * 40000  # beyond int16 range: counts are unsigned on the wire
    assert fe.parse_bind(body_of(fe.bind("", "s", [1], params, []), fe.BIND)).params == tuple(params)


@given(st.sampled_from("SP"), _text)
def test_describe_close_round_trip(kind: str, name: str) -> None:
    assert fe.parse_describe(body_of(fe.describe(kind, name), fe.DESCRIBE)) == fe.Describe(kind, name)
    assert fe.parse_close(body_of(fe.close(kind, name), fe.CLOSE)) == fe.Close(kind, name)


def test_describe_bad_kind() -> None:
    with pytest.raises(ValueError):
        fe.describe("X", "")
    with pytest.raises(ProtocolViolation):
        fe.parse_describe(b"Xname\0")
    with pytest.raises(ProtocolViolation):
        fe.parse_close(b"")


@given(_text, st.integers(-(2**31), 2**31 - 1))
def test_execute_round_trip(portal: str, max_rows: int) -> None:
    assert fe.parse_execute(body_of(fe.execute(portal, max_rows), fe.EXECUTE)) == fe.Execute(portal, max_rows)


@given(st.binary(max_size=100))
def test_copy_data_and_sasl_response(data: bytes) -> None:
    assert split(fe.copy_data(data)) == (fe.COPY_DATA, data)
    assert split(fe.copy_data(memoryview(data))) == (fe.COPY_DATA, data)
    assert fe.parse_sasl_response(body_of(fe.sasl_response(data), fe.PASSWORD)) == data


@given(_text)
def test_copy_fail_round_trip(msg: str) -> None:
    assert fe.parse_copy_fail(body_of(fe.copy_fail(msg), fe.COPY_FAIL)) == msg


@given(st.integers(0, 2**32 - 1), st.lists(_value, max_size=6), st.booleans(), _int16)
def test_function_call_round_trip(oid: int, args: list[bytes | None], one_format: bool, result: int) -> None:
    formats = [1] if one_format else [0] * len(args)
    body = body_of(fe.function_call(oid, formats, args, result), fe.FUNCTION_CALL)
    assert fe.parse_function_call(body) == fe.FunctionCall(oid, tuple(formats), tuple(args), result)


@given(st.binary(max_size=50).filter(lambda b: b"\0" not in b))
def test_password_round_trip(pw: bytes) -> None:
    assert fe.parse_password(body_of(fe.password(pw), fe.PASSWORD)) == pw


def test_password_str_and_malformed() -> None:
    assert fe.parse_password(body_of(fe.password("sécret"), fe.PASSWORD)) == "sécret".encode()
    for bad in (b"", b"pw", b"pw\0x", b"p\0w\0"):
        with pytest.raises(ProtocolViolation):
            fe.parse_password(bad)


@given(_text, st.none() | st.binary(max_size=80))
def test_sasl_initial_response_round_trip(mechanism: str, data: bytes | None) -> None:
    body = body_of(fe.sasl_initial_response(mechanism, data), fe.PASSWORD)
    assert fe.parse_sasl_initial_response(body) == (mechanism, data)


@pytest.mark.parametrize(
    ("parser", "body"),
    [
        (fe.parse_query, b""),
        (fe.parse_query, b"select 1"),
        (fe.parse_query, b"select 1\0\0"),
        (fe.parse_query, b"\xff\0"),
        (fe.parse_parse, b"\0select\0\x00\x02\x00\x00\x00\x17"),
        (fe.parse_parse, b"\0select\0\x00\x00extra"),
        (fe.parse_bind, b"\0\0\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00"),  # length -2
        (fe.parse_bind, b"\0\0\x00\x00\x00\x01\x00\x00\x00\x05ab\x00\x00"),
        (fe.parse_execute, b"\0\x00\x00"),
        (fe.parse_sasl_initial_response, b"SCRAM-SHA-256\0\x00\x00\x00\x05abc"),
        (fe.parse_function_call, b"\x00\x00\x00\x01\x00\x00\x00\x00"),
    ],
)
def test_malformed(parser: object, body: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        parser(body)  # type: ignore[operator]


def test_builders_reject_nul() -> None:
    with pytest.raises(ValueError):
        fe.query("a\0b")
