"""The hub's throwaway TLS: a CA made in the state folder and a server certificate it signs.

``DIR/ca.pem`` (given to modules as ``EdgeModuleCACertificateFile``),
``DIR/ca-key.pem``, ``DIR/server.pem`` and ``DIR/server-key.pem`` (keys
0600). ECDSA P-256. The server certificate names ``localhost``,
``127.0.0.1`` and the hub's own address and host name; an existing pair is
kept while it is valid for a day more and names every one of them, so
modules keep trusting a restarted hub.

The ``cryptography`` package is needed only to make them: ``ensure``
runs ``python -m modelform.runtime.edge.certs`` in a child process, so
the long-running hub never loads it (it would add ~6 MB to its RSS).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

CA = "ca.pem"
CA_KEY = "ca-key.pem"
CERT = "server.pem"
KEY = "server-key.pem"
_STAMP = "server.json"


class CertError(RuntimeError):
    """The certificates could not be made; one line."""


def names_for(host: str, extra: Sequence[str] = ()) -> list[str]:
    names = ["localhost", "127.0.0.1"]
    for name in (host, *extra):
        if name and name not in names and name not in ("0.0.0.0", "::"):
            names.append(name)
    return names


def ensure(state_dir: Path, names: Sequence[str]) -> None:
    """Make (or keep) the CA and a server certificate valid for ``names``."""
    if all((state_dir / f).is_file() for f in (CA, CERT, KEY)) and _covers(state_dir, names):
        return
    done = subprocess.run(
        [sys.executable, "-m", "modelform.runtime.edge.certs", str(state_dir), *names],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CertError(f"cannot make the hub's certificates in {state_dir}: {detail}")


def _covers(state_dir: Path, names: Sequence[str]) -> bool:
    """The server certificate names all of ``names`` and is valid for a day more."""
    try:
        stamp = json.loads((state_dir / _STAMP).read_text())
        return bool(
            set(names) <= set(stamp["names"]) and float(stamp["not_after"]) > time.time() + 86400
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def make(state_dir: Path, names: Sequence[str]) -> None:
    """Write the CA (kept when present) and a new server certificate for ``names``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def _pem(private: ec.EllipticCurvePrivateKey) -> bytes:
        return private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    state_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_path, ca_key_path = state_dir / CA, state_dir / CA_KEY
    if ca_path.is_file() and ca_key_path.is_file():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise CertError(f"{ca_key_path} is not an EC key")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelform edge hub CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(ca_key_path, _pem(ca_key), 0o600)
        _write(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(state_dir / KEY, _pem(key), 0o600)
    _write(state_dir / CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    not_after = (now + datetime.timedelta(days=825)).timestamp()
    _write(state_dir / _STAMP, json.dumps({"names": list(names), "not_after": not_after}), 0o644)


def _write(path: Path, data: bytes | str, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def server_context(state_dir: Path) -> ssl.SSLContext:
    """The listener's TLS context: TLS 1.2+, no client certificates asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(state_dir / CERT, state_dir / KEY)
    return context


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m modelform.runtime.edge.certs DIR NAME...", file=sys.stderr)
        return 2
    try:
        make(Path(args[0]), args[1:])
    except (OSError, CertError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
