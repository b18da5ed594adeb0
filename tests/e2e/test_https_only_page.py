"""A school whose firewall lets out nothing but HTTPS to the web server: no UDP, no TCP to the
server's media port, no TURN server configured. The classroom page, in real Chromium, finds
no WebRTC path, falls back to its last rung and plays the lesson a few seconds behind over
HTTPS, with the teacher's sound, says 延迟观看 — 网络受限, and its hand still goes up.

The browser runs as the user nobody; an nftables rule of the test's namespace drops that
user's UDP and its TCP to the server's ICE-TCP port (tests/support/no_udp.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from tests.server import Server
from tests.support.browser import launch
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.no_udp import tcp_dropped, udp_blocked_for_nobody, udp_dropped
from tests.support.peers import whip_publish

from .test_catch_up_page import FPS, shown
from .test_pages import frames_grow, join, until

pytestmark = pytest.mark.timeout(150)

BEHIND_AT_MOST_S = 8.0  # a test's bound; the bench measures the median delay


async def test_a_classroom_without_any_webrtc_path_watches_over_https(server: Server) -> None:
    lesson = await asyncio.to_thread(server.create_lesson, "只通 HTTPS")
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(40, fps=FPS, gop=FPS),
        audio=encode_opus_clip(40),
    )
    [tcp_port] = [port["port"] for port in (await asyncio.to_thread(server.status))["tcp_ports"]]
    try:
        await publisher.wait_connected()
        with udp_blocked_for_nobody(tcp_ports=[tcp_port]) as chromium_as_nobody:
            async with async_playwright() as playwright:
                browser = await launch(playwright, executable=chromium_as_nobody)
                try:
                    room = await join(browser, lesson["join_url"], "山里小学")
                    await expect(room.locator("#status")).to_have_text(
                        "延迟观看 — 网络受限", timeout=25000
                    )
                    await frames_grow(room, "catch-up-video", 30, within=15)
                    await _plays_behind_live(room, publisher)
                    # nothing direct got through: the browser tried, the firewall dropped it
                    assert udp_dropped() > 0 and tcp_dropped() > 0

                    # the hand goes up over the events socket all the same
                    await room.click("#hand")
                    await expect(room.locator("#hand")).to_have_attribute("aria-pressed", "true")

                    async def hand_seen() -> bool:
                        status, live = await asyncio.to_thread(
                            server.request, "GET", "/api/live", token=server.teacher_key
                        )
                        assert status == 200, live
                        mine = [x for x in live["lessons"] if x["id"] == lesson["id"]]
                        return bool(mine and mine[0]["hands"] == 1)

                    await until(hand_seen, "the teacher sees the raised hand", within=5)
                finally:
                    await browser.close()
    finally:
        await publisher.close()


async def _plays_behind_live(room: Any, publisher: Any) -> None:
    """What the page shows is the lesson a few seconds ago, with its sound."""

    async def numbered() -> dict[str, Any] | None:
        picture = await shown(room, "catch-up-video")
        return picture if picture and picture["frame"] is not None else None

    samples = []
    for _ in range(3):
        picture = await until(numbered, "the delayed picture shows a frame", within=5)
        sent = publisher.video_track.frames_sent
        samples.append((sent - picture["frame"]) / FPS)
        await asyncio.sleep(1.0)
    behind = sorted(samples)[1]
    assert 0 < behind <= BEHIND_AT_MOST_S, samples
    assert not picture["muted"] and not picture["paused"]
    audio = await room.evaluate(
        "document.getElementById('catch-up-video').webkitAudioDecodedByteCount"
    )
    assert audio > 0
    print(f"delayed view behind live: {samples} s")
