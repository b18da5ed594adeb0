"""The teacher and classroom pages in real Chromium: what a teacher and a classroom see.

Chromium runs headless with a fake camera, microphone and screen; every page gets its own
browser context (its own storage, as another machine would have). Screenshots go to
artifacts/.
"""

from __future__ import annotations

import asyncio
import io
import re
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import zxingcpp
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.server import Server, free_port, start_server
from tests.support.browser import launch, open_page, requested, stats, videos

pytestmark = pytest.mark.timeout(150)

PHONE = {"width": 390, "height": 844}
# The states of a page's receiving connections (WHEP), not of its return feed's (WHIP).
RECEIVING = """window.__peerConnections
  .filter((pc) => !pc.getSenders().some((sender) => sender.track))
  .map((pc) => pc.connectionState)"""


async def until(
    check: Callable[[], Awaitable[Any]], what: str, within: float = 10.0, every: float = 0.2
) -> Any:
    """Poll ``check`` until it returns something true; fail with ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"{what} (not within {within:.0f} s; last: {last!r})")


async def frames_grow(page: Page, video: str, by: int, within: float) -> None:
    """The ``<video id=video>`` presents ``by`` more decoded frames within ``within`` s."""
    start = (await videos(page))[video]["frames"]

    async def grown() -> bool:
        return bool((await videos(page))[video]["frames"] >= start + by)

    await until(grown, f"{video} shows {by} new frames", within)


async def audio_arrives(page: Page, packets: int, within: float) -> None:
    start = (await stats(page))["audioPackets"]

    async def arrived() -> bool:
        return bool((await stats(page))["audioPackets"] >= start + packets)

    await until(arrived, f"{packets} audio packets arrive", within)


async def join(browser: Browser, url: str, name: str, **options: Any) -> Page:
    """A classroom PC opens the join link and names the room (asked the first time)."""
    room = await open_page(browser, url, **options)
    await room.fill("#name-input", name)
    await room.click("#name-form [type=submit]")
    await room.evaluate("window.__sameDocument = true")
    return room


async def teach(browser: Browser, lesson: dict[str, Any], **options: Any) -> Page:
    """The teacher opens the lesson's teacher view and starts the lesson."""
    teacher = await open_page(browser, lesson["teacher_url"], **options)
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "ready")
    await teacher.click("#start")
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "live", timeout=10000)
    return teacher


async def end_lesson(teacher: Page) -> None:
    await teacher.click("#end")
    await expect(teacher.locator("#end")).to_have_text("确定结束？再点一次")
    await teacher.click("#end")
    await expect(teacher.locator("#state")).to_have_text("本节课已结束")


