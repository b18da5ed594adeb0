"""A WHIP/WHEP session is ended by whoever opened it, or by the teacher: all classrooms share
one token, so a classroom cannot end another classroom's session nor the teacher's."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.server import Server
from tests.signaling.test_tokens_http import recvonly_offer, sendonly_offer
from tests.support.media import encode_opus_clip
from tests.support.peers import post_offer, whep_subscribe, whip_publish


async def _open(url: str, token: str, offer: str) -> str:
    """The session URL (path and query) of a session opened with ``offer``."""
    result = await post_offer(url, token, offer)
    assert result.status == 201, result.text
    assert result.location is not None
    parts = urlsplit(result.location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _delete(server: Server, path: str, token: str) -> tuple[int, Any]:
    return server.request("DELETE", path, token=token)


def _bare(path: str) -> str:
    return path.split("?", 1)[0]


async def test_a_classroom_ends_only_its_own_sessions(server: Server) -> None:
    lesson = server.create_lesson("Owners")
    whep, whip = lesson["whep_url"], lesson["whip_url"]
    classroom, teacher = lesson["whep_token"], lesson["whip_token"]
    receive = await recvonly_offer()
    teacher_camera = await _open(whip, teacher, await sendonly_offer())
    teacher_watch = await _open(f"{whep}?source=feed:Room%20A", teacher, receive)
    room_a = await _open(f"{whep}?name=Room%20A&client=room-a-client", classroom, receive)
    room_b = await _open(f"{whep}?name=Room%20B&client=room-b-client", classroom, receive)
    unnamed = await _open(whep, classroom, receive)
    # a classroom's session URL says who opened it
    assert parse_qs(urlsplit(room_a).query) == {"name": ["Room A"], "client": ["room-a-client"]}
    assert "?" not in teacher_camera and "?" not in teacher_watch

    b_owner = urlsplit(room_b).query
    refused = [
        _bare(room_a),  # no owner named
        f"{_bare(room_a)}?{b_owner}",  # another classroom's name and client
        f"{_bare(room_a)}?name=Room%20A",  # the right name, no client
        f"{_bare(room_a)}?name=Room%20A&client=room-b-client",  # the wrong client
        f"{_bare(unnamed)}?{b_owner}",
        teacher_camera,
        f"{teacher_camera}?{b_owner}",
        teacher_watch,
        f"{teacher_watch}?{b_owner}",
    ]
    for path in refused:
        status, body = _delete(server, path, classroom)
        assert status == 403, (path, status, body)
        assert body["error"] == "not_your_session"
    assert server.status()["sessions"] == 5

    # each classroom ends its own; the teacher ends any, with or without the owner's query
    assert _delete(server, room_a, classroom) == (200, {"deleted": _bare(room_a).rsplit("/")[-1]})
    assert _delete(server, unnamed, classroom)[0] == 200
    assert _delete(server, _bare(room_b), teacher)[0] == 200
    assert _delete(server, teacher_watch, teacher)[0] == 200
    assert _delete(server, teacher_camera, teacher)[0] == 200
    assert server.status()["sessions"] == 0


async def test_a_classroom_ends_its_return_feed_not_another_ones(server: Server) -> None:
    """The return feed's session URL carries its classroom too."""
    lesson = server.create_lesson("Feed owners")
    classroom = lesson["whep_token"]
    owners = {room: f"name={room}&client={room}-client-id" for room in ("Oak", "Ash")}
    watching = [
        await whep_subscribe(f"{lesson['whep_url']}?{owner}", classroom, name=room)
        for room, owner in owners.items()
    ]
    try:
        for room in watching:
            await room.wait_connected()
        # the server's end of ICE and DTLS may connect a moment after the classroom's
        deadline = time.monotonic() + 5
        while server.request("GET", f"/api/lessons/{lesson['id']}", token=classroom)[1][
            "classrooms"
        ] != len(watching):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        feed = await whip_publish(
            f"{lesson['whip_url']}?source=feed&{owners['Oak']}",
            classroom,
            video=None,
            audio=encode_opus_clip(2),
        )
        assert feed.session_url is not None
        feed_path = urlsplit(feed.session_url).path
        assert urlsplit(feed.session_url).query == owners["Oak"]
        for path in (feed_path, f"{feed_path}?{owners['Ash']}"):
            status, body = _delete(server, path, classroom)
            assert (status, body["error"]) == (403, "not_your_session"), path
        assert await feed.close() == 200
    finally:
        for room in watching:
            await room.close()
