"""An offer with more media sections than its endpoint can use, or sections that list far
more codecs, extensions or attributes than any real client offers, is refused with a 400
before a peer connection is made for it; real offers still work beside it."""

from __future__ import annotations

import asyncio
import json
import re
import time

from media.offer import MAX_ATTRIBUTES, MAX_CODECS, MAX_EXTENSIONS
from tests.server import Server
from tests.signaling.test_tokens_http import recvonly_offer, sendonly_offer
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import delete_session, post_offer, whep_subscribe, whip_publish


def _split(sdp: str) -> tuple[list[str], list[list[str]]]:
    """The session-level lines, and each media section's lines."""
    lines = sdp.strip().split("\r\n")
    head: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    return head, sections


def with_sections(sdp: str, kind: str, count: int) -> str:
    """``sdp`` with its first ``kind`` section repeated until it has ``count`` of them, each
    with a mid of its own and bundled with the others, as a browser would offer them."""
    head, sections = _split(sdp)
    model = next(s for s in sections if s[0].startswith(f"m={kind} "))
    have = sum(1 for s in sections if s[0].startswith(f"m={kind} "))
    for n in range(count - have):
        sections.append([re.sub(r"^a=mid:.*", f"a=mid:{kind[0]}{n}", line) for line in model])
    mids = [line[6:] for s in sections for line in s if line.startswith("a=mid:")]
    head = [
        "a=group:BUNDLE " + " ".join(mids) if line.startswith("a=group:BUNDLE") else line
        for line in head
    ]
    return "\r\n".join(head + [line for s in sections for line in s]) + "\r\n"


def padded(sdp: str, kind: str, make_line, count: int) -> str:  # type: ignore[no-untyped-def]
    """``sdp`` with ``count`` lines made by ``make_line(i)`` added to its first ``kind``
    section."""
    head, sections = _split(sdp)
    section = next(s for s in sections if s[0].startswith(f"m={kind} "))
    section.extend(make_line(i) for i in range(count))
    return "\r\n".join(head + [line for s in sections for line in s]) + "\r\n"


async def _refused(server: Server, url: str, token: str, offer: str, code: str) -> None:
    result = await post_offer(url, token, offer)
    assert result.status == 400, (result.status, result.text)
    body = json.loads(result.text)
    assert body["error"] == code, body
    assert body["message"]
    status = server.status()
    assert status["peers"] == 0 and status["sessions"] == 0, status


async def test_whep_refuses_more_sections_than_the_stage_has(server: Server) -> None:
    lesson = server.create_lesson("Many sections")
    url, token = lesson["whep_url"], lesson["whep_token"]
    offer = await recvonly_offer()
    for kind, allowed in (("video", 5), ("audio", 4)):
        await _refused(
            server, url, token, with_sections(offer, kind, allowed + 1), "too_many_media_sections"
        )
    # hundreds, as an attacker would send: refused just the same, before any peer
    small = "".join(
        f"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:y{n}\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n"
        for n in range(300)
    )
    await _refused(server, url, token, offer + small, "too_many_media_sections")
    # what the classroom page offers (5 video + 4 audio) is served
    full = with_sections(with_sections(offer, "video", 5), "audio", 4)
    result = await post_offer(f"{url}?name=Full", token, full)
    assert result.status == 201, result.text
    assert server.status()["peers"] == 1
    assert result.location is not None
    assert await delete_session(result.location, token) == 200


async def test_whip_and_feeds_take_one_picture_and_one_sound(server: Server) -> None:
    lesson = server.create_lesson("Publisher sections")
    offer = await sendonly_offer()  # one audio section
    await _refused(
        server,
        lesson["whip_url"],
        lesson["whip_token"],
        with_sections(offer, "audio", 2),
        "too_many_media_sections",
    )
    await _refused(
        server,
        f"{lesson['whep_url']}?source=feed:Nowhere",
        lesson["whip_token"],
        with_sections(await recvonly_offer(), "video", 2),
        "too_many_media_sections",
    )
    # a classroom's return feed: joined, then a feed of two sound sections is refused
    teacher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(1.0),
        audio=encode_opus_clip(1.0),
    )
    classroom = await whep_subscribe(
        f"{lesson['whep_url']}?name=A&client=client-aaaa", lesson["whep_token"]
    )
    try:
        await classroom.wait_connected()
        # a feed is taken from a classroom the server has seen connect
        deadline = time.monotonic() + 5
        while (
            server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)[1][
                "classrooms"
            ]
            != 1
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        before = server.status()
        result = await post_offer(
            f"{lesson['whip_url']}?source=feed&name=A&client=client-aaaa",
            lesson["whep_token"],
            with_sections(offer, "audio", 2),
        )
        assert result.status == 400, result.text
        assert json.loads(result.text)["error"] == "too_many_media_sections"
        after = server.status()
        assert (after["peers"], after["sessions"]) == (before["peers"], before["sessions"])
    finally:
        await classroom.close()
        await teacher.close()


async def test_sections_with_too_much_in_them(server: Server) -> None:
    lesson = server.create_lesson("Heavy sections")
    url, token = lesson["whep_url"], lesson["whep_token"]
    offer = await recvonly_offer()
    codecs = padded(offer, "video", lambda i: f"a=rtpmap:{i % 128} VP8/90000", MAX_CODECS + 1)
    await _refused(server, url, token, codecs, "offer_too_complex")
    extensions = padded(
        offer, "video", lambda i: f"a=extmap:{i % 14 + 1} urn:x-syncclass:test{i}", MAX_EXTENSIONS
    )
    await _refused(server, url, token, extensions, "offer_too_complex")
    attributes = padded(offer, "audio", lambda i: f"a=x-filler:{i}", MAX_ATTRIBUTES)
    await _refused(server, url, token, attributes, "offer_too_complex")
    # session-level attributes are bounded too
    head, rest = offer.split("\r\nm=", 1)
    filler = "".join(f"\r\na=x-filler:{i}" for i in range(MAX_ATTRIBUTES + 1))
    await _refused(server, url, token, f"{head}{filler}\r\nm={rest}", "offer_too_complex")
    # the same offer with room to spare is a classroom
    result = await post_offer(f"{url}?name=Plain", token, offer)
    assert result.status == 201, result.text
    assert result.location is not None
    assert await delete_session(result.location, token) == 200