async def test_teacher_creates_a_lesson_and_two_classrooms_watch_it(
    server: Server, browser: Browser, artifacts: Path
) -> None:
    teacher = await open_page(browser, server.url + "/")
    await expect(teacher.locator("#key-card h2")).to_have_text("教师密钥")
    await teacher.fill("#key-input", server.teacher_key)
    await teacher.click("#key-form [type=submit]")
    await expect(teacher.locator("#create-card")).to_be_visible()
    await teacher.reload()  # the key is kept in the browser: asked only once
    await expect(teacher.locator("#create-card")).to_be_visible()
    await expect(teacher.locator("#key-form")).to_be_hidden()
    await expect(teacher.locator("#replay-link")).to_have_attribute("href", "/recordings")
    await teacher.fill("#lesson-title", "三年级数学 · 分数的初步认识")
    await teacher.fill("#lesson-max", "5")
    await teacher.screenshot(path=artifacts / "home.png")
    await teacher.click("#create")
    # the teacher link leaves the address bar at once (kept for the tab)
    await teacher.wait_for_url(re.compile(r"/lessons/[^/]+/teach$"))
    await expect(teacher.locator("#lesson-title")).to_have_text("三年级数学 · 分数的初步认识")
    await expect(teacher.locator("#state")).to_have_text("准备就绪，尚未开始上课")
    await frames_grow(teacher, "camera-preview", 10, within=5)  # the camera preview plays
    await teacher.click("#start")
    await expect(teacher.locator("#state")).to_have_text("直播中", timeout=10000)
    await expect(teacher.locator("#classroom-max")).to_have_text("/ 5")

    join_url = await teacher.input_value("#join-link")
    assert re.search(r"/lessons/[^/]+/join\?token=", join_url)
    rooms = []
    for name in ("希望小学 三年级一班", "光明小学 三年级二班"):
        room = await join(browser, join_url, name)
        rooms.append((room, time.monotonic()))
    for room, joined in rooms:
        # pictures and sound within 5 s of the classroom joining
        await frames_grow(room, "camera-video", 10, within=max(0.5, joined + 5 - time.monotonic()))
        await audio_arrives(room, 20, within=max(0.5, joined + 5 - time.monotonic()))
        await expect(room.locator("body")).to_have_attribute("data-screen", "playing")
        await expect(room.locator("#message-screen")).to_be_hidden()
        shown = (await videos(room))["camera-video"]
        assert shown["shownWidth"] == 1366 or shown["shownHeight"] == 768  # fills the screen
        assert not shown["paused"] and not shown["muted"]
    await expect(teacher.locator("#classroom-count")).to_have_text("2")
    await teacher.screenshot(path=artifacts / "teacher-live.png")
    first = rooms[0][0]
    await first.mouse.move(600, 300)  # shows the room's bar, as a person moving the mouse would
    await first.screenshot(path=artifacts / "classroom-playing.png")

    await teacher.click("#courseware-toggle")
    await expect(teacher.locator("#courseware-figure")).to_be_visible()
    await expect(teacher.locator("#courseware-live")).to_be_visible(timeout=5000)
    for room, _ in rooms:
        await frames_grow(room, "courseware-video", 10, within=10)
        await expect(room.locator("#room")).to_have_attribute("data-layout", "courseware")
        shown = await videos(room)
        # courseware large, the teacher small beside it, both moving
        assert shown["courseware-video"]["visible"]
        assert shown["courseware-video"]["shownWidth"] > 3 * shown["camera-video"]["shownWidth"]
        await frames_grow(room, "camera-video", 5, within=5)
    await teacher.screenshot(path=artifacts / "teacher-courseware.png")
    await first.screenshot(path=artifacts / "classroom-courseware.png")

    await teacher.click("#courseware-toggle")  # stopped: the teacher alone again
    for room, _ in rooms:
        await expect(room.locator("#room")).to_have_attribute("data-layout", "camera")
        assert not (await videos(room))["courseware-video"]["visible"]
    await expect(teacher.locator("#courseware-live")).to_be_hidden()
    for room, _ in rooms:
        assert await room.evaluate("window.__sameDocument === true")
    for page in (teacher, *(room for room, _ in rooms)):
        # nothing from a CDN or any other server: a school network may reach only this one
        elsewhere = [url for url in requested(page) if not url.startswith(server.url)]
        assert elsewhere == [], elsewhere


