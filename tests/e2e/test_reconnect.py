"""Network drops seen from the classroom page in real Chromium: the classroom's own path cut
for 10 s, and the teacher vanishing and coming back.

The classroom page's WHEP sessions run through a UDP relay of the test (tests/support/cut.py)
that can drop every datagram both ways; the server is not told anything.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.server import Server
from tests.support.browser import open_page, videos
from tests.support.cut import BrowserPath, PathCut
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Publisher, whip_publish

pytestmark = pytest.mark.timeout(120)

CUT_S = 10.0
BACK_WITHIN_S = 5.0
# the page's connections that receive the lesson (not the one sending the classroom's feed)
LESSON_CONNECTIONS = """window.__peerConnections.filter((pc) => !pc.getTransceivers().some(
  (t) => t.direction === 'sendonly' || t.direction === 'sendrecv'))"""


async def publish(lesson: dict[str, Any]) -> Publisher:
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(10.0),
        audio=encode_opus_clip(10.0),
    )
    await publisher.wait_connected()
    return publisher


async def join(
    browser: Browser, lesson: dict[str, Any], name: str, path: BrowserPath | None
) -> Page:
    room = await open_page(browser, None)
    if path is not None:
        await path.route(room)
    await room.goto(lesson["join_url"])
    await room.fill("#name-input", name)
    await room.click("#name-form [type=submit]")
    await room.evaluate("window.__sameDocument = true")
    return room


async def frames(room: Page) -> int:
    return int((await videos(room))["camera-video"]["frames"])


async def frames_grow(room: Page, by: int, within: float) -> float:
    """Wait until the camera picture shows ``by`` more frames; return how long it took."""
    start, began = await frames(room), time.monotonic()
    while await frames(room) < start + by:
        waited = time.monotonic() - began
        assert waited < within, f"the picture did not move within {within:.0f} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - began


class TeacherView:
    """What the teacher's page is told on the lesson's events socket, as it arrives."""

    def __init__(self, server: Server, lesson: dict[str, Any]) -> None:
        self.url = f"{server.url.replace('http', 'ws', 1)}/api/lessons/{lesson['id']}/events"
        self.token = lesson["whip_token"]
        self.classrooms: list[tuple[float, int]] = []  # (when, how many)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TeacherView:
        self._task = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _listen(self) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(self.url, headers={"Authorization": f"Bearer {self.token}"}) as ws,
        ):
            async for msg in ws:
                message = json.loads(msg.data)
                if message.get("type") != "lesson":
                    continue
                self.classrooms.append((time.monotonic(), message["classrooms"]))

    def count(self) -> int | None:
        return self.classrooms[-1][1] if self.classrooms else None

    async def until(self, count: int, within: float) -> float:
        began = time.monotonic()
        while self.count() != count:
            assert time.monotonic() - began < within, (count, self.classrooms)
            await asyncio.sleep(0.05)
        return time.monotonic()


async def test_classroom_page_resumes_within_5_s_of_a_10_s_cut_and_the_teacher_sees_it(
    server: Server, browser: Browser
) -> None:
    lesson = server.create_lesson("断网十秒", record=False)
    publisher = await publish(lesson)
    path = BrowserPath()
    try:
        async with TeacherView(server, lesson) as teacher:
            room = await join(browser, lesson, "山区小学", path)
            await frames_grow(room, 10, within=10)
            await teacher.until(1, within=5)

            path.cut = True
            cut_at = time.monotonic()
            # the classroom says what is going on, and the teacher sees the classroom leave
            await expect(room.locator("#status")).to_have_text(
                "网络中断，正在重新连接…", timeout=CUT_S * 1000
            )
            left_at = await teacher.until(0, within=CUT_S - (time.monotonic() - cut_at))
            await asyncio.sleep(cut_at + CUT_S - time.monotonic())
            assert path.dropped > 0
            sessions_before = path.sessions

            path.cut = False
            restored = time.monotonic()
            took = await frames_grow(room, 10, within=BACK_WITHIN_S)
            await expect(room.locator("#status")).to_be_hidden(timeout=1000)
            back_at = await teacher.until(1, within=BACK_WITHIN_S - (time.monotonic() - restored))
            print(
                f"reconnecting shown, left the roster {left_at - cut_at:.1f} s into the cut; "
                f"pictures back {took:.1f} s and in the roster {back_at - restored:.1f} s "
                f"after it; sessions through the relay {sessions_before} -> {path.sessions}"
            )
            assert await room.evaluate("window.__sameDocument === true")  # no reload
            states = await room.evaluate(f"{LESSON_CONNECTIONS}.map((pc) => pc.connectionState)")
            assert states.count("connected") == 1 and len(states) >= 2, states  # a new one
    finally:
        path.close()
        await publisher.close()


async def test_classroom_page_shows_the_teacher_reconnecting_and_plays_on_when_back(
    server: Server, browser: Browser
) -> None:
    lesson = server.create_lesson("老师掉线", record=False)
    publisher = await publish(lesson)
    room = await join(browser, lesson, "光明小学", None)
    await frames_grow(room, 10, within=10)
    await room.evaluate(f"window.__lesson = {LESSON_CONNECTIONS}[0]")

    PathCut().attach(publisher.pc).active = True  # the teacher's link dies without a goodbye
    vanished = time.monotonic()
    # first only "the picture is interrupted": for a few seconds this classroom cannot tell
    # its own dead link from the teacher's
    await expect(room.locator("#message-title")).to_have_text("老师的画面暂时中断", timeout=5000)
    await expect(room.locator("#message-title")).to_have_text("老师正在重新连接…", timeout=10000)
    print(f"teacher shown reconnecting {time.monotonic() - vanished:.1f} s after vanishing")
    await expect(room.locator("body")).to_have_attribute("data-screen", "away")
    await expect(room.locator("#status")).to_be_hidden()  # the classroom's own link is fine

    again = await publish(lesson)  # the teacher is back, on a new session
    try:
        await frames_grow(room, 10, within=10)
        await expect(room.locator("body")).to_have_attribute("data-screen", "playing")
        # the same page and the same connection carried on
        assert await room.evaluate("window.__sameDocument === true")
        open_ = await room.evaluate(
            f"{LESSON_CONNECTIONS}.filter((pc) => pc.connectionState !== 'closed')"
            ".map((pc) => [pc === window.__lesson, pc.connectionState])"
        )
        assert open_ == [[True, "connected"]], open_
    finally:
        await again.close()
        await publisher.close(delete=False)
