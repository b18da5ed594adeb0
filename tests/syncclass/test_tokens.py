"""TokenAuthority and the on-disk secret and teacher key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import stat
from pathlib import Path

import pytest

from signaling.contracts import Authority, Grant, Role, TokenError
from syncclass.tokens import (
    TokenAuthority,
    load_or_create_secret,
    load_or_create_teacher_key,
)

SECRET = b"s" * 32
NOW = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def authority(clock: FakeClock) -> TokenAuthority:
    return TokenAuthority(SECRET, ttl_s=3600, clock=clock)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_satisfies_protocol(authority: TokenAuthority) -> None:
    as_protocol: Authority = authority
    assert as_protocol is authority


@pytest.mark.parametrize("role", list(Role))
def test_round_trip(authority: TokenAuthority, role: Role) -> None:
    token = authority.issue("lesson-1", role)
    assert authority.verify(token) == Grant("lesson-1", role, NOW + 3600)


def test_token_format(authority: TokenAuthority) -> None:
    token = authority.issue("abc", Role.ORIGIN)
    payload_b64, sig_b64 = token.split(".")
    assert "=" not in token
    payload = json.loads(unb64(payload_b64))
    assert payload["l"] == "abc"
    assert payload["r"] == "origin"
    assert payload["e"] == NOW + 3600
    assert isinstance(payload["n"], str) and payload["n"]
    assert len(unb64(sig_b64)) == 32


def test_tokens_are_distinct(authority: TokenAuthority) -> None:
    assert authority.issue("x", Role.CLASSROOM) != authority.issue("x", Role.CLASSROOM)


def test_expired(authority: TokenAuthority, clock: FakeClock) -> None:
    token = authority.issue("lesson", Role.CLASSROOM)
    clock.now += 3599
    authority.verify(token)
    clock.now += 1
    with pytest.raises(TokenError, match="token expired"):
        authority.verify(token)


def test_not_after_caps_the_expiry(authority: TokenAuthority, clock: FakeClock) -> None:
    # a token issued to the holder of another never outlives the one presented
    presented = authority.verify(authority.issue("lesson", Role.ORIGIN))
    clock.now += 600
    capped = authority.verify(
        authority.issue("lesson", Role.ORIGIN, not_after=presented.expires_at)
    )
    assert capped.expires_at == presented.expires_at
    # a later cap never lengthens the configured lifetime
    longer = authority.issue("lesson", Role.CLASSROOM, not_after=clock.now + 10 * 3600)
    assert authority.verify(longer).expires_at == clock.now + 3600


def test_tampered_payload(authority: TokenAuthority) -> None:
    token = authority.issue("lesson", Role.CLASSROOM)
    payload_b64, sig_b64 = token.split(".")
    payload = json.loads(unb64(payload_b64))
    payload["r"] = "origin"
    forged = b64(json.dumps(payload).encode()) + "." + sig_b64
    with pytest.raises(TokenError, match="bad signature"):
        authority.verify(forged)


def test_tampered_signature(authority: TokenAuthority) -> None:
    payload_b64, sig_b64 = authority.issue("lesson", Role.ORIGIN).split(".")
    sig = bytearray(unb64(sig_b64))
    sig[0] ^= 1
    with pytest.raises(TokenError, match="bad signature"):
        authority.verify(payload_b64 + "." + b64(bytes(sig)))


def test_signature_from_other_secret(authority: TokenAuthority, clock: FakeClock) -> None:
    other = TokenAuthority(b"o" * 32, ttl_s=3600, clock=clock)
    with pytest.raises(TokenError, match="bad signature"):
        authority.verify(other.issue("lesson", Role.ORIGIN))


def test_non_canonical_signature_spelling(authority: TokenAuthority) -> None:
    payload_b64, sig_b64 = authority.issue("lesson", Role.ORIGIN).split(".")
    # 32 bytes leave 2 unused bits in the last character; flipping one decodes identically.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(sig_b64[-1]) ^ 1]
    twin = sig_b64[:-1] + last
    assert unb64(twin) == unb64(sig_b64)
    with pytest.raises(TokenError, match="malformed token"):
        authority.verify(payload_b64 + "." + twin)


@pytest.mark.parametrize("cut", [1, 10, -1, -10])
def test_truncated(authority: TokenAuthority, cut: int) -> None:
    token = authority.issue("lesson", Role.CLASSROOM)
    truncated = token[cut:] if cut > 0 else token[:cut]
    with pytest.raises(TokenError):
        authority.verify(truncated)


def test_payload_only(authority: TokenAuthority) -> None:
    with pytest.raises(TokenError, match="malformed token"):
        authority.verify(authority.issue("lesson", Role.ORIGIN).split(".")[0])


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "..",
        "a.b.c",
        "a.",
        ".a",
        "a",
        "abc.def",
        "a=.b=",
        "a b.c d",
        "é.é",
        "\x00.\x00",
        "\ud800.\udfff",
        "🙂" * 10,
        "a" * 100_000 + "." + "b" * 43,
        "A" * 5000,
        "x." + "A" * 43,
        "x." + "A" * 42,
        "A" * 5 + ".AAAA",
    ],
)
def test_garbage_strings(authority: TokenAuthority, garbage: str) -> None:
    with pytest.raises(TokenError):
        authority.verify(garbage)


@pytest.mark.parametrize("garbage", [None, b"abc.def", 42, ["a", "b"], {"l": "x"}])
def test_non_strings(authority: TokenAuthority, garbage: object) -> None:
    with pytest.raises(TokenError, match="malformed token"):
        authority.verify(garbage)  # type: ignore[arg-type]


def test_random_bytes_never_escape_as_other_errors(authority: TokenAuthority) -> None:
    rng = random.Random(1234)
    token = authority.issue("lesson", Role.ORIGIN)
    for _ in range(2000):
        choice = rng.random()
        if choice < 0.4:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
            candidate = raw.decode("latin-1")
        elif choice < 0.8:
            chars = list(token)
            for _ in range(rng.randrange(1, 4)):
                chars[rng.randrange(len(chars))] = chr(rng.randrange(0x30000))
            candidate = "".join(chars)
        else:
            candidate = token[: rng.randrange(len(token))]
        try:
            authority.verify(candidate)
        except TokenError:
            pass


def signed(payload: object, secret: bytes = SECRET) -> str:
    """A correctly signed token around an arbitrary payload, to test payload validation."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    payload_b64 = b64(body)
    sig = hmac.new(secret, payload_b64.encode(), hashlib.sha256).digest()
    return payload_b64 + "." + b64(sig)


