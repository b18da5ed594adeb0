"""WHIP/WHEP refuse what they cannot serve with a 4xx that says why, and stay healthy."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from tests.server import Server
from tests.signaling.test_tokens_http import recvonly_offer, sendonly_offer
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import new_peer_connection, post_offer, whep_subscribe, whip_publish


def _classrooms(server: Server, lesson: dict[str, Any]) -> int:
    _, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)
    return int(body["classrooms"])


async def _counted(server: Server, lesson: dict[str, Any], count: int) -> None:
    """Wait until the server counts ``count`` classrooms in the lesson (its end of ICE and
    DTLS may connect a moment after the classroom's)."""
    deadline = time.monotonic() + 5
    while _classrooms(server, lesson) != count:
        assert time.monotonic() < deadline, _classrooms(server, lesson)
        await asyncio.sleep(0.02)


def error(result) -> str:  # type: ignore[no-untyped-def]
    return json.loads(result.text)["error"]


async def test_malformed_offers(server: Server) -> None:
    lesson = server.create_lesson("Bad SDP")
    good = await sendonly_offer()
    bad_offers = {
        "": "malformed_sdp",
        "hello": "malformed_sdp",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n": "malformed_sdp",
        good.replace("a=fingerprint", "a=fingerprinx"): "malformed_sdp",
        good.replace("a=ice-ufrag", "a=ice-ufrax"): "malformed_sdp",
        re.sub(r"m=audio \d+", "m=audio x", good): "malformed_sdp",
        re.sub(r"(m=audio \S+ \S+) (\d+)", r"\1 opus", good): "malformed_sdp",
        good.replace("a=rtpmap:", "a=rtpmap:x"): "malformed_sdp",
        good + "m=\r\n": "malformed_sdp",
        good.replace("m=audio", "m=aUdio", 1): "malformed_sdp",
    }
    for offer, code in bad_offers.items():
        result = await post_offer(lesson["whip_url"], lesson["whip_token"], offer)
        assert result.status == 400, (offer[-80:], result.text)
        assert error(result) == code
        assert json.loads(result.text)["message"]
    status = server.status()
    assert status["peers"] == 0 and status["sessions"] == 0


async def test_unknown_media_section_bundled_with_others(server: Server) -> None:
    """aiortc makes no transport for a section of an unknown kind, and the sections bundled
    onto it would be left without one: the offer is refused before a peer is made."""
    lesson = server.create_lesson("Unknown section")
    offer = (await recvonly_offer()).replace("m=video", "m=vVdeo", 1)
    result = await post_offer(lesson["whep_url"], lesson["whep_token"], offer)
    assert result.status == 400, result.text
    assert error(result) == "malformed_sdp"
    assert "vVdeo" in json.loads(result.text)["message"]
    status = server.status()
    assert status["peers"] == 0 and status["sessions"] == 0


async def test_wrong_direction_and_content_type(server: Server) -> None:
    lesson = server.create_lesson("Directions")
    result = await post_offer(lesson["whip_url"], lesson["whip_token"], await recvonly_offer())
    assert result.status == 400 and "send" in json.loads(result.text)["message"]
    result = await post_offer(lesson["whep_url"], lesson["whep_token"], await sendonly_offer())
    assert result.status == 400 and "receive" in json.loads(result.text)["message"]
    status, body = server.request(
        "POST", f"/whip/{lesson['id']}", token=lesson["whip_token"], raw=b"{}"
    )
    assert status == 415 and body["error"] == "unsupported_media_type"
    status, body = server.request(
        "POST",
        f"/whip/{lesson['id']}?source=desktop",
        token=lesson["whip_token"],
        raw=(await sendonly_offer()).encode(),
        content_type="application/sdp",
    )
    assert status == 400 and body["error"] == "bad_source"
    status, body = server.request(
        "POST",
        f"/whip/{lesson['id']}",
        token=lesson["whip_token"],
        raw=b"v=0\r\n" + b"a=x\r\n" * 20000,
        content_type="application/sdp",
    )
    assert status == 413


async def test_no_usable_codec(server: Server) -> None:
    lesson = server.create_lesson("Codecs")
    offer = await sendonly_offer()
    only_g722 = "\r\n".join(
        line
        for line in offer.split("\r\n")
        if not (line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")) and "G722" not in line)
    )
    result = await post_offer(lesson["whip_url"], lesson["whip_token"], only_g722)
    assert result.status in (400, 406), result.text
    # the teacher sends VP8; a classroom that only takes H.264 is told so
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(1.0),
        audio=encode_opus_clip(1.0),
    )
    try:
        await publisher.wait_connected()
        for _ in range(50):
            if server.status()["producers"] >= 2:
                break
            import asyncio

            await asyncio.sleep(0.1)
        h264_only = await whep_subscribe(
            lesson["whep_url"], lesson["whep_token"], video_codecs=["H264"], check=False
        )
        assert h264_only.status == 406
    finally:
        await publisher.close()


async def test_ended_and_full_lessons(server: Server) -> None:
    lesson = server.create_lesson("Tiny", max_classrooms=1)
    first = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
    try:
        # a classroom takes its place once it has connected
        await first.wait_connected()
        await _counted(server, lesson, 1)
        second = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], check=False)
        assert second.status == 409
    finally:
        await first.close()
    # the place is free again once the first classroom left
    third = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
    await third.close()
    server.request("POST", f"/api/lessons/{lesson['id']}/end", token=server.teacher_key)
    result = await post_offer(lesson["whep_url"], lesson["whep_token"], await recvonly_offer())
    assert result.status == 410 and error(result) == "lesson_ended"
    result = await post_offer(lesson["whip_url"], lesson["whip_token"], await sendonly_offer())
    assert result.status == 410


async def test_delete_unknown_session(server: Server) -> None:
    lesson = server.create_lesson("Delete")
    status, body = server.request(
        "DELETE", f"/whep/{lesson['id']}/nope", token=lesson["whep_token"]
    )
    assert status == 404
    pc = new_peer_connection()
    await pc.close()


async def test_concurrent_joins_never_exceed_the_cap(server: Server) -> None:
    lesson = server.create_lesson("Rush", max_classrooms=2)
    import asyncio

    classrooms = await asyncio.gather(
        *(whep_subscribe(lesson["whep_url"], lesson["whep_token"], check=False) for _ in range(6))
    )
    try:
        # none of them had connected when they offered, so each got an answer (or a 409 if
        # two had connected by then); those that connect after the lesson filled are closed
        assert {c.status for c in classrooms} <= {201, 409}
        deadline = time.monotonic() + 10
        while True:
            counted = _classrooms(server, lesson)
            assert counted <= 2
            if counted == 2 and server.status()["sessions"] == 2:
                break
            assert time.monotonic() < deadline, (counted, server.status())
            await asyncio.sleep(0.05)
        # the classrooms closed by the server hear it (DTLS close_notify) a moment later
        while True:
            connected = [c for c in classrooms if c.pc.connectionState == "connected"]
            if len(connected) <= 2:
                break
            assert time.monotonic() < deadline + 10, [c.pc.connectionState for c in classrooms]
            await asyncio.sleep(0.05)
    finally:
        for classroom in classrooms:
            await classroom.close()
