"""Building the SSLContexts from [general]: which contexts exist for which keys, errors that name
the key and the file, relative paths, and a reload that keeps the old contexts on a bad file."""

from __future__ import annotations

import logging
import shutil
import ssl
from pathlib import Path

import pytest

from pgdog_ev.config import ConfigError, General
from pgdog_ev.tls import NO_TLS, TlsConfigError, build_tls, rebuild_tls
from tests.harness.certs import CertAuthority, Leaf

Pki = tuple[CertAuthority, Leaf, Leaf]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = CertAuthority(str(tmp_path_factory.mktemp("pki")), "context test CA")
    return ca, ca.issue("proxy"), ca.issue("other")


def test_defaults_offer_no_tls_to_clients_and_prefer_towards_servers() -> None:
    tls = build_tls(General())
    assert tls.accept is None and not tls.client_required
    assert tls.connect is not None and tls.verify == "prefer"
    assert tls.connect.verify_mode == ssl.CERT_NONE and not tls.connect.check_hostname
    assert tls.server_mode("127.0.0.1") == "prefer"
    assert tls.server_mode("/var/run/postgresql") == "disabled"  # unix sockets: never TLS


def test_disabled_sends_no_ssl_request() -> None:
    tls = build_tls(General(tls_verify="disabled"))
    assert tls.connect is None and tls.server_mode("db.internal") == "disabled"
    assert NO_TLS.server_mode("x") == "disabled"


def test_certificate_and_verification_modes(pki: Pki) -> None:
    ca, leaf, _ = pki
    general = General(
        tls_certificate=leaf.cert, tls_private_key=leaf.key, tls_client_required=True,
        tls_verify="verify_full", tls_server_ca_certificate=ca.cert,
    )
    tls = build_tls(general)
    assert tls.accept is not None and tls.client_required
    assert tls.accept.verify_mode == ssl.CERT_NONE  # no client CA: no client certificates asked
    assert tls.connect is not None
    assert tls.connect.verify_mode == ssl.CERT_REQUIRED and tls.connect.check_hostname
    verify_ca = build_tls(General(tls_verify="verify_ca", tls_server_ca_certificate=ca.cert)).connect
    assert verify_ca is not None and verify_ca.verify_mode == ssl.CERT_REQUIRED and not verify_ca.check_hostname


def test_client_ca_requires_client_certificates(pki: Pki) -> None:
    ca, leaf, _ = pki
    tls = build_tls(General(tls_certificate=leaf.cert, tls_private_key=leaf.key, tls_client_ca_certificate=ca.cert))
    assert tls.accept is not None and tls.accept.verify_mode == ssl.CERT_REQUIRED


def test_relative_paths_are_anchored_at_the_config_file(pki: Pki, tmp_path: Path) -> None:
    _, leaf, _ = pki
    shutil.copy(leaf.cert, tmp_path / "proxy.crt")
    shutil.copy(leaf.key, tmp_path / "proxy.key")
    config_path = str(tmp_path / "pgdog.toml")
    tls = build_tls(General(tls_certificate="proxy.crt", tls_private_key="proxy.key"), config_path)
    assert tls.accept is not None


@pytest.mark.parametrize(
    ("settings", "key", "text"),
    [
        ({"tls_certificate": "/nonexistent/proxy.crt", "tls_private_key": "KEY"}, "tls_certificate",
         "cannot read '/nonexistent/proxy.crt'"),
        ({"tls_certificate": "CERT", "tls_private_key": "/nonexistent/proxy.key"}, "tls_private_key",
         "cannot read '/nonexistent/proxy.key'"),
        ({"tls_certificate": "CERT"}, "tls_private_key", "is required with tls_certificate"),
        ({"tls_certificate": "GARBAGE", "tls_private_key": "KEY"}, "tls_certificate", "no usable PEM certificate"),
        ({"tls_certificate": "CERT", "tls_private_key": "OTHER_KEY"}, "tls_private_key",
         "not a usable PEM private key"),
        ({"tls_certificate": "CERT", "tls_private_key": "EMPTY"}, "tls_private_key", "is empty"),
        ({"tls_client_required": True}, "tls_client_required", "needs tls_certificate"),
        ({"tls_verify": "verify_ca", "tls_server_ca_certificate": "GARBAGE"}, "tls_server_ca_certificate",
         "no usable PEM certificate"),
        ({"tls_server_certificate": "CERT"}, "tls_server_private_key", "is required with tls_server_certificate"),
    ],
)
def test_errors_name_the_key_and_the_file(
    pki: Pki, tmp_path: Path, settings: dict[str, object], key: str, text: str
) -> None:
    _, leaf, other = pki
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    files = {"CERT": leaf.cert, "KEY": leaf.key, "OTHER_KEY": other.key, "GARBAGE": str(garbage), "EMPTY": str(empty)}
    values = {k: files.get(v, v) if isinstance(v, str) else v for k, v in settings.items()}
    with pytest.raises(TlsConfigError) as info:
        build_tls(General(**values), "/etc/pgdog/pgdog.toml")
    error = info.value
    assert isinstance(error, ConfigError)
    assert error.key == key and error.table == "[general]" and error.file == "/etc/pgdog/pgdog.toml"
    assert text in str(error) and key in str(error)


def test_reload_with_a_bad_file_keeps_the_old_contexts(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, leaf, _ = pki
    good = build_tls(General(tls_certificate=leaf.cert, tls_private_key=leaf.key))
    missing = str(tmp_path / "gone.crt")
    with caplog.at_level(logging.ERROR, logger="pgdog_ev.tls"):
        kept = rebuild_tls(good, General(tls_certificate=missing, tls_private_key=leaf.key), "pgdog.toml")
    assert kept is good
    (record,) = caplog.records
    assert "tls_certificate" in record.getMessage() and missing in record.getMessage()
    # A good reload builds new contexts (new files are read again).
    fresh = rebuild_tls(good, General(tls_certificate=leaf.cert, tls_private_key=leaf.key))
    assert fresh is not good and fresh.accept is not good.accept
