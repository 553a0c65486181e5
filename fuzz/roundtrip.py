"""Decode one message body with the codec's parser for its type, then build it again.

The parsers are the proxy's only view into untrusted bodies: they must either return a value or
raise ProtocolViolation. Where the codec also has a builder for the type, building the parsed
value must give back the very bytes that came in; a lossy or lenient parser would make the proxy
act on something other than what the peer sent.
"""

from __future__ import annotations

from collections.abc import Callable

from fuzz.oracle import check
from pgdog_ev.wire import backend as be
from pgdog_ev.wire import frontend as fe
from pgdog_ev.wire.errors import ProtocolViolation
from pgdog_ev.wire.framing import build

Rebuild = Callable[[bytes], bytes]


def _auth(body: bytes) -> bytes:
    code, rest = be.parse_authentication(body)
    if code == be.AUTH_SASL:
        return be.authentication_sasl(be.parse_sasl_mechanisms(rest))
    return build(be.AUTHENTICATION, code.to_bytes(4, "big") + rest)


def _error(body: bytes) -> bytes | None:
    be.error_info(body)
    return None  # the builders put fields in a fixed order: no byte-exact rebuild


FRONTEND: dict[int, Callable[[bytes], bytes | None]] = {
    fe.QUERY: lambda b: fe.query(fe.parse_query(b)),
    fe.PARSE: lambda b: (lambda p: fe.parse(p.name, p.sql, p.param_types))(fe.parse_parse(b)),
    fe.BIND: lambda b: (
        lambda m: fe.bind(m.portal, m.statement, m.param_formats, m.params, m.result_formats)
    )(fe.parse_bind(b)),
    fe.DESCRIBE: lambda b: (lambda d: fe.describe(d.kind, d.name))(fe.parse_describe(b)),
    fe.CLOSE: lambda b: (lambda c: fe.close(c.kind, c.name))(fe.parse_close(b)),
    fe.EXECUTE: lambda b: (lambda e: fe.execute(e.portal, e.max_rows))(fe.parse_execute(b)),
    fe.COPY_FAIL: lambda b: fe.copy_fail(fe.parse_copy_fail(b)),
    fe.COPY_DATA: fe.copy_data,
    fe.FUNCTION_CALL: lambda b: (
        lambda f: fe.function_call(f.oid, f.arg_formats, f.args, f.result_format)
    )(fe.parse_function_call(b)),
    fe.PASSWORD: lambda b: fe.password(fe.parse_password(b)),
    fe.SYNC: lambda b: fe.sync() if not b else None,
    fe.FLUSH: lambda b: fe.flush() if not b else None,
    fe.TERMINATE: lambda b: fe.terminate() if not b else None,
    fe.COPY_DONE: lambda b: fe.copy_done() if not b else None,
}

BACKEND: dict[int, Callable[[bytes], bytes | None]] = {
    be.AUTHENTICATION: _auth,
    be.BACKEND_KEY_DATA: lambda b: be.backend_key_data(*be.parse_backend_key_data(b)),
    be.PARAMETER_STATUS: lambda b: be.parameter_status(*be.parse_parameter_status(b)),
    be.READY_FOR_QUERY: lambda b: be.ready_for_query(be.parse_ready_for_query(b)),
    be.ERROR_RESPONSE: _error,
    be.NOTICE_RESPONSE: _error,
    be.ROW_DESCRIPTION: lambda b: be.row_description(be.parse_row_description(b)),
    be.DATA_ROW: lambda b: be.data_row(be.parse_data_row(b)),
    be.COMMAND_COMPLETE: lambda b: be.command_complete(be.parse_command_complete(b)),
    be.NOTIFICATION_RESPONSE: lambda b: be.notification_response(*be.parse_notification(b)),
    be.NEGOTIATE_PROTOCOL_VERSION: lambda b: be.negotiate_protocol_version(
        *be.parse_negotiate_protocol_version(b)
    ),
    be.PARAMETER_DESCRIPTION: lambda b: be.parameter_description(be.parse_parameter_description(b)),
    be.COPY_IN_RESPONSE: lambda b: be.copy_in_response(*be.parse_copy_response(b)),
    be.COPY_OUT_RESPONSE: lambda b: be.copy_out_response(*be.parse_copy_response(b)),
    be.COPY_BOTH_RESPONSE: lambda b: be.copy_both_response(*be.parse_copy_response(b)),
    be.COPY_DATA: be.copy_data,
    be.FUNCTION_CALL_RESPONSE: lambda b: be.function_call_response(be.parse_function_call_response(b)),
}

# Messages whose parser is only reached in one state ('p' is also SASL; a Bind is often read
# for its statement name alone): parsed besides the main parser, no rebuild.
FRONTEND_EXTRA: dict[int, tuple[Callable[[bytes], object], ...]] = {
    fe.PASSWORD: (fe.parse_sasl_initial_response, fe.parse_sasl_response),
    fe.BIND: (fe.statement_name_of_bind,),
}


def check_message(mtype: int, body: bytes, table: dict[int, Callable[[bytes], bytes | None]],
                  extra: dict[int, tuple[Callable[[bytes], object], ...]]) -> None:
    for parser in extra.get(mtype, ()):
        for kind in (bytes, bytearray, memoryview):
            try:
                parser(kind(body))
            except ProtocolViolation:
                pass
    rebuild = table.get(mtype)
    if rebuild is None:
        return
    try:
        again = rebuild(body)
    except ProtocolViolation as exc:
        check(exc.sqlstate and str(exc), "a ProtocolViolation without SQLSTATE or message")
        return
    if again is not None:
        check(again == build(mtype, body), f"{chr(mtype)!r}: rebuilt message differs from the input")


def check_statement_name(body: bytes) -> None:
    """The hot path reads only a Bind's statement name: it must agree with the full parse."""
    try:
        full = fe.parse_bind(body)
    except ProtocolViolation:
        return
    check(fe.statement_name_of_bind(body) == full.statement, "statement_name_of_bind disagrees with parse_bind")
