"""A lesson's links: replacing the classroom link stops the old one at once while connected
classrooms carry on; an origin token never gets a longer-lived link, and the teacher's key
replaces a leaked teacher link; ending the lesson revokes its origin and classroom tokens,
and a replay link keeps opening the recording."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp

from tests.recorder.lessons import play_out, publish, wait_ready
from tests.server import Server
from tests.support.peers import delete_session, post_offer, whep_subscribe

from .credentials import admin_key, sdp_offer


def events_url(server: Server, lesson_id: str, token: str) -> str:
    return f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson_id}/events?token={token}"


async def request(server: Server, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    return await asyncio.to_thread(server.request, method, path, **kwargs)


async def test_a_replaced_link_stops_at_once_and_connected_classrooms_carry_on(
    server: Server,
) -> None:
    lesson = await asyncio.to_thread(server.create_lesson, "Re-linked")
    lid, old = lesson["id"], lesson["whep_token"]
    publisher = await publish(lesson, 20.0)
    early = await whep_subscribe(lesson["whep_url"], old, name="Early room")
    try:
        await early.wait_for_frames(5, 10)
        # a classroom token cannot replace the link; the teacher's page (origin token) can
        status, body = await request(server, "POST", f"/api/lessons/{lid}/rotate", token=old)
        assert status == 403 and body["error"] == "wrong_role"
        status, relinked = await request(
            server, "POST", f"/api/lessons/{lid}/rotate", token=lesson["whip_token"]
        )
        assert status == 200, relinked
        new = relinked["whep_token"]
        assert new != old and relinked["join_url"].endswith(f"?token={new}")

        # the old link is refused everywhere, at once and with a clear answer
        result = await post_offer(lesson["whep_url"], old, await sdp_offer("receive"))
        assert result.status == 401 and json.loads(result.text)["error"] == "token_revoked"
        status, body = await request(server, "GET", f"/api/lessons/{lid}", token=old)
        assert status == 401 and body["error"] == "token_revoked"
        async with aiohttp.ClientSession() as http:
            try:
                await http.ws_connect(events_url(server, lid, old))
                raise AssertionError("the old link opened the events socket")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 401

        # the classroom that joined with it carries on receiving the lesson
        before = early.video_frames
        await early.wait_for_frames(before + 15, 10)
        assert early.pc.connectionState == "connected"

        # the new link works
        late = await whep_subscribe(lesson["whep_url"], new, name="Late room")
        await late.wait_for_frames(5, 10)
        status, body = await request(server, "GET", f"/api/lessons/{lid}", token=new)
        assert status == 200 and body["classrooms"] == 2
        await late.close()
        # the old token cannot even take the early classroom out any more
        assert early.session_url is not None
        assert await delete_session(early.session_url, old) == 401
    finally:
        await early.close(delete=False)
        await publisher.close()
    _, audit = await request(server, "GET", f"/api/audit?lesson={lid}", token=admin_key(server))
    assert [e["action"] for e in audit["entries"]] == ["lesson_created", "link_rotated"]


async def test_ending_revokes_live_tokens_and_a_replay_link_keeps_the_recording(
    server: Server,
) -> None:
    lesson = await asyncio.to_thread(server.create_lesson, "Ends")
    lid, origin, classroom = lesson["id"], lesson["whip_token"], lesson["whep_token"]
    publisher = await publish(lesson, 2.0)
    await play_out(publisher)
    await publisher.close()
    status, link = await request(
        server, "POST", f"/api/recordings/{lid}/link", token=server.teacher_key
    )
    assert status == 201
    replay = link["token"]
    status, _ = await request(server, "POST", f"/api/lessons/{lid}/end", token=origin)
    assert status == 200
    _, recording = await wait_ready(server, lid, 30)

    # nothing live works any more with the lesson's tokens: 410, the lesson has ended
    offers = {"publish": await sdp_offer("publish"), "receive": await sdp_offer("receive")}
    for url, token, offer in (
        (lesson["whip_url"], origin, offers["publish"]),
        (lesson["whep_url"], classroom, offers["receive"]),
        (lesson["whep_url"], origin, offers["receive"]),
    ):
        result = await post_offer(url, token, offer)
        assert result.status == 410 and json.loads(result.text)["error"] == "lesson_ended"
    for method, path, token in (
        ("GET", f"/api/lessons/{lid}", classroom),
        ("POST", f"/api/lessons/{lid}/rotate", origin),
        ("GET", f"/api/recordings/{lid}", classroom),
    ):
        status, body = await request(server, method, path, token=token)
        assert status in (403, 410), (path, body)
        if status == 410:
            assert body["error"] == "lesson_ended"
    # a page that comes back late is told the lesson ended, and let go
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(events_url(server, lid, classroom)) as ws,
    ):
        told = [await ws.receive_json(timeout=5), await ws.receive_json(timeout=5)]
        assert told[0]["state"] == "ended" and told[1] == {"type": "ended"}
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE

    # the replay link opens the recording, and nothing live
    status, info = await request(server, "GET", f"/api/recordings/{lid}", token=replay)
    assert status == 200 and info["state"] == "ready"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}{recording['url']}?token={replay}") as response:
            assert response.status == 200 and len(await response.read()) > 1000
    status, _ = await request(server, "GET", f"/api/lessons/{lid}", token=replay)
    assert status == 403
    # the teacher's page still reads what the lesson left, without links
    status, body = await request(server, "GET", f"/api/lessons/{lid}", token=origin)
    assert status == 200 and body["state"] == "ended" and "join_url" not in body

    # what becomes of the recording is the teacher's to say, and the audit log keeps it
    path = f"/api/recordings/{lid}"
    status, body = await request(server, "PATCH", path, token=origin, body={"public": True})
    assert status == 200 and body["public"] is True
    key = server.teacher_key
    status, body = await request(server, "PATCH", path, token=key, body={"public": False})
    assert status == 200 and body["public"] is False
    assert (await request(server, "DELETE", path, token=key))[0] == 200
    assert (await request(server, "GET", path, token=replay))[0] == 404
    _, audit = await request(server, "GET", f"/api/audit?lesson={lid}", token=admin_key(server))
    assert [(e["actor"], e["action"]) for e in audit["entries"]] == [
        ("teacher", "lesson_created"),
        ("origin token", "lesson_ended"),
        ("origin token", "recording_public"),
        ("teacher", "recording_private"),
        ("teacher", "recording_deleted"),
    ]


def expiry_of(token: str) -> float:
    """The expiry written in a lesson token (its payload is plain base64url JSON)."""
    payload = token.split(".")[0]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["e"])


async def test_an_origin_token_never_gets_a_longer_lived_link(server: Server) -> None:
    lesson = await asyncio.to_thread(server.create_lesson, "No renewal")
    lid, origin = lesson["id"], lesson["whip_token"]
    # tokens carry whole seconds: a read a second later would be a second longer-lived
    await asyncio.sleep(1.2)
    status, read = await request(server, "GET", f"/api/lessons/{lid}", token=origin)
    assert status == 200 and read["whip_token"]
    assert expiry_of(read["whip_token"]) <= expiry_of(origin)
    assert expiry_of(read["whep_token"]) <= expiry_of(origin)
    assert read["teacher_url"].endswith(f"?token={read['whip_token']}")
    # nor does replacing the join link with it
    status, relinked = await request(server, "POST", f"/api/lessons/{lid}/rotate", token=origin)
    assert status == 200
    assert expiry_of(relinked["whip_token"]) <= expiry_of(origin)
    assert expiry_of(relinked["whep_token"]) <= expiry_of(origin)
    # the teacher's key still gets links of the full lifetime
    status, fresh = await request(server, "GET", f"/api/lessons/{lid}", token=server.teacher_key)
    assert status == 200 and expiry_of(fresh["whip_token"]) > expiry_of(origin)


async def test_the_teacher_replaces_a_leaked_teacher_link(server: Server) -> None:
    lesson = await asyncio.to_thread(server.create_lesson, "Leaked")
    lid, leaked, classroom = lesson["id"], lesson["whip_token"], lesson["whep_token"]
    publisher = await publish(lesson, 20.0)
    room = await whep_subscribe(lesson["whep_url"], classroom, name="Room 1")
    try:
        await room.wait_for_frames(5, 10)
        # the holder of the origin token cannot replace the teacher's link (nor lock them out)
        status, body = await request(
            server, "POST", f"/api/lessons/{lid}/rotate", token=leaked, body={"link": "origin"}
        )
        assert status == 403 and body["error"] == "key_required", body
        status, body = await request(
            server,
            "POST",
            f"/api/lessons/{lid}/rotate",
            token=server.teacher_key,
            body={"link": "nonsense"},
        )
        assert status == 400 and body["error"] == "bad_link"
        status, relinked = await request(
            server,
            "POST",
            f"/api/lessons/{lid}/rotate",
            token=server.teacher_key,
            body={"link": "origin"},
        )
        assert status == 200, relinked
        new = relinked["whip_token"]
        assert new != leaked and relinked["teacher_url"].endswith(f"?token={new}")
        # the join link is not touched
        assert relinked["whep_token"] != classroom  # a fresh token of the same link
        status, body = await request(server, "GET", f"/api/lessons/{lid}", token=classroom)
        assert status == 200

        # the leaked token is refused everywhere, at once
        for method, path in (
            ("GET", f"/api/lessons/{lid}"),
            ("POST", f"/api/lessons/{lid}/rotate"),
            ("POST", f"/api/lessons/{lid}/end"),
            ("GET", f"/api/lessons/{lid}/attendance"),
            ("GET", f"/api/recordings/{lid}"),
            ("POST", f"/api/recordings/{lid}/link"),
        ):
            status, body = await request(server, method, path, token=leaked)
            assert status == 401 and body["error"] == "token_revoked", (path, body)
        result = await post_offer(
            lesson["whip_url"] + "?source=courseware", leaked, await sdp_offer("publish")
        )
        assert result.status == 401 and json.loads(result.text)["error"] == "token_revoked"
        async with aiohttp.ClientSession() as http:
            try:
                await http.ws_connect(events_url(server, lid, leaked))
                raise AssertionError("the leaked link opened the events socket")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 401

        # the lesson goes on: the classroom still receives, the new teacher link works
        before = room.video_frames
        await room.wait_for_frames(before + 15, 10)
        status, body = await request(server, "GET", f"/api/lessons/{lid}", token=new)
        assert status == 200 and body["state"] == "live" and body["classrooms"] == 1
    finally:
        await room.close()
        await publisher.close()
    _, audit = await request(server, "GET", f"/api/audit?lesson={lid}", token=admin_key(server))
    rotations = [e for e in audit["entries"] if e["action"] == "link_rotated"]
    assert [e["detail"] for e in rotations] == ["teacher link, generation 1"]
