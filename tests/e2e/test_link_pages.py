"""Links in real Chromium: a replaced join link says it no longer works, the teacher page keeps
its link out of the address bar and carries on when the teacher replaces it, and the pages of a
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
    # said at once, before the room is asked its name
    old = await open_page(browser, lesson["join_url"])
    await expect(old.locator("body")).to_have_attribute("data-screen", "invalid")
    await expect(old.locator("#name-screen")).to_be_hidden()
    new = await _join(browser, relinked["join_url"])
    await expect(new.locator("body")).to_have_attribute("data-screen", "waiting")


async def test_pages_of_an_ended_lesson_say_it_ended(server: Server, browser: Browser) -> None:
    lesson = server.create_lesson("Over")
    status, _ = server.request(
        "POST", f"/api/lessons/{lesson['id']}/end", token=lesson["whip_token"]
    )
    assert status == 200
    room = await open_page(browser, lesson["join_url"])
    await expect(room.locator("body")).to_have_attribute("data-screen", "ended")
    await expect(room.locator("#name-screen")).to_be_hidden()
    teacher = await open_page(browser, lesson["teacher_url"])
    await expect(teacher.locator("#state")).to_have_text("本节课已结束")


async def test_the_teacher_page_keeps_its_link_out_of_the_address_bar(
    server: Server, browser: Browser
) -> None:
    lesson = server.create_lesson("Hidden link")
    teacher = await open_page(browser, lesson["teacher_url"])
    await expect(teacher.locator("#state")).to_have_text("准备就绪，尚未开始上课")
    assert teacher.url == f"{server.url}/lessons/{lesson['id']}/teach"
    assert lesson["whip_token"] not in teacher.url
    # kept for the tab: a reload still opens the lesson
    await teacher.reload()
    await expect(teacher.locator("#state")).to_have_text("准备就绪，尚未开始上课")
    await expect(teacher.locator("#lesson-title")).to_have_text("Hidden link")

    # the teacher replaces the link with their key; the leaked one opens nothing any more
    status, relinked = server.request(
        "POST",
        f"/api/lessons/{lesson['id']}/rotate",
        token=server.teacher_key,
        body={"link": "origin"},
    )
    assert status == 200, relinked
    leaked = await open_page(browser, lesson["teacher_url"])
    await expect(leaked.locator("#state")).to_have_text("此授课链接无效或已过期。")
    # the teacher's own browser keeps the key (from the home page): its page carries on
    await teacher.evaluate(
        "key => localStorage.setItem('syncclass.teacherKey', key)", server.teacher_key
    )
    await teacher.reload()
    await expect(teacher.locator("#state")).to_have_text("准备就绪，尚未开始上课")
    kept = await teacher.evaluate(f"sessionStorage.getItem('syncclass.teach.{lesson['id']}')")
    assert kept != lesson["whip_token"]
    status, _ = server.request("GET", f"/api/lessons/{lesson['id']}", token=kept)
    assert status == 200


async def test_a_taken_name_is_asked_again_in_plain_sight(server: Server, browser: Browser) -> None:
    lesson = server.create_lesson("Same name")
    first = await _join(browser, lesson["join_url"])
    await expect(first.locator("body")).to_have_attribute("data-screen", "waiting")
    await expect(first.locator("#status")).to_be_hidden(timeout=15000)  # connected
    second = await _join(browser, lesson["join_url"])  # another PC, the same name
    await expect(second.locator("#name-problem")).to_contain_text("请换一个名称", timeout=15000)
    await expect(second.locator("#message-screen")).to_be_hidden()
    await second.fill("#name-input", "Room 2")
    await second.click("#name-form [type=submit]", timeout=5000)
    await expect(second.locator("#name-screen")).to_be_hidden()
