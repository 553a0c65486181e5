"""Property tests: arbitrary input only ever raises AuthFailed/AuthProtocolError."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgdog_ev.auth import AuthFailed, ScramClient, ScramServer, ScramVerifier

VERIFIER = ScramVerifier.from_password("pw", b"0123456789abcdef", 4096)
CB = hashlib.sha256(b"cert").digest()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def entropy(n: int) -> bytes:
    return bytes(range(n))


def attr_soup() -> st.SearchStrategy[bytes]:
    """Messages that look like SCRAM attribute lists, to get past the first checks."""
    b64 = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
    value = st.one_of(
        st.text(max_size=12), b64, st.sampled_from(["biws", "eSws", "4096", "tls-server-end-point"])
    )
    name = st.sampled_from(["n", "y", "p", "a", "m", "r", "s", "i", "c", "v", "e", "x", "", "1"])
    field = st.one_of(st.tuples(name, value).map(lambda t: f"{t[0]}={t[1]}"), st.sampled_from(["", "n", "y"]))
    return st.lists(field, max_size=7).map(lambda fs: ",".join(fs).encode("utf-8", "surrogatepass"))


def messages() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), attr_soup())


def only_auth_errors(fn: Callable[[], object]) -> None:
    try:
        fn()
    except AuthFailed:
        pass


@SETTINGS
@given(
    data=messages(),
    cb=st.sampled_from([None, CB]),
    mech=st.sampled_from([None, "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "x"]),
)
def test_server_client_first_fuzz(data: bytes, cb: bytes | None, mech: str | None) -> None:
    server = ScramServer(VERIFIER, entropy, channel_binding=cb)
    only_auth_errors(lambda: server.client_first(data, mech))


@SETTINGS
@given(
    first=st.sampled_from([b"n,,n=,r=abc", b"y,,n=,r=abc", b"p=tls-server-end-point,,n=,r=abc"]),
    data=messages(),
)
def test_server_client_final_fuzz(first: bytes, data: bytes) -> None:
    server = ScramServer(VERIFIER, entropy, channel_binding=CB if first.startswith(b"p") else None)
    server.client_first(first)
    only_auth_errors(lambda: server.client_final(data))
    assert not server.authenticated


@SETTINGS
@given(data=messages(), cb=st.sampled_from([None, CB]))
def test_client_server_first_fuzz(data: bytes, cb: bytes | None) -> None:
    client = ScramClient("pw", entropy, channel_binding=cb, nonce="a", max_iterations=64)
    client.client_first()
    only_auth_errors(lambda: client.server_first(data))


@SETTINGS
@given(data=messages())
def test_client_server_final_fuzz(data: bytes) -> None:
    client = ScramClient("pw", entropy, nonce="a")
    client.client_first()
    client.server_first(b"r=ab,s=c2FsdA==,i=1")
    only_auth_errors(lambda: client.server_final(data))
    assert not client.authenticated


@SETTINGS
@given(pos=st.integers(min_value=0, max_value=200), byte=st.integers(min_value=0, max_value=255))
def test_mutated_client_final_rejected_unless_equivalent(pos: int, byte: int) -> None:
    server = ScramServer(VERIFIER, entropy)
    client = ScramClient("pw", entropy)
    c2 = bytearray(client.server_first(server.client_first(client.client_first())))
    pos %= len(c2)
    if c2[pos] == byte:
        return
    original = bytes(c2)
    c2[pos] = byte
    try:
        server.client_final(bytes(c2))
    except AuthFailed:
        return
    # Base64 decoding (like PostgreSQL's) ignores non-zero trailing bits, so
    # the only acceptable mutation is one that decodes to the same proof.
    head, _, proof = bytes(c2).rpartition(b",p=")
    orig_head, _, orig_proof = original.rpartition(b",p=")
    assert head == orig_head
    assert base64.b64decode(proof) == base64.b64decode(orig_proof)
