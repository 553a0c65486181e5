"""Arbitrary bytes into every parser: success or ProtocolViolation, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire import startup
from pgdog_ev.wire.errors import ProtocolViolation

PARSERS: list[Callable[[bytes], object]] = [
    fe.parse_query,
    fe.parse_parse,
    fe.parse_bind,
    fe.statement_name_of_bind,
    fe.parse_describe,
    fe.parse_execute,
    fe.parse_close,
    fe.parse_copy_fail,
    fe.parse_function_call,
    fe.parse_password,
    fe.parse_sasl_initial_response,
    fe.parse_sasl_response,
    be.parse_authentication,
    be.parse_sasl_mechanisms,
    be.parse_backend_key_data,
    be.parse_parameter_status,
    be.parse_ready_for_query,
    be.parse_error_fields,
    be.error_info,
    be.parse_row_description,
    be.parse_data_row,
    be.parse_command_complete,
    be.parse_notification,
    be.parse_negotiate_protocol_version,
    be.parse_parameter_description,
    be.parse_copy_response,
    be.parse_function_call_response,
    startup.parse_startup,
    startup.startup_length,
]

# Bodies biased towards plausible structure (small counts, NULs, -1 lengths)
# so that parsers get past their first field often enough to matter.
_atoms = st.sampled_from(
    [b"\0", b"\0\0", b"\0\x01", b"\0\x02", b"\xff\xff\xff\xff", b"\0\0\0\x01", b"S", b"P", b"ab", b"\xff"]
)
_bodies = st.binary(max_size=64) | st.lists(_atoms, max_size=16).map(b"".join)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: f"{p.__module__.rsplit('.', 1)[-1]}.{p.__name__}")
@settings(max_examples=300)
@given(body=_bodies, kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_only_protocol_violation(parser: Callable[[bytes], object], body: bytes, kind: type) -> None:
    try:
        parser(kind(body))
    except ProtocolViolation as exc:
        assert exc.sqlstate
        assert str(exc)
