"""Signed, expiring access tokens for lessons, and the teacher and admin keys kept in the data
directory."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from signaling.contracts import CourseLink, Grant, Role, TokenError

SECRET_FILE = "secret.key"
TEACHER_KEY_FILE = "teacher.key"
ADMIN_KEY_FILE = "admin.key"
SECRET_BYTES = 32

# Real tokens are ~150 characters; the cap keeps hostile input from costing real work.
MAX_TOKEN_CHARS = 2048
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_ROLES = frozenset(role.value for role in Role)


class TokenAuthority:
    """`Authority` issuing HMAC-SHA256 tokens of the form ``payload_b64.signature_b64``."""

    def __init__(
        self,
        secret: bytes,
        ttl_s: float = 12 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        if not (math.isfinite(ttl_s) and ttl_s > 0):
            raise ValueError("token ttl must be a positive number of seconds")
        self._secret = bytes(secret)
        self._ttl_s = ttl_s
        self._clock = clock

    def issue(
        self,
        lesson_id: str,
        role: Role,
        generation: int = 0,
        *,
        not_after: float | None = None,
        link: CourseLink | None = None,
        lasting_until: float | None = None,
    ) -> str:
        """A token of ``role`` for ``lesson_id``; ``not_after`` caps its expiry, so a token
        issued to the holder of another never outlives the one presented; ``link``: the course
        link it was handed out on, which must still stand for it to work; ``lasting_until``:
        it lives at least until then (a timetabled lesson's end)."""
        role = Role(role)
        expires_at = math.ceil(self._clock() + self._ttl_s)
        if lasting_until is not None and math.isfinite(lasting_until):
            # a timetabled lesson's links, sent the evening before, live until it is over
            expires_at = max(expires_at, math.ceil(lasting_until))
        if not_after is not None and math.isfinite(not_after):
            expires_at = min(expires_at, math.floor(not_after))
        payload: dict[str, object] = {
            "l": lesson_id,
            "r": role.value,
            "e": expires_at,
            # Two tokens for the same lesson and role differ, so one can be told from another
            # in logs without revealing either.
            "n": secrets.token_urlsafe(6),
        }
        if generation:
            payload["g"] = generation  # left out at 0, so links from before rotation look alike
        if link is not None:
            payload["c"] = [link.course_id, link.classroom, link.generation]
        payload_b64 = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{payload_b64}.{_b64encode(self._sign(payload_b64))}"

    def issue_for_link(self, lesson_id: str, generation: int, link: CourseLink) -> str:
        return self.issue(lesson_id, Role.CLASSROOM, generation, link=link)

    def course_link(self, link: CourseLink) -> str:
        payload = {"k": [link.course_id, link.classroom, link.generation]}
        payload_b64 = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{payload_b64}.{_b64encode(self._sign(payload_b64, _COURSE_LINK))}"

    def verify_course_link(self, token: str) -> CourseLink:
        payload_b64, signature = _split(token)
        # signed apart from lesson tokens: neither kind is ever taken for the other
        if not hmac.compare_digest(signature, self._sign(payload_b64, _COURSE_LINK)):
            raise TokenError("bad signature")
        try:
            payload = json.loads(_b64decode(payload_b64))
        except (ValueError, RecursionError) as exc:
            raise TokenError("malformed token") from exc
        link = _link(payload.get("k") if isinstance(payload, dict) else None)
        if link is None:
            raise TokenError("malformed token")
        return link

    def verify(self, token: str) -> Grant:
        payload_b64, signature = _split(token)
        # The signature is checked before the payload is parsed, so nothing an attacker sends
        # ever reaches the JSON decoder.
        if not hmac.compare_digest(signature, self._sign(payload_b64)):
            raise TokenError("bad signature")
        try:
            payload = json.loads(_b64decode(payload_b64))
        except (ValueError, RecursionError) as exc:
            raise TokenError("malformed token") from exc
        if not isinstance(payload, dict):
            raise TokenError("malformed token")
        lesson_id, role, expiry = payload.get("l"), payload.get("r"), payload.get("e")
        if not isinstance(lesson_id, str) or not lesson_id:
            raise TokenError("malformed token")
        if not isinstance(expiry, int | float) or isinstance(expiry, bool):
            raise TokenError("malformed token")
        try:
            expires_at = float(expiry)
        except OverflowError:
            raise TokenError("malformed token") from None
        if not math.isfinite(expires_at):
            raise TokenError("malformed token")
        if not isinstance(role, str) or role not in _ROLES:
            raise TokenError("unknown role")
        generation = payload.get("g", 0)
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
            raise TokenError("malformed token")
        grant_role = Role(role)
        link = None
        if "c" in payload:
            link = _link(payload["c"])
            if link is None or grant_role is not Role.CLASSROOM:
                raise TokenError("malformed token")
        if self._clock() >= expires_at:
            raise TokenError("token expired")
        return Grant(
            lesson_id=lesson_id,
            role=grant_role,
            expires_at=expires_at,
            generation=generation,
            course_link=link,
        )

    def _sign(self, payload_b64: str, domain: bytes = b"") -> bytes:
        return hmac.new(self._secret, domain + payload_b64.encode("ascii"), hashlib.sha256).digest()


_COURSE_LINK = b"course-link\0"  # what course link signatures are made over, before the payload


def _link(value: object) -> CourseLink | None:
    """A course link as a token names it: [course id, classroom ('' shared), generation]."""
    if not isinstance(value, list) or len(value) != 3:
        return None
    course_id, classroom, generation = value
    if not isinstance(course_id, str) or not course_id or not isinstance(classroom, str):
        return None
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        return None
    return CourseLink(course_id, classroom, generation)


def _split(token: object) -> tuple[str, bytes]:
    """Check the token's shape and return its payload part and decoded signature."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise TokenError("malformed token")
    parts = token.split(".")
    if len(parts) != 2 or not all(_B64URL.fullmatch(part) for part in parts):
        raise TokenError("malformed token")
    payload_b64, signature_b64 = parts
    try:
        signature = _b64decode(signature_b64)
    except ValueError as exc:
        raise TokenError("malformed token") from exc
    # Base64 leaves slack bits in the last character; requiring the canonical spelling means
    # each signature has exactly one valid string form.
    if _b64encode(signature) != signature_b64:
        raise TokenError("malformed token")
    return payload_b64, signature


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


def load_or_create_secret(data_dir: Path) -> bytes:
    """Return the signing secret from ``secret.key``, creating it (mode 0600) on first run."""
    path = data_dir / SECRET_FILE
    _create_once(path, secrets.token_bytes(SECRET_BYTES))
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ValueError(
            f"{path} holds {len(secret)} bytes, need at least {SECRET_BYTES}; "
            "delete it to generate a new one (this invalidates issued tokens)"
        )
    return secret


def load_or_create_teacher_key(data_dir: Path) -> tuple[str, bool]:
    """Return the teacher key from ``teacher.key`` and whether this call just created it."""
    return _load_or_create_key(data_dir / TEACHER_KEY_FILE, 24)


def load_or_create_admin_key(data_dir: Path) -> tuple[str, bool]:
    """Return the admin key from ``admin.key`` and whether this call just created it."""
    return _load_or_create_key(data_dir / ADMIN_KEY_FILE, 32)


def _load_or_create_key(path: Path, random_bytes: int) -> tuple[str, bool]:
    created = _create_once(path, (secrets.token_urlsafe(random_bytes) + "\n").encode("ascii"))
    # Operators may edit the file by hand; editors add newlines, which are not part of the key.
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ValueError(f"{path} is empty; put a key in it or delete it to generate one")
    return key, created


def _create_once(path: Path, content: bytes) -> bool:
    """Write ``content`` to ``path`` (mode 0600) unless it exists; return whether it was written.

    The content goes to a private temporary file first and is then hard-linked into place, so
    a concurrent reader never sees a half-written file and a concurrent writer never clobbers
    one that already won.
    """
    if path.exists():
        return False
    # A directory created here holds secrets, so only the owner may look inside.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o600)  # mkstemp already uses 0600; this makes it explicit
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp_name)
