"""Credentials for access tests: the admin key, teacher accounts, and tokens that are wrong in
one precise way (tampered, expired, of another role or lesson), minted with the server's own
signing secret, as the server itself would."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from signaling.contracts import Role
from syncclass.tokens import TokenAuthority, load_or_create_secret
from tests.server import Server
from tests.support.peers import new_peer_connection


def admin_key(server: Server) -> str:
    """The admin key the server generated in its data directory on first start."""
    return (Path(server.data_dir) / "admin.key").read_text().strip()


def add_teacher(server: Server, name: str) -> str:
    status, body = server.request(
        "POST", "/api/teachers", token=admin_key(server), body={"name": name}
    )
    assert status == 201, body
    return str(body["key"])


def create_lesson(server: Server, key: str, title: str, **fields: Any) -> dict[str, Any]:
    status, lesson = server.request(
        "POST", "/api/lessons", token=key, body={"title": title, **fields}
    )
    assert status == 201, lesson
    return dict(lesson)


def tamper(credential: str) -> str:
    """The credential with one character of its signature (its last part) changed."""
    head, dot, tail = credential.rpartition(".")
    last = tail[-2]
    return f"{head}{dot}{tail[:-2]}{'B' if last == 'A' else 'A'}{tail[-1]}"


def mint(
    server: Server, lesson_id: str, role: Role, generation: int = 0, *, age_s: float = 0.0
) -> str:
    """A well-signed token; ``age_s`` > its lifetime makes it expired."""
    secret = load_or_create_secret(Path(server.data_dir))
    authority = TokenAuthority(secret, ttl_s=60, clock=lambda: time.time() - age_s)
    return authority.issue(lesson_id, role, generation)


def expired(server: Server, lesson_id: str, role: Role, generation: int = 0) -> str:
    return mint(server, lesson_id, role, generation, age_s=3600)


async def sdp_offer(kind: str) -> str:
    """An SDP offer as a publisher ("publish") or a classroom ("receive") would send it."""
    pc = new_peer_connection()
    direction = "recvonly" if kind == "receive" else "sendonly"
    if kind == "publish":
        from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

        pc.addTransceiver(VideoStreamTrack(), direction=direction)
        pc.addTransceiver(AudioStreamTrack(), direction=direction)
    else:
        pc.addTransceiver("video", direction=direction)
        pc.addTransceiver("audio", direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)