async def test_classroom_carries_on_through_a_teacher_reload_and_shows_the_end(
    server: Server, browser: Browser, artifacts: Path
) -> None:
    lesson = server.create_lesson("语文 · 静夜思")
    room = await join(browser, lesson["join_url"], "希望小学 二年级一班")
    await expect(room.locator("#message-title")).to_have_text("等待老师开始上课")
    await expect(room.locator("#message-lesson")).to_have_text("语文 · 静夜思")
    await expect(room.locator("#status")).to_be_hidden()  # connected, only the teacher is missing
    await room.screenshot(path=artifacts / "classroom-waiting.png")
    teacher = await teach(browser, lesson)
    await frames_grow(room, "camera-video", 10, within=5)
    await expect(teacher.locator("#classroom-count")).to_have_text("1")

    await teacher.reload()
    # the teacher's page picks the live lesson up again by itself
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "live", timeout=10000)
    await frames_grow(room, "camera-video", 10, within=10)
    await audio_arrives(room, 20, within=5)
    await expect(room.locator("body")).to_have_attribute("data-screen", "playing")
    # the same page and the same receiving connection: nobody touched the classroom
    assert await room.evaluate("window.__sameDocument === true")
    assert await room.evaluate(RECEIVING) == ["connected"]

    await end_lesson(teacher)
    await expect(room.locator("#message-title")).to_have_text("本节课已结束", timeout=5000)
    await expect(room.locator("body")).to_have_attribute("data-screen", "ended")
    await expect(teacher.locator("#closed")).to_be_visible()
    await room.screenshot(path=artifacts / "classroom-ended.png")
    await teacher.screenshot(path=artifacts / "teacher-ended.png")
    # a classroom opening the link afterwards is told at once, without being asked its name
    late = await open_page(browser, lesson["join_url"])
    await expect(late.locator("#message-title")).to_have_text("本节课已结束", timeout=5000)
    await expect(late.locator("#name-screen")).to_be_hidden()


async def test_both_pages_recover_by_themselves_after_the_network_drops(
    tmp_path: Path, browser: Browser
) -> None:
    port = free_port()
    server = start_server(tmp_path / "server", port=port)
    try:
        lesson = server.create_lesson("网络中断")
        teacher = await teach(browser, lesson)
        room = await join(browser, lesson["join_url"], "山区小学")
        await frames_grow(room, "camera-video", 10, within=5)
        server.stop(signal.SIGKILL)  # gone without a goodbye, as when a link drops
        await expect(room.locator("#status")).to_have_text("网络中断，正在重新连接…", timeout=15000)
        await expect(teacher.locator("#state")).to_have_attribute(
            "data-state", "reconnecting", timeout=15000
        )
        server = start_server(tmp_path / "server", port=port)
        await expect(teacher.locator("#state")).to_have_attribute(
            "data-state", "live", timeout=20000
        )
        await frames_grow(room, "camera-video", 10, within=20)
        await expect(room.locator("#status")).to_be_hidden()
        await expect(teacher.locator("#classroom-count")).to_have_text("1", timeout=10000)
        # a new WHEP session on the same page
        states = await room.evaluate(RECEIVING)
        assert len(states) >= 2 and states[-1] == "connected", states
        assert await room.evaluate("window.__sameDocument === true")
    finally:
        server.stop()


async def test_classroom_asks_for_a_click_when_the_browser_blocks_sound(
    server: Server, artifacts: Path
) -> None:
    lesson = server.create_lesson("音乐课")
    async with async_playwright() as playwright:
        # an ordinary desktop browser: sound needs a click on the page first
        browser = await launch(playwright, autoplay=False)
        try:
            await teach(browser, lesson)
            # a classroom PC named on an earlier day opens the link: nobody clicks anything
            room = await open_page(
                browser,
                None,
                storage_state={
                    "cookies": [],
                    "origins": [
                        {
                            "origin": server.url,
                            "localStorage": [
                                {"name": "syncclass.classroomName", "value": "音乐教室"}
                            ],
                        }
                    ],
                },
            )
            async with room.expect_response(
                lambda response: "/whep/" in response.url and response.status == 201
            ):
                await room.goto(lesson["join_url"])
            # hands off until the page has tried to play (right after the WHEP answer)
            await asyncio.sleep(1.0)
            await expect(room.locator("#name-screen")).to_be_hidden()
            prompt = room.locator("#sound")
            await expect(prompt).to_be_visible(timeout=10000)
            await expect(prompt).to_have_text("点击开启声音")
            await frames_grow(room, "camera-video", 10, within=5)  # the picture plays meanwhile
            assert (await videos(room))["camera-video"]["muted"]
            await room.screenshot(path=artifacts / "classroom-click-for-sound.png")
            await prompt.click()
            await expect(prompt).to_be_hidden()
            shown = (await videos(room))["camera-video"]
            assert not shown["muted"] and not shown["paused"]
        finally:
            await browser.close()


