"""Throwaway certificate authorities for TLS tests, made with the `openssl` command line.

`CertAuthority(dir, name)` writes a self-signed CA (EC P-256, valid two days) into `dir`;
`issue()` signs a leaf certificate for it: by default a server certificate for 127.0.0.1 and
localhost (subjectAltName, which is what both libpq and Python check), or a client certificate
with `client=True`. Files are PEM, keys unencrypted and mode 0600.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

OPENSSL_TIMEOUT = 30
DEFAULT_SANS = ("IP:127.0.0.1", "DNS:localhost")


class CertError(RuntimeError):
    pass


def openssl_path() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise CertError("the openssl command is needed to make test certificates (install the openssl package)")
    return path


def _run(argv: Sequence[str], cwd: str) -> None:
    res = subprocess.run(
        [openssl_path(), *argv], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT, cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    if res.returncode != 0:
        raise CertError(f"openssl {' '.join(argv)} failed ({res.returncode}):\n{res.stderr.strip()}")


@dataclass(frozen=True)
class Leaf:
    """A signed certificate and its key."""

    cert: str
    key: str


class CertAuthority:
    """A test CA whose certificate is `self.cert` (the file clients trust)."""

    def __init__(self, directory: str, name: str = "pgdog-ev test CA") -> None:
        os.makedirs(directory, exist_ok=True)
        self.dir = os.path.abspath(directory)
        self.name = name
        slug = "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()
        self.cert = os.path.join(self.dir, f"{slug}.crt")
        self.key = os.path.join(self.dir, f"{slug}.key")
        _run(
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", f"/CN={name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-addext", "subjectKeyIdentifier=hash",
            ],
            self.dir,
        )
        os.chmod(self.key, 0o600)

    def issue(
        self,
        name: str,
        sans: Sequence[str] = DEFAULT_SANS,
        *,
        client: bool = False,
        directory: str | None = None,
    ) -> Leaf:
        """Sign a certificate with CN `name`; `sans` like "IP:127.0.0.1" or "DNS:db.example"."""
        where = os.path.abspath(directory or self.dir)
        os.makedirs(where, exist_ok=True)
        base = os.path.join(where, name)
        key, csr, cert, ext = base + ".key", base + ".csr", base + ".crt", base + ".ext"
        usage = "clientAuth" if client else "serverAuth"
        lines = [
            "basicConstraints=CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid,issuer",
        ]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        _run(
            ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}"],
            where,
        )
        serial = "0x" + os.urandom(8).hex()
        _run(
            ["x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-set_serial", serial,
             "-days", "2", "-extfile", ext, "-out", cert],
            where,
        )
        os.chmod(key, 0o600)
        os.remove(csr)
        os.remove(ext)
        return Leaf(cert, key)
