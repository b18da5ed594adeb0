"""A classroom that joins late rewinds the lesson in real Chromium: it sees the pictures the
teacher sent back then, catches up at 1.5×, and is back on the live picture at once when it
presses 回到直播.

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
from tests.support.browser import videos
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
    await room.screenshot(path=artifacts / "catch-up-live-again.png")
    await publisher.close()
