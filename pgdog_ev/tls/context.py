"""The SSLContexts of the proxy, built from ``[general]``'s ``tls_*`` keys.

Two contexts: ``accept`` for clients connecting to the proxy (we are the TLS server) and
``connect`` for the proxy's connections to PostgreSQL (we are the TLS client). They are built in
one function of the configuration so that a reload builds new ones from whatever the files hold
now: connections started afterwards use the new certificates, connections already running keep
the session they negotiated.

Every file is read here, once per build, and a file that cannot be read or parsed is a
:class:`TlsConfigError` naming the key and the path, a ConfigError like any other (exit code 2 at
start; at reload the previous contexts stay in use and the error is logged).
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass

from pgdog_ev.config import ConfigError, General

log = logging.getLogger("pgdog_ev.tls")

# libpq 17 offers ALPN "postgresql" and PostgreSQL 17 insists on it when offered; older ones ignore it.
ALPN = ["postgresql"]
VERIFYING = ("verify_ca", "verify_full")


class TlsConfigError(ConfigError):
    """A tls_* key whose file is unusable; ``key`` and ``file``-as-configured say which."""


@dataclass(frozen=True)
class TlsContexts:
    """What new connections use for TLS; replaced as a whole on reload.

    ``accept`` is None when no certificate is configured (SSLRequest is answered 'N');
    ``connect`` is None when ``tls_verify = "disabled"`` (no SSLRequest is sent to servers).
    """

    accept: ssl.SSLContext | None
    connect: ssl.SSLContext | None
    verify: str
    client_required: bool

    def server_mode(self, host: str) -> str:
        """The tls_verify mode for a server at ``host``: unix sockets never use TLS, as in libpq."""
        if self.connect is None or host.startswith("/"):
            return "disabled"
        return self.verify


NO_TLS = TlsContexts(None, None, "disabled", False)


def build_tls(general: General, config_path: str | None = None) -> TlsContexts:
    """Build both contexts from ``general``; relative paths are anchored at pgdog.toml's directory."""
    files = _Files(general, config_path)
    accept = None
    if general.tls_certificate or general.tls_private_key:
        accept = _accept_context(files)
    elif general.tls_client_required:
        raise files.error("tls_client_required", "needs tls_certificate and tls_private_key")
    elif general.tls_client_ca_certificate:
        raise files.error("tls_client_ca_certificate", "needs tls_certificate and tls_private_key")
    connect = None if general.tls_verify == "disabled" else _connect_context(files)
    return TlsContexts(accept, connect, general.tls_verify, general.tls_client_required)


def rebuild_tls(current: TlsContexts, general: General, config_path: str | None = None) -> TlsContexts:
    """``build_tls`` for a reload: on a bad file, log it and keep ``current`` (all tls_* settings)."""
    try:
        return build_tls(general, config_path)
    except TlsConfigError as exc:
        log.error("TLS settings not reloaded, the previous certificates stay in use: %s", exc)
        return current


def _accept_context(files: _Files) -> ssl.SSLContext:
    g = files.general
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(ALPN)
    files.load_chain(ctx, "tls_certificate", g.tls_certificate, "tls_private_key", g.tls_private_key)
    if g.tls_client_ca_certificate:
        files.load_ca(ctx, "tls_client_ca_certificate", g.tls_client_ca_certificate)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _connect_context(files: _Files) -> ssl.SSLContext:
    g = files.general
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(ALPN)
    if g.tls_verify in VERIFYING:
        ctx.check_hostname = g.tls_verify == "verify_full"
        ctx.verify_mode = ssl.CERT_REQUIRED
        if g.tls_server_ca_certificate:
            files.load_ca(ctx, "tls_server_ca_certificate", g.tls_server_ca_certificate)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        # prefer: encrypt when the server offers it, like libpq's sslmode=prefer; nothing is checked.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if g.tls_server_certificate or g.tls_server_private_key:
        files.load_chain(
            ctx, "tls_server_certificate", g.tls_server_certificate,
            "tls_server_private_key", g.tls_server_private_key,
        )
    return ctx


class _Files:
    """Resolves and loads the files of one build, turning every failure into a TlsConfigError."""

    def __init__(self, general: General, config_path: str | None) -> None:
        self.general = general
        self.config_path = config_path

    def error(self, key: str, detail: str) -> TlsConfigError:
        return TlsConfigError(detail, file=self.config_path, table="[general]", key=key)

    def path(self, key: str, value: str) -> str:
        """``value`` anchored at pgdog.toml's directory, after checking it can be read."""
        path = value
        if not os.path.isabs(path) and self.config_path:
            path = os.path.join(os.path.dirname(self.config_path), path)
        try:
            with open(path, "rb") as f:
                head = f.read(1)
        except OSError as exc:
            raise self.error(key, f"cannot read {value!r}: {exc.strerror or exc}") from exc
        if not head:
            raise self.error(key, f"{value!r} is empty")
        return path

    def load_ca(self, ctx: ssl.SSLContext, key: str, value: str) -> None:
        path = self.path(key, value)
        try:
            ctx.load_verify_locations(cafile=path)
        except (ssl.SSLError, ValueError) as exc:
            raise self.error(key, f"{value!r} holds no usable PEM certificate: {_reason(exc)}") from exc

    def load_chain(
        self, ctx: ssl.SSLContext, cert_key: str, cert: str | None, key_key: str, key: str | None
    ) -> None:
        if not cert:
            raise self.error(cert_key, f"is required with {key_key}")
        if not key:
            raise self.error(key_key, f"is required with {cert_key}")
        cert_path = self.path(cert_key, cert)
        key_path = self.path(key_key, key)
        # Parse the certificate alone first, so a bad key is not blamed on the certificate.
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            probe.load_verify_locations(cafile=cert_path)
        except (ssl.SSLError, ValueError) as exc:
            raise self.error(cert_key, f"{cert!r} holds no usable PEM certificate: {_reason(exc)}") from exc
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise self.error(
                key_key, f"{key!r} is not a usable PEM private key for {cert!r}: {_reason(exc)}"
            ) from exc


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason.lower().replace("_", " ")
    return str(exc)
