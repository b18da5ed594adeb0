"""The replay library in real Chromium: a replay link plays the lesson and seeks; the teacher
finds recordings by text, sees their details and thumbnails, and jumps to chapters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Response

from tests.server import Server
from tests.support.browser import open_page

from .conftest import LESSON_S
from .lessons import Recorded

pytestmark = pytest.mark.timeout(120)

VIDEO = "document.getElementById('{}')"


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} (not within {within:.0f} s; last: {last!r})")


async def video(page: Page, name: str = "main-video") -> dict[str, Any]:
    return dict(
        await page.evaluate(
            f"""() => {{
              const v = {VIDEO.format(name)};
              return {{time: v.currentTime, duration: v.duration, ready: v.readyState,
                       paused: v.paused, width: v.videoWidth,
                       frames: v.getVideoPlaybackQuality().totalVideoFrames}};
            }}"""
        )
    )


@pytest.mark.parametrize("name", ["vp8", "h264"])
async def test_replay_link_plays_the_lesson_and_seeking_to_the_middle_carries_on(
    library_server: Server,
    recorded: dict[str, Recorded],
    browser: Browser,
    artifacts: Path,
    name: str,
) -> None:
    lesson = recorded[name]
    status, link = library_server.request(
        "POST", f"/api/recordings/{lesson.lesson['id']}/link", token=library_server.teacher_key
    )
    assert status == 201
    page = await open_page(browser, link["url"])
    partial: list[Response] = []
    page.on("response", lambda r: partial.append(r) if r.status == 206 else None)

    await page.get_by_text(lesson.lesson["title"]).first.wait_for()
    await until(lambda: _ready(page), "the recording's metadata loads")
    state = await video(page)
    assert state["duration"] == pytest.approx(LESSON_S, abs=0.5)
    await page.evaluate(f"{VIDEO.format('main-video')}.play()")
    await until(lambda: _past(page, 1.0), "playback starts")
    assert (await video(page))["width"] == 320

    await page.evaluate(
        f"(() => {{ const v = {VIDEO.format('main-video')}; v.currentTime = v.duration / 2; }})()"
    )
    landed = await until(lambda: _seeked(page, LESSON_S / 2 - 1), "the seek lands in the middle")
    frames = (await video(page))["frames"]
    await until(lambda: _past(page, landed + 1.5), "playback goes on from the middle")
    after = await video(page)
    assert not after["paused"] and after["frames"] > frames + 20
    assert any(lesson.file.name in r.url for r in partial), "the player got no partial content"
    await page.screenshot(path=str(artifacts / f"library-player-{name}.png"))


async def _ready(page: Page) -> bool:
    return bool((await video(page))["ready"] >= 1)


async def _past(page: Page, seconds: float) -> float | None:
    time_now = (await video(page))["time"]
    return time_now if time_now > seconds else None


async def _seeked(page: Page, at_least: float) -> float | None:
    state = await video(page)
    return state["time"] if state["time"] >= at_least and state["ready"] >= 2 else None


async def test_teacher_finds_recordings_sees_details_and_jumps_to_a_chapter(
    library_server: Server, recorded: dict[str, Recorded], browser: Browser, artifacts: Path
) -> None:
    page = await open_page(browser, f"{library_server.url}/recordings")
    heading = page.locator("h1", has_text="录像库")
    await heading.wait_for()
    await page.fill("#key-input", library_server.teacher_key)
    await page.click("#key-form button[type=submit]")
    await until(lambda: _count(page, len(recorded)), "every recording is listed")
    await page.screenshot(path=str(artifacts / "library-teacher.png"), full_page=True)
    vp8 = page.locator(".recording-card", has_text=recorded["vp8"].lesson["title"])
    assert "王老师" in await vp8.inner_text()
    assert f"0:{LESSON_S:02.0f}" in await vp8.inner_text()
    await until(
        lambda: vp8.locator("img").evaluate("i => i.complete && i.naturalWidth > 0"),
        "the thumbnail shows",
    )

    await page.fill("#search", "王老师")
    await until(lambda: _count(page, 2), "the search keeps the two lessons of 王老师")
    await page.fill("#search", "")
    await until(lambda: _count(page, len(recorded)), "clearing the search lists all again")

    await page.locator(".recording-card", has_text="Courseware lesson").locator("button").click()
    await until(lambda: _ready(page), "the recording loads")
    assert await page.locator("#courseware-box").is_visible()
    chapter = page.locator("#chapters button")
    assert await chapter.count() == 1
    await chapter.click()
    shared_at = recorded["courseware"].recording["courseware"]["offset_s"]
    await until(
        lambda: _past(page, shared_at + 0.5), "the chapter plays from the courseware's start"
    )
    await until(
        lambda: _past_courseware(page), "the courseware plays alongside the teacher's picture"
    )
    await page.screenshot(path=str(artifacts / "library-courseware.png"))
    await page.click("#lang")
    await page.locator("h2", has_text="Chapters").wait_for()


async def _count(page: Page, n: int) -> bool:
    return bool(await page.locator(".recording-card").count() == n)


async def _past_courseware(page: Page) -> bool:
    state = await video(page, "courseware-video")
    return bool(state["time"] > 0.3 and not state["paused"])