def test_unknown_role(authority: TokenAuthority) -> None:
    token = signed({"l": "lesson", "r": "admin", "e": NOW + 10, "n": "x"})
    with pytest.raises(TokenError, match="unknown role"):
        authority.verify(token)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        [],
        "string",
        {},
        {"r": "origin", "e": NOW + 10},
        {"l": "", "r": "origin", "e": NOW + 10},
        {"l": 5, "r": "origin", "e": NOW + 10},
        {"l": "x", "r": "origin"},
        {"l": "x", "r": "origin", "e": "later"},
        {"l": "x", "r": "origin", "e": True},
        {"l": "x", "r": "origin", "e": 10**400},
        b'{"l": "x", "r": "origin", "e": Infinity}',
        b'{"l": "x", "r": "origin", "e": NaN}',
    ],
)
def test_signed_but_malformed_payload(authority: TokenAuthority, payload: object) -> None:
    with pytest.raises(TokenError, match="malformed token"):
        authority.verify(signed(payload))


@pytest.mark.parametrize("role", [None, ["origin"], {"x": 1}, 1])
def test_signed_odd_role(authority: TokenAuthority, role: object) -> None:
    with pytest.raises(TokenError, match="unknown role"):
        authority.verify(signed({"l": "x", "r": role, "e": NOW + 10}))


@pytest.mark.parametrize(
    ("secret", "ttl"),
    [(b"", 60.0), (b"short", 60.0), (SECRET, 0.0), (SECRET, float("nan"))],
)
def test_constructor_rejects_unusable_settings(secret: bytes, ttl: float) -> None:
    with pytest.raises(ValueError):
        TokenAuthority(secret, ttl_s=ttl)


def test_issue_rejects_unknown_role(authority: TokenAuthority) -> None:
    with pytest.raises(ValueError):
        authority.issue("lesson", "admin")  # type: ignore[arg-type]


def test_secret_created_once_with_private_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    secret = load_or_create_secret(data_dir)
    assert len(secret) == 32
    path = data_dir / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(data_dir) == secret
    assert sorted(p.name for p in data_dir.iterdir()) == ["secret.key"]


def test_short_secret_file_rejected(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_bytes(b"short")
    with pytest.raises(ValueError, match="secret.key"):
        load_or_create_secret(tmp_path)


def test_teacher_key_created_once(tmp_path: Path) -> None:
    key, created = load_or_create_teacher_key(tmp_path)
    assert created
    assert len(key) >= 20
    assert all(c.isalnum() or c in "-_" for c in key)
    assert stat.S_IMODE((tmp_path / "teacher.key").stat().st_mode) == 0o600
    assert load_or_create_teacher_key(tmp_path) == (key, False)


def test_teacher_key_edited_by_hand(tmp_path: Path) -> None:
    (tmp_path / "teacher.key").write_text("  my-own-key\n")
    assert load_or_create_teacher_key(tmp_path) == ("my-own-key", False)


def test_empty_teacher_key_file_rejected(tmp_path: Path) -> None:
    (tmp_path / "teacher.key").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_or_create_teacher_key(tmp_path)
