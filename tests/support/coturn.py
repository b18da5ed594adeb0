"""A real coturn (``turnserver``) on loopback, set up as the README tells an operator: TURN over
TLS with a certificate of its own (self-signed by the test, for 127.0.0.1), TURN REST
credentials (``use-auth-secret`` / ``static-auth-secret``), and peers limited to the media
server's address. coturn refuses loopback peers unless told (``allow-loopback-peers``); every
address in the tests is loopback, so it is told, and ``allowed-peer-ip`` names 127.0.0.1.

It relays UDP only to 127.0.0.1; its log goes to a file of the test (``Coturn.log()``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from syncclass.certificate import make_certificate
from tests.server import free_port

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
REALM = "syncclass.test"
START_TIMEOUT_S = 20.0


@dataclass
class Coturn:
    process: subprocess.Popen[bytes]
    directory: Path
    secret: str
    port: int  # TURN over UDP and TCP
    tls_port: int  # TURN over TLS
    relay_ports: tuple[int, int]

    @property
    def cert(self) -> Path:
        """The certificate coturn serves over TLS (a client of the test trusts it)."""
        return self.directory / "cert.pem"

    @property
    def turns_url(self) -> str:
        return f"turns:127.0.0.1:{self.tls_port}?transport=tcp"

    def log(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.directory.glob("turn*.log"))
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _relay_range() -> tuple[int, int]:
    """Ports for coturn's relayed addresses, away from the kernel's ephemeral range (where the
    server's and the peers' own ports come from)."""
    low = 20000 + secrets.randbelow(20) * 500
    return low, low + 199


def start_coturn(directory: Path, secret: str | None = None) -> Coturn:
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = make_certificate(["127.0.0.1", "localhost"])
    (directory / "cert.pem").write_bytes(cert_pem)
    key = directory / "key.pem"
    key.write_bytes(key_pem)
    key.chmod(0o600)
    secret = secret or secrets.token_urlsafe(24)
    port, tls_port = free_port(), free_port()
    low, high = _relay_range()
    log_file = directory / "turn.log"
    command = [
        TURNSERVER,
        "-n",  # no configuration file: everything is here
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--tls-listening-port={tls_port}",
        f"--cert={directory / 'cert.pem'}",
        f"--pkey={key}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        f"--realm={REALM}",
        f"--min-port={low}",
        f"--max-port={high}",
        # the relay may reach the media server only (as the README's turnserver.conf says):
        # every other address denied, the server's allowed; here that is loopback
        "--allow-loopback-peers",
        "--denied-peer-ip=0.0.0.0-255.255.255.255",
        "--allowed-peer-ip=127.0.0.1",
        "--no-multicast-peers",
        "--no-dtls",
        "--no-tcp-relay",
        "--fingerprint",
        "--no-cli",
        "--no-software-attribute",
        f"--log-file={log_file}",
        "--simple-log",
        f"--pidfile={directory / 'turnserver.pid'}",
        f"--db={directory / 'turndb'}",
    ]
    stdout = open(directory / "turnserver.out", "wb")  # noqa: SIM115 - the child holds it
    try:
        process = subprocess.Popen(
            command, stdout=stdout, stderr=subprocess.STDOUT, env={**os.environ}
        )
    finally:
        stdout.close()
    coturn = Coturn(process, directory, secret, port, tls_port, (low, high))
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            output = (directory / "turnserver.out").read_text(errors="replace")
            raise RuntimeError(f"turnserver exited with {process.returncode}:\n{output}")
        try:
            # coturn listens on TLS last: once it accepts there it serves all of it
            with socket.create_connection(("127.0.0.1", tls_port), timeout=0.5):
                return coturn
        except OSError:
            if time.monotonic() > deadline:
                coturn.stop()
                raise RuntimeError(f"turnserver did not listen:\n{coturn.log()}") from None
            time.sleep(0.05)


@contextmanager
def running_coturn(directory: Path, secret: str | None = None) -> Iterator[Coturn]:
    coturn = start_coturn(directory, secret)
    try:
        yield coturn
    finally:
        coturn.stop()
