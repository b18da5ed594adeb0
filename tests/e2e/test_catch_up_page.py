"""A classroom that joins late rewinds the lesson in real Chromium: it sees the pictures the
teacher sent back then, catches up at 1.5×, and is back on the live picture at once when it
presses 回到直播. While it rewinds, the server sends it no live picture (its link would carry
the lesson twice). A classroom whose link was down for more than 20 s is offered what it
missed, and plays the lesson from where it lost it.

The lesson is 12 s old when the classroom joins (not a full lesson's minutes: what is shown
does not depend on how long ago the rewound moment is, and the suite stays short)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Browser, Page, expect

from tests.server import Server
from tests.support.browser import open_page, videos
from tests.support.cut import BrowserPath
from tests.support.media import encode_opus_clip, encode_vp8_clip, read_marker_from_luma
from tests.support.peers import whip_publish

from .test_pages import frames_grow, join, until

pytestmark = pytest.mark.timeout(150)

FPS = 30
JOIN_AT_S = 12.0
REWIND_TO_S = 5

# The picture a <video> shows now, as grey levels (the frame marker is black and white).
SHOWN = """
(id) => {
  const video = document.getElementById(id);
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0);
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const grey = new Array(canvas.width * canvas.height);
  for (let i = 0; i < grey.length; i++) {
    grey[i] = (rgba[4 * i] + rgba[4 * i + 1] + rgba[4 * i + 2]) / 3;
  }
  return {width: canvas.width, height: canvas.height, grey, time: video.currentTime,
          rate: video.playbackRate, muted: video.muted, paused: video.paused};
}
"""


async def shown(page: Page, video: str) -> dict[str, Any] | None:
    """The frame number drawn in the picture ``video`` shows, with its playing state."""
    picture = await page.evaluate(SHOWN, video)
    if picture is None:
        return None
    luma = np.array(picture.pop("grey"), dtype=np.float64).reshape(
        picture["height"], picture["width"]
    )
    marker = read_marker_from_luma(luma)
    return {**picture, "frame": None if marker is None else marker.index}


async def recorded_for(server: Server, lesson: dict[str, Any], seconds: float) -> float:
    """Wait until the lesson has ``seconds`` recorded; its start (server time)."""

    async def enough() -> float | None:
        status, info = await asyncio.to_thread(
            server.request,
            "GET",
            f"/api/lessons/{lesson['id']}/catch-up",
            token=lesson["whep_token"],
        )
        camera = info.get("sources", {}).get("camera") if status == 200 else None
        if camera and camera["recorded_until"] - camera["starts_at"] >= seconds:
            return float(camera["starts_at"])
        return None

    return float(await until(enough, f"{seconds} s recorded", within=seconds + 15, every=0.3))


async def link_of(server: Server, name: str) -> dict[str, Any] | None:
    """The classroom's link as ``/api/status`` shows it (what the server sends it)."""
    status = await asyncio.to_thread(server.status)
    return next((c for c in status["classrooms"] if c["name"] == name), None)


async def behind(page: Page) -> float:
    value = await page.get_attribute("#behind", "data-behind")
    return float(value) if value else float("inf")


