"""A self-signed certificate for a school LAN: ``syncclass cert`` makes one, ``serve
--self-signed`` serves HTTPS with it, and a browser that trusts it connects."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

from cryptography import x509

from tests.server import ROOT, start_server


def run_cert(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncclass", "cert", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def names_of(cert_path: Path) -> set[str]:
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in names}


def test_cert_makes_a_certificate_for_the_given_names(tmp_path: Path) -> None:
    done = run_cert("--data-dir", str(tmp_path / "data"), "192.168.1.10", "class.lan", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cert, key = tmp_path / "data/tls/cert.pem", tmp_path / "data/tls/key.pem"
    assert names_of(cert) == {"192.168.1.10", "class.lan"}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600  # the private key is the owner's only
    # the fingerprint printed is the certificate's, for whoever imports it on a classroom PC
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    assert ":".join(digest[i : i + 2] for i in range(0, 64, 2)) in done.stdout
    # it is not replaced by accident
    again = run_cert("--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    assert again.returncode != 0 and "--force" in again.stdout
    assert names_of(cert) == {"192.168.1.10", "class.lan"}
    forced = run_cert("--data-dir", str(tmp_path / "data"), "--force", cwd=tmp_path)
    assert forced.returncode == 0
    # by default: this machine's name and loopback
    assert {socket.gethostname(), "127.0.0.1"} <= names_of(cert)
    bad = run_cert("--data-dir", str(tmp_path / "other"), "not a/name", cwd=tmp_path)
    assert bad.returncode != 0 and not (tmp_path / "other/tls/cert.pem").exists()


def test_serve_self_signed_answers_https_with_that_certificate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, "--self-signed")
    try:
        cert = data / "tls/cert.pem"
        assert cert.is_file()
        assert ipaddress.ip_address("127.0.0.1") in {
            ipaddress.ip_address(n) for n in names_of(cert) if n[0].isdigit()
        }
        url = server.url.replace("http://", "https://")
        # a browser that trusts the certificate (imported once) checks it against the address
        trusting = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"{url}/", context=trusting, timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read()
        port = int(server.url.rsplit(":", 1)[1])
        served = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert.read_text())
        # one that does not trust it refuses the connection
        try:
            urllib.request.urlopen(f"{url}/", timeout=10)
        except urllib.error.URLError as exc:
            assert isinstance(exc.reason, ssl.SSLCertVerificationError)
        else:
            raise AssertionError("an unknown self-signed certificate was accepted")
        assert "fingerprint" in server.log()
    finally:
        server.stop()
    # a restart keeps the same certificate: classroom PCs that trust it go on trusting it
    before = cert.read_bytes()
    again = start_server(data, "--self-signed")
    try:
        url = again.url.replace("http://", "https://")
        trusting = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"{url}/", context=trusting, timeout=10) as page:
            assert page.status == 200
    finally:
        again.stop()
    assert cert.read_bytes() == before
