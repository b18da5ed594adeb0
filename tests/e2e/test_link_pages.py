"""Links in real Chromium: a replaced join link says it no longer works, and the pages of a
lesson that has ended say so at once (the lesson's tokens are refused after its end)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.server import Server
from tests.support.browser import open_page

pytestmark = pytest.mark.timeout(120)


async def _join(browser: Browser, url: str) -> Page:
    room = await open_page(browser, url)
    await room.fill("#name-input", "Room 1")
    await room.click("#name-form [type=submit]")
    return room


async def test_a_replaced_join_link_says_it_no_longer_works(
    server: Server, browser: Browser
) -> None:
    lesson = server.create_lesson("Re-linked")
    status, relinked = server.request(
        "POST", f"/api/lessons/{lesson['id']}/rotate", token=server.teacher_key
    )
    assert status == 200
    old = await _join(browser, lesson["join_url"])
    await expect(old.locator("body")).to_have_attribute("data-screen", "invalid")
    new = await _join(browser, relinked["join_url"])
    await expect(new.locator("body")).to_have_attribute("data-screen", "waiting")


async def test_pages_of_an_ended_lesson_say_it_ended(server: Server, browser: Browser) -> None:
    lesson = server.create_lesson("Over")
    status, _ = server.request(
        "POST", f"/api/lessons/{lesson['id']}/end", token=lesson["whip_token"]
    )
    assert status == 200
    room = await _join(browser, lesson["join_url"])
    await expect(room.locator("body")).to_have_attribute("data-screen", "ended")
    teacher = await open_page(browser, lesson["teacher_url"])
    await expect(teacher.locator("#state")).to_have_text("本节课已结束")
