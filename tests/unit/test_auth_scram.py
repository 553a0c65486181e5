"""SCRAM-SHA-256: RFC 7677 vector, PostgreSQL-generated secrets, exchanges."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest

from pgdog_ev.auth import (
    AuthFailed,
    AuthProtocolError,
    ScramClient,
    ScramServer,
    ScramVerifier,
    make_verifier,
    salted_password,
    verify_plain_password,
)
from pgdog_ev.auth import scram as scram_mod

# RFC 7677 section 3.
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

# Secrets produced by PostgreSQL 15.18 (CREATE ROLE ... PASSWORD with
# password_encryption=scram-sha-256), read back from pg_authid.
PG15_SECRETS: list[tuple[str, str]] = [
    (
        "correct horse battery staple",
        "SCRAM-SHA-256$4096:XIvxVJTLeDE+p+mrySsFOg==$YoLw8FM+DhiIpIuTswT+5wihxzi6P5rZxN0PDsMhDFY="
        ":/cZLxKfnMmpGGvV5fWMWtCzqdJCIgZ/EKh8ZQ11C/bA=",
    ),
    # Non-ASCII, SASLprep maps U+2168 to "IX" via NFKC.
    (
        "p\u00e4ssw\u00f6r\u2168",
        "SCRAM-SHA-256$4096:fHY9qfjZYijhQCpDrNsQ/w==$exjOhacid0JTqA6XMcq+k1yvTbrjikx4/YdXp301Ogw="
        ":aGwPdvAa20IjGyF1gp9nbP8OIgqs5+/eS8SWj1h97vo=",
    ),
    (
        "\u2168",
        "SCRAM-SHA-256$4096:61zVyDTB0CQDGutQHqXQLQ==$wLniN5GydUHbxCqSMhVY8V8x/qB7wTKBlSfWnSmX5/A="
        ":blGyNZvhCir2scE2r1rd8kbHDF30LiqJVYKj+cciHq0=",
    ),
    # Soft hyphen is mapped to nothing.
    (
        "I\u00adX",
        "SCRAM-SHA-256$4096:8XZxDEp9ilFa8Y4Wn6COmA==$8FYiQog9gdfJezN9N0qOdLCyxC7JJYSr+Q3UrgDsTlM="
        ":JIzPx5P+2LDML6vRZbuM+0ZGVu2f+UP10+hmgAWSSw8=",
    ),
    # SASLprep fails (BEL is prohibited) -> PostgreSQL uses the raw bytes.
    (
        "\u00e9\u0007x",
        "SCRAM-SHA-256$4096:qwkBsrLhv/y+8AYSnIOhWw==$miLnO/QO8/ApAgdoWnZTcdYNQSDLQooaBnDkGFab7Wk="
        ":gRBFo+z92KAoul9od0o7fA/i+DAwb6w4PFzSqrPqQOk=",
    ),
    # Maps to the empty string -> prohibited -> raw bytes.
    (
        "\u00ad",
        "SCRAM-SHA-256$4096:oGAsuEMkdub0PnqUZihmUw==$WriJi72+HQpyCPQHC0RJSzVfSyGU4v0Uqqz54yoi+dg="
        ":r0Wz8PwG03r7JVb4UPedtQFMbEX6ua6WdDVhXMCTN6k=",
    ),
]


def counter_entropy(seed: int = 0) -> Callable[[int], bytes]:
    """Deterministic entropy source, as the simulator would inject."""
    state = {"n": seed}

    def entropy(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(state["n"].to_bytes(8, "big")).digest()
            state["n"] += 1
        return out[:n]

    return entropy


def fixed_entropy(data: bytes) -> Callable[[int], bytes]:
    def entropy(n: int) -> bytes:
        assert n == len(data)
        return data

    return entropy


def exchange(
    server: ScramServer, client: ScramClient, mechanism: str | None = None
) -> tuple[bytes, bytes, bytes, bytes]:
    c1 = client.client_first()
    s1 = server.client_first(c1, mechanism)
    c2 = client.server_first(s1)
    s2 = server.client_final(c2)
    client.server_final(s2)
    return c1, s1, c2, s2


# ---------------------------------------------------------------- RFC 7677


def test_rfc7677_client_reproduces_messages() -> None:
    client = ScramClient("pencil", counter_entropy(), username="user", nonce=RFC_CLIENT_NONCE)
    assert client.client_first() == RFC_CLIENT_FIRST
    assert client.server_first(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.server_final(RFC_SERVER_FINAL)
    assert client.authenticated


def test_rfc7677_server_reproduces_messages() -> None:
    verifier = ScramVerifier.from_password("pencil", RFC_SALT, 4096)
    server = ScramServer(verifier, counter_entropy(), nonce=RFC_SERVER_NONCE)
    assert server.mechanisms() == ["SCRAM-SHA-256"]
    # RFC sends n=user; PostgreSQL ignores the name, so it must be accepted.
    assert server.client_first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.client_final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.authenticated
    assert server.client_key is not None
    assert hashlib.sha256(server.client_key).digest() == verifier.stored_key


def test_rfc7677_client_and_server_together() -> None:
    verifier = ScramVerifier.from_password("pencil", RFC_SALT, 4096)
    server = ScramServer(verifier, counter_entropy(), nonce=RFC_SERVER_NONCE)
    client = ScramClient("pencil", counter_entropy(), username="user", nonce=RFC_CLIENT_NONCE)
    assert exchange(server, client) == (
        RFC_CLIENT_FIRST,
        RFC_SERVER_FIRST,
        RFC_CLIENT_FINAL,
        RFC_SERVER_FINAL,
    )


def test_rfc7677_parameters_postgres_flavour_empty_username() -> None:
    """PG clients send "n=,"; the proof then differs from the RFC's (different AuthMessage)."""
    verifier = ScramVerifier.from_password("pencil", RFC_SALT, 4096)
    server = ScramServer(verifier, counter_entropy(), nonce=RFC_SERVER_NONCE)
    client = ScramClient("pencil", counter_entropy(), nonce=RFC_CLIENT_NONCE)
    c1, s1, c2, s2 = exchange(server, client)
    assert c1 == b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"
    assert s1 == RFC_SERVER_FIRST
    assert c2.startswith(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=")
    assert c2 != RFC_CLIENT_FINAL
    assert s2 != RFC_SERVER_FINAL
    assert client.authenticated and server.authenticated


def test_rfc7677_verifier_string_roundtrip() -> None:
    verifier = ScramVerifier.from_password("pencil", RFC_SALT, 4096)
    s = verifier.to_string()
    assert s.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    assert ScramVerifier.parse(s) == verifier
    # Recompute the keys by the RFC 5802 formulas, independently.
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", RFC_SALT, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert verifier.stored_key == hashlib.sha256(client_key).digest()
    assert verifier.server_key == hmac.new(salted, b"Server Key", hashlib.sha256).digest()


# -------------------------------------------------------- PostgreSQL secrets


@pytest.mark.parametrize(("password", "secret"), PG15_SECRETS)
def test_postgres_generated_secret_verifies(password: str, secret: str) -> None:
    verifier = ScramVerifier.parse(secret)
    assert verifier.iterations == 4096
    assert verifier.to_string() == secret
    assert verify_plain_password(password, verifier)
    assert not verify_plain_password(password + "x", verifier)
    assert ScramVerifier.from_password(password, verifier.salt, verifier.iterations) == verifier
    server = ScramServer(verifier, counter_entropy(1))
    exchange(server, ScramClient(password, counter_entropy(2)))
    assert server.authenticated


def test_nfkc_equivalent_passwords_share_a_secret() -> None:
    verifier = ScramVerifier.parse(PG15_SECRETS[2][1])  # password "\u2168"
    assert verify_plain_password("IX", verifier)


# ------------------------------------------------------------- exchanges


def test_full_exchange_right_password() -> None:
    verifier = ScramVerifier.from_password("hunter2", b"0123456789abcdef")
    server = ScramServer(verifier, counter_entropy(10))
    client = ScramClient("hunter2", counter_entropy(20))
    assert client.mechanism == "SCRAM-SHA-256"
    exchange(server, client, client.mechanism)
    assert server.authenticated and client.authenticated


def test_full_exchange_wrong_password() -> None:
    verifier = ScramVerifier.from_password("hunter2", b"0123456789abcdef")
    server = ScramServer(verifier, counter_entropy(10))
    client = ScramClient("hunter3", counter_entropy(20))
    s1 = server.client_first(client.client_first())
    c2 = client.server_first(s1)
    with pytest.raises(AuthFailed, match="password authentication failed") as exc:
        server.client_final(c2)
    assert type(exc.value) is AuthFailed
    assert "hunter" not in str(exc.value)
    assert not server.authenticated
    assert server.client_key is None
    # The exchange is dead afterwards.
    with pytest.raises(AuthProtocolError):
        server.client_final(c2)


def test_server_nonce_is_18_bytes_of_entropy_base64() -> None:
    raw = bytes(range(18))
    verifier = ScramVerifier.from_password("pw", b"salt")
    server = ScramServer(verifier, fixed_entropy(raw))
    s1 = server.client_first(b"n,,n=,r=abc")
    assert s1 == b"r=abc" + base64.b64encode(raw) + b",s=" + base64.b64encode(b"salt") + b",i=4096"


def test_client_nonce_is_18_bytes_of_entropy_base64() -> None:
    raw = bytes(range(100, 118))
    client = ScramClient("pw", fixed_entropy(raw))
    assert client.client_first() == b"n,,n=,r=" + base64.b64encode(raw)


def test_deterministic_with_seeded_entropy() -> None:
    verifier = ScramVerifier.from_password("pw", b"salty")
    runs = [
        exchange(ScramServer(verifier, counter_entropy(5)), ScramClient("pw", counter_entropy(6)))
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_bad_server_signature_rejected() -> None:
    verifier = ScramVerifier.from_password("pw", b"salty")
    server = ScramServer(verifier, counter_entropy(1))
    client = ScramClient("pw", counter_entropy(2))
    c2 = client.server_first(server.client_first(client.client_first()))
    s2 = server.client_final(c2)
    forged = b"v=" + base64.b64encode(bytes(32))
    assert forged != s2
    with pytest.raises(AuthFailed, match="server signature"):
        client.server_final(forged)
    assert not client.authenticated


def test_server_error_attribute_rejected() -> None:
    client = ScramClient("pw", counter_entropy(2))
    first = client.client_first()
    nonce = first.split(b"r=")[1]
    client.server_first(b"r=" + nonce + b"XYZ,s=" + base64.b64encode(b"salt") + b",i=4096")
    with pytest.raises(AuthFailed, match="invalid-proof"):
        client.server_final(b"e=invalid-proof")


def test_client_rejects_nonce_not_extending_ours() -> None:
    client = ScramClient("pw", counter_entropy(2), nonce="abc")
    client.client_first()
    with pytest.raises(AuthProtocolError, match="nonce"):
        client.server_first(b"r=abd123,s=c2FsdA==,i=4096")
    client = ScramClient("pw", counter_entropy(2), nonce="abc")
    client.client_first()
    with pytest.raises(AuthProtocolError, match="nonce"):
        client.server_first(b"r=abc,s=c2FsdA==,i=4096")


def test_client_refuses_huge_iteration_count() -> None:
    client = ScramClient("pw", counter_entropy(2), nonce="abc", max_iterations=10_000)
    client.client_first()
    with pytest.raises(AuthProtocolError, match="iteration"):
        client.server_first(b"r=abcd,s=c2FsdA==,i=10001")


@pytest.mark.parametrize(
    "msg",
    [
        b"r=abcd,s=c2FsdA==,i=0",
        b"r=abcd,s=c2FsdA==,i=-1",
        b"r=abcd,s=c2FsdA==,i=",
        b"r=abcd,s=,i=4096",
        b"r=abcd,s=c2FsdA=,i=4096",
        b"r=abcd,i=4096,s=c2FsdA==",
        b"m=ext,r=abcd,s=c2FsdA==,i=4096",
        b"s=c2FsdA==,r=abcd,i=4096",
        b"r=abcd,s=c2FsdA==",
    ],
)
def test_client_rejects_malformed_server_first(msg: bytes) -> None:
    client = ScramClient("pw", counter_entropy(2), nonce="abc")
    client.client_first()
    with pytest.raises(AuthProtocolError):
        client.server_first(msg)


def test_client_accepts_server_first_extensions() -> None:
    client = ScramClient("pw", counter_entropy(2), nonce="abc")
    client.client_first()
    assert client.server_first(b"r=abcd,s=c2FsdA==,i=1,x=whatever").startswith(b"c=biws,r=abcd,p=")


# --------------------------------------------------------- channel binding

CB = hashlib.sha256(b"server certificate DER").digest()


def test_channel_binding_plus_exchange() -> None:
    verifier = ScramVerifier.from_password("pw", b"salty")
    server = ScramServer(verifier, counter_entropy(1), channel_binding=CB)
    assert server.mechanisms() == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    client = ScramClient("pw", counter_entropy(2), channel_binding=CB)
    assert client.mechanism == "SCRAM-SHA-256-PLUS"
    c1, _, c2, _ = exchange(server, client, client.mechanism)
    assert c1.startswith(b"p=tls-server-end-point,,n=,r=")
    assert c2.startswith(b"c=" + base64.b64encode(b"p=tls-server-end-point,," + CB) + b",")
    assert server.authenticated and client.authenticated


def test_channel_binding_mismatch_fails() -> None:
    verifier = ScramVerifier.from_password("pw", b"salty")
    server = ScramServer(verifier, counter_entropy(1), channel_binding=CB)
    client = ScramClient("pw", counter_entropy(2), channel_binding=b"x" * 32)
    c2 = client.server_first(server.client_first(client.client_first(), client.mechanism))
    with pytest.raises(AuthFailed, match="channel binding"):
        server.client_final(c2)


def test_plain_client_on_tls_server_is_fine() -> None:
    verifier = ScramVerifier.from_password("pw", b"salty")
    server = ScramServer(verifier, counter_entropy(1), channel_binding=CB)
    exchange(server, ScramClient("pw", counter_entropy(2)), "SCRAM-SHA-256")
    assert server.authenticated


def test_p_flag_rejected_without_channel_binding() -> None:
    server = ScramServer(ScramVerifier.from_password("pw", b"salty"), counter_entropy(1))
    assert server.mechanisms() == ["SCRAM-SHA-256"]
    with pytest.raises(AuthProtocolError):
        server.client_first(b"p=tls-server-end-point,,n=,r=abc")


def test_y_flag_accepted_only_when_plus_not_offered() -> None:
    verifier = ScramVerifier.from_password("pw", b"salty")
    server = ScramServer(verifier, counter_entropy(1))
    s1 = server.client_first(b"y,,n=,r=abc").decode()
    # With y, the c= attribute must be base64("y,,") == "eSws".
    salted = salted_password("pw", b"salty", 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    without_proof = f"c=eSws,{s1.split(',')[0]}"
    auth = f"n=,r=abc,{s1},{without_proof}".encode()
    sig = hmac.new(hashlib.sha256(client_key).digest(), auth, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig, strict=True))
    server.client_final(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
    assert server.authenticated

    tls_server = ScramServer(verifier, counter_entropy(1), channel_binding=CB)
    with pytest.raises(AuthFailed, match="negotiation"):
        tls_server.client_first(b"y,,n=,r=abc")


def test_n_flag_with_y_cbind_attribute_rejected() -> None:
    server = ScramServer(ScramVerifier.from_password("pw", b"salty"), counter_entropy(1))
    s1 = server.client_first(b"n,,n=,r=abc")
    nonce = s1.split(b",")[0][2:]
    with pytest.raises(AuthProtocolError):
        server.client_final(b"c=eSws,r=" + nonce + b",p=" + base64.b64encode(bytes(32)))


@pytest.mark.parametrize(
    ("mechanism", "first", "cb"),
    [
        ("SCRAM-SHA-256-PLUS", b"n,,n=,r=abc", CB),
        ("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc", CB),
        ("SCRAM-SHA-256-PLUS", b"n,,n=,r=abc", None),
        ("SCRAM-SHA-1", b"n,,n=,r=abc", None),
    ],
)
def test_mechanism_flag_cross_check(mechanism: str, first: bytes, cb: bytes | None) -> None:
    server = ScramServer(ScramVerifier.from_password("pw", b"salty"), counter_entropy(1), channel_binding=cb)
    with pytest.raises(AuthProtocolError):
        server.client_first(first, mechanism)


def test_unsupported_cbind_type_rejected() -> None:
    server = ScramServer(ScramVerifier.from_password("pw", b"salty"), counter_entropy(1), channel_binding=CB)
    with pytest.raises(AuthProtocolError):
        server.client_first(b"p=tls-unique,,n=,r=abc")


# ----------------------------------------------------- server-side parsing


@pytest.mark.parametrize(
    "msg",
    [
        b"",
        b"n",
        b"n,",
        b"n,,",
        b"x,,n=,r=abc",
        b"n,a=admin,n=,r=abc",
        b"n,junk,n=,r=abc",
        b"n,,m=ext,n=,r=abc",
        b"n,,r=abc,n=",
        b"n,,n=,r=",
        b"n,,n=,r=ab c\x7f",
        b"n,,n=,r=abc,1=x",
        b"n,,n=,r=abc,",
        b"n,,n=\x00,r=abc",
        b"n,,n=\xff,r=abc",
        b"n,,n=",
    ],
)
def test_server_rejects_malformed_client_first(msg: bytes) -> None:
    server = ScramServer(ScramVerifier.from_password("pw", b"salty"), counter_entropy(1))
    with pytest.raises(AuthProtocolError):
        server.client_first(msg)


def test_server_accepts_client_first_extensions_and_any_username() -> None:
    server = ScramServer(ScramVerifier.from_password("pw", b"salty"), counter_entropy(1))
    assert server.client_first(b"n,,n=some=user,r=abc,x=ext").startswith(b"r=abc")


def _server_after_first() -> tuple[ScramServer, str]:
    server = ScramServer(ScramVerifier.from_password("pw", b"salty"), counter_entropy(1))
    s1 = server.client_first(b"n,,n=,r=abc").decode()
    return server, s1.split(",")[0][2:]


def test_server_client_final_malformed_variants() -> None:
    proof = base64.b64encode(bytes(32)).decode()
    cases = [
        "",
        "c=biws",
        "r={n},c=biws,p={p}",
        "c=biws,r={n}",
        "c=biws,r={n}x,p={p}",
        "c=biws,r=abc,p={p}",
        "c=bi!s,r={n},p={p}",
        "c=biw,r={n},p={p}",
        "c=cCws,r={n},p={p}",
        "c=biws,r={n},p={p},x=1",
        "c=biws,r={n},p=AAAA",
        "c=biws,r={n},p=####",
        "c=biws,r={n},1=x,p={p}",
    ]
    for case in cases:
        server, nonce = _server_after_first()
        with pytest.raises(AuthProtocolError):
            server.client_final(case.format(n=nonce, p=proof).encode())


def test_server_client_final_extension_before_proof_allowed() -> None:
    server, nonce = _server_after_first()
    # Well-formed, but the proof is wrong.
    msg = f"c=biws,r={nonce},x=ext,p={base64.b64encode(bytes(32)).decode()}"
    with pytest.raises(AuthFailed) as exc:
        server.client_final(msg.encode())
    assert type(exc.value) is AuthFailed


def test_out_of_order_calls() -> None:
    server = ScramServer(ScramVerifier.from_password("pw", b"salty"), counter_entropy(1))
    with pytest.raises(AuthProtocolError):
        server.client_final(b"c=biws,r=abc,p=AAAA")
    client = ScramClient("pw", counter_entropy(1))
    with pytest.raises(AuthProtocolError):
        client.server_first(b"r=abc,s=c2FsdA==,i=4096")
    client = ScramClient("pw", counter_entropy(1))
    client.client_first()
    with pytest.raises(AuthProtocolError):
        client.client_first()
    client = ScramClient("pw", counter_entropy(1))
    client.client_first()
    with pytest.raises(AuthProtocolError):
        client.server_final(b"v=AAAA")


# ------------------------------------------------------------ unknown user


def test_unknown_user_uses_fake_salt_and_fails() -> None:
    seed = b"secret-mock-nonce" + b"mallory"
    server = ScramServer.for_unknown_user(seed, counter_entropy(1))
    assert server.mechanisms() == ["SCRAM-SHA-256"]
    s1 = server.client_first(b"n,,n=,r=abc")
    expected_salt = hashlib.sha256(seed).digest()[:16]
    assert s1.endswith(b",s=" + base64.b64encode(expected_salt) + b",i=4096")
    # Shape is identical to a real role's server-first-message.
    real = ScramServer(ScramVerifier.from_password("pw", expected_salt), counter_entropy(1))
    assert real.client_first(b"n,,n=,r=abc") == s1
    nonce = s1.split(b",")[0][2:]
    with pytest.raises(AuthFailed, match="password authentication failed"):
        server.client_final(b"c=biws,r=" + nonce + b",p=" + base64.b64encode(bytes(32)))
    assert not server.authenticated


def test_unknown_user_salt_is_stable_and_seed_dependent() -> None:
    def salt_of(seed: bytes) -> bytes:
        s1 = ScramServer.for_unknown_user(seed, counter_entropy(1)).client_first(b"n,,n=,r=abc")
        return s1.split(b",s=")[1]

    assert salt_of(b"k" + b"alice") == salt_of(b"k" + b"alice")
    assert salt_of(b"k" + b"alice") != salt_of(b"k" + b"bob")


def test_unknown_user_fails_with_any_password() -> None:
    server = ScramServer.for_unknown_user(b"seed", counter_entropy(1))
    client = ScramClient("whatever", counter_entropy(2))
    c2 = client.server_first(server.client_first(client.client_first()))
    with pytest.raises(AuthFailed, match="password authentication failed"):
        server.client_final(c2)


def test_doomed_server_rejects_even_matching_verifier_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ScramServer.for_unknown_user(b"seed", counter_entropy(1))
    # Replace the fake secret by one derived from a known password: the
    # proof is now valid, and the doomed flag alone must refuse it.
    salt = hashlib.sha256(b"seed").digest()[:16]
    monkeypatch.setattr(server, "_verifier", ScramVerifier.from_password("pw", salt))
    client = ScramClient("pw", counter_entropy(2))
    c2 = client.server_first(server.client_first(client.client_first()))
    with pytest.raises(AuthFailed):
        server.client_final(c2)


# ---------------------------------------------------------- verifier/misc


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "md5abc",
        "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 44,
        "SCRAM-SHA-1$4096:c2FsdA==$" + base64.b64encode(bytes(32)).decode() * 2,
        "SCRAM-SHA-256$abc:c2FsdA==${k}:{k}",
        "SCRAM-SHA-256$0:c2FsdA==${k}:{k}",
        "SCRAM-SHA-256$-1:c2FsdA==${k}:{k}",
        "SCRAM-SHA-256$4096:${k}:{k}",
        "SCRAM-SHA-256$4096:c2FsdA=${k}:{k}",
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:{k}",
        "SCRAM-SHA-256$4096:c2FsdA==${k}",
        "SCRAM-SHA-256$4096:c2FsdA==${k}:{k}$",
        "SCRAM-SHA-256$4096:c2FsdA==${k}:{k}:{k}",
        "SCRAM-SHA-256$\u0664096:c2FsdA==${k}:{k}",
    ],
)
def test_verifier_parse_rejects(bad: str) -> None:
    k = base64.b64encode(bytes(32)).decode()
    with pytest.raises(ValueError):
        ScramVerifier.parse(bad.replace("{k}", k))


def test_make_verifier_uses_16_bytes_of_entropy() -> None:
    salt = bytes(range(16))
    s = make_verifier("hunter2", fixed_entropy(salt))
    v = ScramVerifier.parse(s)
    assert v.salt == salt and v.iterations == 4096
    assert verify_plain_password("hunter2", v)
    assert make_verifier("hunter2", fixed_entropy(salt), iterations=10).startswith("SCRAM-SHA-256$10:")


def test_salted_password_is_cached() -> None:
    scram_mod._salted_password_cached.cache_clear()
    a = salted_password("cache-me", b"salt-1", 4096)
    b = salted_password("cache-me", b"salt-1", 4096)
    info = scram_mod._salted_password_cached.cache_info()
    assert a == b and info.hits >= 1 and info.misses == 1
    assert a == hashlib.pbkdf2_hmac("sha256", b"cache-me", b"salt-1", 4096)


def test_entropy_of_wrong_length_is_rejected() -> None:
    client = ScramClient("pw", lambda n: b"short")
    with pytest.raises(ValueError):
        client.client_first()
