"""A self-signed TLS certificate for a school LAN without a real one: ``syncclass cert`` makes
it, ``syncclass serve --self-signed`` makes it when missing and serves HTTPS with it.

Browsers capture cameras only on localhost or HTTPS. A certificate signed by nobody makes
each browser warn until the certificate is trusted on that PC (imported once); its SHA-256
fingerprint is printed so that whoever imports it can check it is the right one.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import ENV_PREFIX, Config

TLS_DIR = "tls"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
# Apple's platforms refuse TLS server certificates valid for longer, even trusted by hand.
DEFAULT_DAYS = 825


def default_names() -> list[str]:
    return [socket.gethostname(), "localhost", "127.0.0.1"]


def _subject_names(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in dict.fromkeys(n.strip() for n in names if n.strip()):
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not name.isascii() or any(c in name for c in " /:@"):
            raise ValueError(f"{name!r} is neither an IP address nor a host name")
        result.append(x509.DNSName(name.lower()))
    if not result:
        raise ValueError("a certificate needs at least one host name or IP address")
    return result


def make_certificate(names: Sequence[str], days: int = DEFAULT_DAYS) -> tuple[bytes, bytes]:
    """A new P-256 key and a self-signed certificate for ``names`` (host names and IP
    addresses), both PEM."""
    subject_names = _subject_names(names)
    key = ec.generate_private_key(ec.SECP256R1())
    first = subject_names[0].value
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, str(first)[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "syncclass (self-signed)"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16)) >> 1)
        .not_valid_before(now - datetime.timedelta(hours=1))  # clocks of school PCs drift
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(subject_names), critical=False)
        # a CA certificate used by a server is refused by some browsers (Firefox)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def fingerprint(cert_pem: bytes) -> str:
    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)


def paths(data_dir: Path) -> tuple[Path, Path]:
    directory = Path(data_dir) / TLS_DIR
    return directory / CERT_FILE, directory / KEY_FILE


def write_certificate(data_dir: Path, names: Sequence[str], days: int = DEFAULT_DAYS) -> str:
    """Make a certificate in ``DATA_DIR/tls`` (replacing one there); return its fingerprint."""
    cert_pem, key_pem = make_certificate(names, days)
    cert_path, key_path = paths(data_dir)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.unlink(missing_ok=True)
    # the key is created readable by its owner only, never for a moment by others
    with os.fdopen(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert_pem)
    return fingerprint(cert_pem)


def serve_names(config: Config) -> list[str]:
    """What the server is reached as: this machine, and the addresses it is told to use."""
    names = default_names()
    if config.host not in ("0.0.0.0", "::", ""):
        names.append(config.host)
    names += list(config.ice_bind)
    if config.ice_announce:
        names.append(config.ice_announce)
    return names


def use_self_signed(config: Config) -> tuple[Config, str, bool]:
    """``config`` serving with the data directory's self-signed certificate (made if there
    is none), that certificate's fingerprint, and whether it was made now."""
    cert_path, key_path = paths(config.data_dir)
    created = not (cert_path.is_file() and key_path.is_file())
    if created:
        write_certificate(config.data_dir, serve_names(config))
    with_tls = dataclasses.replace(config, tls_cert=cert_path, tls_key=key_path)
    return with_tls, fingerprint(cert_path.read_bytes()), created


# --- syncclass cert ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="host names and IP addresses the server is reached as "
        "(default: this machine's name, localhost and 127.0.0.1)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"where to write tls/{CERT_FILE} and tls/{KEY_FILE} "
        f"(env {ENV_PREFIX}DATA_DIR; default {Config.data_dir})",
    )
    parser.add_argument(
        "--days", type=int, default=DEFAULT_DAYS, help=f"validity (default {DEFAULT_DAYS})"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing certificate")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    data_dir = Path(args.data_dir or environ.get(f"{ENV_PREFIX}DATA_DIR") or Config.data_dir)
    cert_path, key_path = paths(data_dir)
    if cert_path.exists() and not args.force:
        print(f"syncclass: {cert_path} exists; --force replaces it")
        return 1
    if not 1 <= args.days <= 3650:
        print("syncclass: --days must be from 1 to 3650")
        return 2
    names = args.names or default_names()
    try:
        digest = write_certificate(data_dir, names, args.days)
    except ValueError as exc:
        print(f"syncclass: {exc}")
        return 2
    print(f"syncclass: certificate {cert_path} for {', '.join(names)}")
    print(f"syncclass: private key {key_path} (keep it secret)")
    print(f"syncclass: SHA-256 fingerprint {digest}")
    print("syncclass: serve it with: syncclass serve --self-signed (same --data-dir)")
    return 0
