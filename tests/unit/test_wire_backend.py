from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgdog_ev.wire import backend as be
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import Framer


def split(msg: bytes) -> tuple[int, bytes]:
    out = Framer(1 << 20).feed(msg)
    assert len(out) == 1
    return out[0]


def body_of(msg: bytes, type_byte: int) -> bytes:
    t, body = split(msg)
    assert t == type_byte
    return body


_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)
_name = _text.filter(bool)
_u32 = st.integers(0, 2**32 - 1)
_i16 = st.integers(-(2**15), 2**15 - 1)


def test_known_vectors() -> None:
    assert be.ready_for_query(b"I") == b"Z\x00\x00\x00\x05I"
    assert be.ready_for_query(b"T") == b"Z\x00\x00\x00\x05T"
    assert be.authentication_ok() == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert be.authentication_cleartext() == b"R\x00\x00\x00\x08\x00\x00\x00\x03"
    assert be.authentication_md5(b"abcd") == b"R\x00\x00\x00\x0c\x00\x00\x00\x05abcd"
    assert (
        be.authentication_sasl(["SCRAM-SHA-256"]) == b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00"
    )
    assert be.parse_complete() == b"1\x00\x00\x00\x04"
    assert be.bind_complete() == b"2\x00\x00\x00\x04"
    assert be.close_complete() == b"3\x00\x00\x00\x04"
    assert be.no_data() == b"n\x00\x00\x00\x04"
    assert be.portal_suspended() == b"s\x00\x00\x00\x04"
    assert be.empty_query_response() == b"I\x00\x00\x00\x04"
    assert be.copy_done() == b"c\x00\x00\x00\x04"
    assert be.command_complete("SELECT 1") == b"C\x00\x00\x00\x0dSELECT 1\x00"
    assert be.backend_key_data(1, b"\x00\x00\x00\x02") == b"K\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x02"
    assert be.data_row([b"1", None]) == b"D\x00\x00\x00\x0f\x00\x02\x00\x00\x00\x011\xff\xff\xff\xff"
    assert be.error_response("08P01", "bad") == (
        b"E\x00\x00\x00\x1fSERROR\x00VERROR\x00C08P01\x00Mbad\x00\x00"
    )
    assert be.negotiate_protocol_version(0, ["_pq_.x"]) == (
        b"v\x00\x00\x00\x13\x00\x03\x00\x00\x00\x00\x00\x01_pq_.x\x00"
    )


def test_ready_for_query() -> None:
    for status in (b"I", b"T", b"E"):
        assert be.parse_ready_for_query(body_of(be.ready_for_query(status), be.READY_FOR_QUERY)) == status
    assert be.parse_ready_for_query(memoryview(b"T")) == b"T"
    for bad in (b"", b"X", b"II"):
        with pytest.raises(ProtocolViolation):
            be.parse_ready_for_query(bad)
    with pytest.raises(ValueError):
        be.ready_for_query(b"X")


def test_authentication_round_trips() -> None:
    assert be.parse_authentication(body_of(be.authentication_ok(), be.AUTHENTICATION)) == (be.AUTH_OK, b"")
    assert be.parse_authentication(body_of(be.authentication_md5(b"salt"), be.AUTHENTICATION)) == (
        be.AUTH_MD5,
        b"salt",
    )
    code, rest = be.parse_authentication(
        body_of(be.authentication_sasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]), be.AUTHENTICATION)
    )
    assert code == be.AUTH_SASL
    assert be.parse_sasl_mechanisms(rest) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    for builder, auth_code in (
        (be.authentication_sasl_continue, be.AUTH_SASL_CONTINUE),
        (be.authentication_sasl_final, be.AUTH_SASL_FINAL),
    ):
        assert be.parse_authentication(body_of(builder(b"r=abc,s=xyz"), be.AUTHENTICATION)) == (
            auth_code,
            b"r=abc,s=xyz",
        )