# a QR code reader: other formats' readers find barcodes in the QR modules now and then
QR_ONLY = zxingcpp.BarcodeFormat.QRCode


def _decode_png(png: bytes) -> np.ndarray:
    with av.open(io.BytesIO(png), format="png_pipe") as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="gray")


async def test_the_join_qr_code_scans_to_the_join_link(server: Server, browser: Browser) -> None:
    lesson = server.create_lesson("QR")
    teacher = await open_page(browser, lesson["teacher_url"])
    await expect(teacher.locator("#qr svg")).to_be_visible()
    image = _decode_png(await teacher.locator("#qr svg").screenshot())
    scanned = zxingcpp.read_barcodes(image, formats=QR_ONLY)
    assert [code.text for code in scanned] == [await teacher.input_value("#join-link")]
    assert scanned[0].text.startswith(f"{server.url}/lessons/{lesson['id']}/join?token=")

    # every size the encoder makes, L and M, each mask: a reader gets the text back
    cases = await teacher.evaluate(
        """async () => {
          const { encode } = await import('/static/js/qr.js');
          const out = [];
          for (const ecl of ['L', 'M']) {
            for (let length = 1, i = 0; length < 2400; length = Math.ceil(length * 1.25) + 3, i++) {
              const text = ('同步课堂 join?token=' + 'ab'.repeat(1200)).slice(0, length);
              const code = encode(text, { ecl, mask: i % 8 });
              out.push({ text, ecl, version: code.version,
                         rows: code.modules.map((r) => r.map((d) => (d ? 1 : 0))) });
            }
          }
          return out;
        }"""
    )
    versions = {case["version"] for case in cases}
    assert min(versions) == 1 and max(versions) >= 35, versions
    for case in cases:
        modules = np.array(case["rows"], dtype=np.uint8)
        picture = np.pad(1 - modules, 4, constant_values=1) * 255  # dark modules are black
        picture = np.kron(picture, np.ones((4, 4), dtype=np.uint8))
        scanned = zxingcpp.read_barcodes(picture.astype(np.uint8), formats=QR_ONLY)
        assert [code.text for code in scanned] == [case["text"]], (case["ecl"], case["version"])
        assert scanned[0].ec_level == case["ecl"]


async def test_pages_are_chinese_first_switch_to_english_and_fit_a_phone(
    server: Server, browser: Browser, artifacts: Path
) -> None:
    lesson = server.create_lesson("科学 · 植物的一生")
    phone = {**PHONE, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
    home = await open_page(browser, server.url + "/", **phone)
    assert await home.evaluate("document.documentElement.lang") == "zh-CN"
    await expect(home.locator("#key-card h2")).to_have_text("教师密钥")
    await home.screenshot(path=artifacts / "phone-home.png")
    await home.click("#lang")
    await expect(home.locator("#key-card h2")).to_have_text("Teacher key")
    await home.reload()
    await expect(home.locator("#key-card h2")).to_have_text("Teacher key")  # kept
    await expect(home.locator("#lang")).to_have_text("中文")

    teacher = await teach(browser, lesson, **phone)
    await expect(teacher.locator("#state")).to_have_text("直播中")
    await teacher.screenshot(path=artifacts / "phone-teacher.png", full_page=True)
    room = await join(browser, lesson["join_url"], "一班", **phone)
    await frames_grow(room, "camera-video", 10, within=5)
    await room.screenshot(path=artifacts / "phone-classroom.png")
    await room.click("#lang")
    await expect(room.locator("#room-name")).to_have_text("Classroom: 一班")
    await teacher.click("#lang")
    await expect(teacher.locator("#state")).to_have_text("Live")
    await expect(teacher.locator("#start")).to_be_hidden()
    for page in (home, teacher, room):
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{page.url} is wider than a phone by {overflow} px"
