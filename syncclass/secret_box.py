"""Secrets the server must give back later (a camera's password), kept encrypted at rest:
AES-GCM under a key derived from the data directory's ``secret.key`` (mode 0600), so that a
copy of the database alone (a backup, a support bundle) holds no usable password."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class SecretBoxError(Exception):
    """A sealed secret that this server's key does not open (another data directory's)."""


class SecretBox:
    def __init__(self, server_secret: bytes, purpose: bytes = b"syncclass source credentials"):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
            server_secret
        )
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox()"

    def seal(self, secret: str, context: str) -> bytes:
        """``secret`` encrypted, bound to ``context`` (a lesson id: not movable to another)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode("utf-8"), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        try:
            plain = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError):
            raise SecretBoxError("a kept secret cannot be opened with this server's key") from None
        return plain.decode("utf-8")