async def test_a_late_classroom_rewinds_catches_up_and_returns_to_live(
    server: Server, browser: Browser, artifacts: Path
) -> None:
    lesson = await asyncio.to_thread(server.create_lesson, "三年级数学 · 回看")
    clip = encode_vp8_clip(30, fps=FPS, gop=FPS)
    publisher = await whip_publish(
        lesson["whip_url"], lesson["whip_token"], video=clip, audio=encode_opus_clip(30)
    )
    await publisher.wait_connected()
    await recorded_for(server, lesson, JOIN_AT_S - 1)

    room = await join(browser, lesson["join_url"], "三年级二班")
    await frames_grow(room, "camera-video", 10, within=10)  # the live picture plays
    live = await until(lambda: shown(room, "camera-video"), "the live picture shows a frame")
    assert live["frame"] >= (JOIN_AT_S - 1) * FPS, live["frame"]

    # 回看: back to second 5 of the lesson
    await room.click("#rewind")
    await expect(room.locator("#catch-up-panel")).to_be_visible()
    await room.locator("#rewind-at").fill(str(REWIND_TO_S))
    await room.click("#rewind-play")
    await expect(room.locator("#catch-up-video")).to_be_visible()

    async def rewound() -> dict[str, Any] | None:
        picture = await shown(room, "catch-up-video")
        return picture if picture and picture["frame"] is not None else None

    back = await until(rewound, "the rewound picture shows a frame", within=10)
    await room.screenshot(path=artifacts / "catch-up-rewound.png")
    # the frames the teacher sent at second 5 (a player starts a moment after the seek)
    assert REWIND_TO_S * FPS - 5 <= back["frame"] <= (REWIND_TO_S + 2) * FPS, back
    assert not back["muted"]  # the teacher's sound of back then
    assert (await videos(room))["camera-video"]["muted"]  # and not the live sound over it

    # the server holds the live picture back while the classroom watches the recording
    held = await until(
        lambda: _held(server, "三年级二班", True), "the live video held back", within=5
    )

    # catching up at 1.5×: live comes nearer
    await room.click("#rates [data-rate='1.5']")
    start = await until(lambda: behind(room), "how far behind live is shown")
    assert 3.0 <= start <= JOIN_AT_S + 2, start

    async def gaining() -> bool:
        return (await behind(room)) <= start - 1.0

    await until(gaining, "catching up at 1.5×", within=6)
    playing = await shown(room, "catch-up-video")
    assert playing is not None and playing["rate"] == 1.5 and not playing["paused"]
    assert playing["frame"] is None or playing["frame"] > back["frame"]
    still = await link_of(server, "三年级二班")
    assert still is not None and still["held"], still
    assert still["video_packets"] == held["video_packets"], (held, still)  # none sent

    # 回到直播: the live picture at once, with its sound
    await room.click("#back-live")
    clicked = time.monotonic()
    await expect(room.locator("#catch-up-video")).to_be_hidden(timeout=2000)
    await frames_grow(room, "camera-video", 10, within=2)
    resumed_after = time.monotonic() - clicked
    assert resumed_after <= 2.0, resumed_after
    now = await until(lambda: shown(room, "camera-video"), "the live picture shows a frame")
    assert now["frame"] >= live["frame"] + 4 * FPS, (now, live)  # live, not the recording
    assert not (await videos(room))["camera-video"]["muted"]
    again = await _held(server, "三年级二班", False)
    assert again and again["video_packets"] > held["video_packets"], (held, again)
    await room.screenshot(path=artifacts / "catch-up-live-again.png")
    await publisher.close()


async def _held(server: Server, name: str, held: bool) -> dict[str, Any] | None:
    link = await link_of(server, name)
    return link if link is not None and link["held"] is held else None


MISSED_CUT_S = 23.0  # a little more than the 20 s after which what was missed is offered


async def test_a_classroom_back_after_a_long_outage_is_offered_what_it_missed(
    server: Server, browser: Browser
) -> None:
    lesson = await asyncio.to_thread(server.create_lesson, "三年级数学 · 断网")
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(40, fps=FPS, gop=FPS),
        audio=encode_opus_clip(40),
    )
    path = BrowserPath()
    try:
        await publisher.wait_connected()
        room = await open_page(browser, None)
        await path.route(room)
        await room.goto(lesson["join_url"])
        await room.fill("#name-input", "五年级一班")
        await room.click("#name-form [type=submit]")
        await room.evaluate("window.__sameDocument = true")
        await frames_grow(room, "camera-video", 30, within=10)
        live = await until(lambda: shown(room, "camera-video"), "the live picture shows a frame")

        # the school's link goes down, media and web alike; the page reconnects by itself
        await room.context.set_offline(True)
        path.cut = True
        cut_from = time.monotonic()
        cut_at = await until(lambda: shown(room, "camera-video"), "the last live picture")
        await expect(room.locator("#status")).to_have_text("网络中断，正在重新连接…", timeout=10000)
        # the outage itself is what is tested: it lasts MISSED_CUT_S
        await asyncio.sleep(cut_from + MISSED_CUT_S - 2 - time.monotonic())
        await expect(room.locator("#missed")).to_be_hidden()  # nothing offered while down
        await asyncio.sleep(cut_from + MISSED_CUT_S - time.monotonic())
        path.cut = False
        await room.context.set_offline(False)
        await expect(room.locator("#missed")).to_be_visible(timeout=15000)
        await expect(room.locator("#missed-text")).to_have_text("错过的 1 分钟")
        await frames_grow(room, "camera-video", 10, within=5)  # live again underneath

        await room.click("#missed-watch")
        await expect(room.locator("#missed")).to_be_hidden()

        async def missed() -> dict[str, Any] | None:
            picture = await shown(room, "catch-up-video")
            return picture if picture and picture["frame"] is not None else None

        first = await until(missed, "what was missed plays", within=10)
        # from where the pictures stopped (the keyframe before, a moment after the seek)
        assert cut_at["frame"] - FPS - 5 <= first["frame"] <= cut_at["frame"] + 3 * FPS, (
            live,
            cut_at,
            first,
        )
        assert not first["muted"] and not first["paused"]
        assert await room.evaluate("window.__sameDocument === true")
    finally:
        path.close()
        await publisher.close()
