"""Who may do what: every credential mistake gets the right status and changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from signaling.contracts import Role
from syncclass.tokens import TokenAuthority, load_or_create_secret
from tests.server import Server
from tests.support.peers import new_peer_connection, post_offer


async def recvonly_offer() -> str:
    pc = new_peer_connection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def sendonly_offer() -> str:
    from aiortc.mediastreams import AudioStreamTrack

    pc = new_peer_connection()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def tamper(token: str) -> str:
    payload, signature = token.split(".")
    return payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]


def expired_token(server: Server, lesson_id: str, role: Role) -> str:
    secret = load_or_create_secret(Path(server.data_dir))
    past = TokenAuthority(secret, ttl_s=60, clock=lambda: time.time() - 3600)
    return past.issue(lesson_id, role)


async def test_token_matrix(server: Server) -> None:
    lesson = server.create_lesson("Tokens")
    other = server.create_lesson("Another lesson")
    lid = lesson["id"]
    origin, classroom = lesson["whip_token"], lesson["whep_token"]
    whip, whep = lesson["whip_url"], lesson["whep_url"]
    publish, receive = await sendonly_offer(), await recvonly_offer()
    before = server.status()

    cases = [
        # (url, token, offer, expected status, expected error code)
        (whip, None, publish, 401, "unauthorized"),
        (whip, "not-a-token", publish, 401, "invalid_token"),
        (whip, tamper(origin), publish, 401, "invalid_token"),
        (whip, expired_token(server, lid, Role.ORIGIN), publish, 401, "invalid_token"),
        (whip, other["whip_token"], publish, 403, "wrong_lesson"),
        (whip, classroom, publish, 403, "wrong_role"),
        (whip, server.teacher_key, publish, 401, "invalid_token"),
        (whep, None, receive, 401, "unauthorized"),
        (whep, tamper(classroom), receive, 401, "invalid_token"),
        (whep, expired_token(server, lid, Role.CLASSROOM), receive, 401, "invalid_token"),
        (whep, other["whep_token"], receive, 403, "wrong_lesson"),
    ]
    for url, token, offer, status, code in cases:
        result = await post_offer(url, token, offer)
        assert result.status == status, (url, token, result.text)
        assert json.loads(result.text)["error"] == code
        if status == 401:
            assert "Bearer" in result.headers.get("WWW-Authenticate", "")

    # nothing changed server-side: no peers, no sessions, lesson still scheduled
    after = server.status()
    for key in ("peers", "sessions", "routers", "producers", "consumers"):
        assert after[key] == before[key], key
    _, state = server.request("GET", f"/api/lessons/{lid}", token=server.teacher_key)
    assert state["state"] == "scheduled"
    assert state["classrooms"] == 0


@pytest.mark.parametrize("path", ["/api/lessons", "/api/status"])
def test_teacher_routes_need_the_teacher_key(server: Server, path: str) -> None:
    lesson = server.create_lesson()
    for token in (None, "wrong", lesson["whip_token"]):
        status, body = server.request("GET", path, token=token)
        assert status == 401, body
    key = server.admin_key if path == "/api/status" else server.teacher_key
    status, _ = server.request("GET", path, token=key)
    assert status == 200


def test_the_server_status_is_the_admins_only(server: Server) -> None:
    """What the process holds (peers, sockets, file descriptors, ports) is the operator's
    business, not every teacher's."""
    status, body = server.request("GET", "/api/status", token=server.teacher_key)
    assert status == 403 and body["error"] == "admin_only", body
    status, body = server.request("GET", "/api/status", token=server.admin_key)
    assert status == 200 and "peers" in body


def test_creating_lessons_needs_the_teacher_key(server: Server) -> None:
    count = len(server.request("GET", "/api/lessons", token=server.teacher_key)[1]["lessons"])
    for token in (None, "wrong"):
        status, body = server.request("POST", "/api/lessons", token=token, body={"title": "x"})
        assert status == 401 and body["error"] == "unauthorized"
    assert (
        len(server.request("GET", "/api/lessons", token=server.teacher_key)[1]["lessons"]) == count
    )


def test_classroom_sees_state_but_not_teacher_links(server: Server) -> None:
    lesson = server.create_lesson()
    status, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=lesson["whep_token"])
    assert status == 200
    assert body["state"] == "scheduled"
    assert "whip_token" not in body and "teacher_url" not in body
    status, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=lesson["whip_token"])
    assert status == 200 and "whip_token" in body
    # a classroom cannot end the lesson
    status, body = server.request(
        "POST", f"/api/lessons/{lesson['id']}/end", token=lesson["whep_token"]
    )
    assert status == 403 and body["error"] == "wrong_role"
    assert (
        server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)[1]["state"]
        == "scheduled"
    )