@pytest.mark.parametrize("rest", [b"", b"\0", b"SCRAM", b"SCRAM\0", b"A\0\0x"])
def test_sasl_mechanisms_malformed(rest: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        be.parse_sasl_mechanisms(rest)


@given(_u32, st.binary(min_size=4, max_size=256))
def test_backend_key_data_round_trip(pid: int, secret: bytes) -> None:
    body = body_of(be.backend_key_data(pid, secret), be.BACKEND_KEY_DATA)
    assert be.parse_backend_key_data(body) == (pid, secret)


@pytest.mark.parametrize("body", [b"", b"\0\0\0\1\0\0\0", b"\0" * 261])
def test_backend_key_data_malformed(body: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        be.parse_backend_key_data(body)


@given(_text, _text)
def test_parameter_status_round_trip(name: str, value: str) -> None:
    body = body_of(be.parameter_status(name, value), be.PARAMETER_STATUS)
    assert be.parse_parameter_status(body) == (name, value)


_extra_codes = st.sampled_from(list("PpqWsctdnFLR"))


@given(
    st.sampled_from([be.error_response, be.notice_response]),
    st.text(alphabet="0123456789ABCDEFP", min_size=5, max_size=5),
    _text,
    st.none() | _text,
    st.none() | _text,
    st.dictionaries(_extra_codes, _text, max_size=4),
)
def test_error_notice_round_trip(
    builder: object,
    code: str,
    message: str,
    detail: str | None,
    hint: str | None,
    extra: dict[str, str],
) -> None:
    msg = builder(code, message, detail=detail, hint=hint, fields=extra)  # type: ignore[operator]
    t, body = split(msg)
    assert t == (be.ERROR_RESPONSE if builder is be.error_response else be.NOTICE_RESPONSE)
    severity = "ERROR" if builder is be.error_response else "NOTICE"
    info = be.error_info(body)
    assert (info.severity, info.code, info.message, info.detail, info.hint) == (
        severity,
        code,
        message,
        detail,
        hint,
    )
    fields = be.parse_error_fields(body)
    assert fields["S"] == fields["V"] == severity
    assert {k: v for k, v in fields.items() if k not in "SVCMDH"} == extra


def test_error_response_severity_and_order() -> None:
    body = body_of(
        be.error_response("57P01", "bye", severity="FATAL", detail="d", hint="h"), be.ERROR_RESPONSE
    )
    assert list(be.parse_error_fields(body)) == ["S", "V", "C", "M", "D", "H"]
    assert be.error_info(body).severity == "FATAL"
    with pytest.raises(ValueError):
        be.error_response("XX000", "x", fields={"M": "dup"})


def test_error_info_prefers_nonlocalized_severity() -> None:
    info = be.error_info(b"SFEHLER\0VERROR\0C42601\0Msyntax\0\0")
    assert info.severity == "ERROR"
    assert be.error_info(b"SERROR\0\0").severity == "ERROR"
    assert be.error_info(b"Mbad \xff\0\0").message == "bad \ufffd"


@pytest.mark.parametrize("body", [b"", b"SERROR\0", b"SERROR", b"SERROR\0\0x", b"S"])
def test_error_fields_malformed(body: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        be.parse_error_fields(body)


_fields = st.builds(
    be.Field,
    name=_text,
    table_oid=_u32,
    column=_i16,
    type_oid=_u32,
    type_size=_i16,
    type_mod=st.integers(-(2**31), 2**31 - 1),
    format=st.integers(0, 1),
)


@given(st.lists(_fields, max_size=10))
def test_row_description_round_trip(fields: list[be.Field]) -> None:
    assert be.parse_row_description(body_of(be.row_description(fields), be.ROW_DESCRIPTION)) == fields


def test_field_defaults_are_text() -> None:
    assert be.Field("x") == be.Field("x", 0, 0, 25, -1, -1, 0)


@given(st.lists(st.none() | st.binary(max_size=40), max_size=20))
def test_data_row_round_trip(values: list[bytes | None]) -> None:
    assert be.parse_data_row(body_of(be.data_row(values), be.DATA_ROW)) == values


def test_data_row_accepts_str() -> None:
    assert be.parse_data_row(body_of(be.data_row(["é", None, b"x"]), be.DATA_ROW)) == [
        "é".encode(),
        None,
        b"x",
    ]


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00", b"\x00\x01", b"\x00\x01\x00\x00\x00\x02a", b"\x00\x01\xff\xff\xff\xfe", b"\x00\x00x"],
)
def test_data_row_malformed(body: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        be.parse_data_row(body)


@given(_text)
def test_command_complete_round_trip(tag: str) -> None:
    assert be.parse_command_complete(body_of(be.command_complete(tag), be.COMMAND_COMPLETE)) == tag


@given(_u32, _text, _text)
def test_notification_round_trip(pid: int, channel: str, payload: str) -> None:
    body = body_of(be.notification_response(pid, channel, payload), be.NOTIFICATION_RESPONSE)
    assert be.parse_notification(body) == (pid, channel, payload)


@given(st.integers(0, 0xFFFF), st.lists(_name, max_size=5))
def test_negotiate_protocol_version_round_trip(minor: int, unsupported: list[str]) -> None:
    body = body_of(be.negotiate_protocol_version(minor, unsupported), be.NEGOTIATE_PROTOCOL_VERSION)
    assert be.parse_negotiate_protocol_version(body) == (minor, unsupported)


def test_negotiate_protocol_version_malformed() -> None:
    with pytest.raises(ProtocolViolation):
        be.parse_negotiate_protocol_version(b"\x00\x04\x00\x00\x00\x00\x00\x00")  # major 4
    with pytest.raises(ProtocolViolation):
        be.parse_negotiate_protocol_version(b"\x00\x03\x00\x00\xff\xff\xff\xff")  # huge count


@given(st.lists(_u32, max_size=20))
def test_parameter_description_round_trip(oids: list[int]) -> None:
    body = body_of(be.parameter_description(oids), be.PARAMETER_DESCRIPTION)
    assert be.parse_parameter_description(body) == oids


@given(
    st.sampled_from(
        [
            (be.copy_in_response, be.COPY_IN_RESPONSE),
            (be.copy_out_response, be.COPY_OUT_RESPONSE),
            (be.copy_both_response, be.COPY_BOTH_RESPONSE),
        ]
    ),
    st.integers(0, 1),
    st.lists(st.integers(0, 1), max_size=10),
)
def test_copy_response_round_trip(kind: tuple[object, int], fmt: int, formats: list[int]) -> None:
    builder, type_byte = kind
    body = body_of(builder(fmt, formats), type_byte)  # type: ignore[operator]
    assert be.parse_copy_response(body) == (fmt, formats)


@given(st.binary(max_size=100))
def test_copy_data_round_trip(data: bytes) -> None:
    assert split(be.copy_data(data)) == (be.COPY_DATA, data)


@given(st.none() | st.binary(max_size=50))
def test_function_call_response_round_trip(value: bytes | None) -> None:
    body = body_of(be.function_call_response(value), be.FUNCTION_CALL_RESPONSE)
    assert be.parse_function_call_response(body) == value
