"""The credential one server of a lesson directory shows another: made with the secret they
share (``--cluster-secret``), naming the server, one lesson and a near expiry, so that a
credential seen once opens nothing else and soon nothing at all."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

LIFETIME_S = 30.0
MAX_CREDENTIAL_CHARS = 512
_DOMAIN = b"syncclass-cluster\0"  # never taken for a lesson token, which is signed otherwise
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class ClusterCredentialError(Exception):
    """A credential that is malformed, forged, for another lesson or expired."""


@dataclass(frozen=True)
class ClusterCaller:
    server: str  # the id of the server that made the credential
    lesson_id: str


class ClusterCredentials:
    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret.encode()
        self._clock = clock

    def mint(self, server: str, lesson_id: str) -> str:
        payload = {"s": server, "l": lesson_id, "e": math.ceil(self._clock() + LIFETIME_S)}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._sign(body))}"

    def check(self, credential: str, lesson_id: str) -> ClusterCaller:
        if not 0 < len(credential) <= MAX_CREDENTIAL_CHARS:
            raise ClusterCredentialError("malformed cluster credential")
        body, _, signature = credential.partition(".")
        if not (_B64URL.fullmatch(body) and _B64URL.fullmatch(signature)):
            raise ClusterCredentialError("malformed cluster credential")
        try:
            given = _unb64(signature)
        except ValueError:
            raise ClusterCredentialError("malformed cluster credential") from None
        # the signature is checked before anything of the payload is read
        if not hmac.compare_digest(given, self._sign(body)):
            raise ClusterCredentialError("the cluster credential's signature does not verify")
        try:
            payload = json.loads(_unb64(body))
        except ValueError:
            raise ClusterCredentialError("malformed cluster credential") from None
        if not isinstance(payload, dict):
            raise ClusterCredentialError("malformed cluster credential")
        server, lesson, expiry = payload.get("s"), payload.get("l"), payload.get("e")
        if not isinstance(server, str) or not isinstance(lesson, str):
            raise ClusterCredentialError("malformed cluster credential")
        if not isinstance(expiry, int) or isinstance(expiry, bool):
            raise ClusterCredentialError("malformed cluster credential")
        if lesson != lesson_id:
            raise ClusterCredentialError("this cluster credential is for another lesson")
        if self._clock() >= expiry:
            raise ClusterCredentialError("the cluster credential has expired")
        return ClusterCaller(server, lesson)

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._secret, _DOMAIN + body.encode("ascii"), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from exc
