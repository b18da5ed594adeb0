"""A classroom PC left on a course link, in real Chromium: it enters each timetabled lesson by
itself while the teacher's camera publishes, goes back to the next lesson's countdown between
them, and is let go at once (and no other classroom) when its own link is revoked; a one-off
lesson's link still works as before; the teacher's home page shows the timetable and refuses
a clash with a clear message."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from tests.server import Server, start_server
from tests.support.browser import open_page
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Publisher, whip_publish

pytestmark = pytest.mark.timeout(120)
ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # lessons open 2 s before their start, and one nobody teaches ends 3 s after its end
    instance = start_server(
        tmp_path_factory.mktemp("server"),
        "--timezone",
        "Asia/Shanghai",
        "--join-early",
        "2",
        "--end-grace",
        "3",
    )
    yield instance
    instance.stop()


@pytest.fixture
async def publishers() -> AsyncIterator[list[Publisher]]:
    made: list[Publisher] = []
    yield made
    for publisher in made:
        await publisher.close()


def _course(server: Server, title: str, classrooms: list[str]) -> dict[str, Any]:
    status, course = server.request(
        "POST",
        "/api/courses",
        token=server.teacher_key,
        body={"title": title, "classrooms": classrooms},
    )
    assert status == 201, course
    return dict(course)


def _lesson_at(server: Server, course: dict[str, Any], start: dt.datetime, seconds: int) -> str:
    status, made = server.request(
        "POST",
        f"/api/courses/{course['id']}/lessons",
        token=server.teacher_key,
        body={"date": str(start.date()), "time": f"{start:%H:%M:%S}", "seconds": seconds},
    )
    assert status == 201, made
    return str(made["lessons"][0]["id"])


async def _teach(server: Server, lesson_id: str, publishers: list[Publisher]) -> str:
    """The teacher's camera publishes in the lesson; the teacher's token."""
    status, lesson = server.request("GET", f"/api/lessons/{lesson_id}", token=server.teacher_key)
    assert status == 200, lesson
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(10),
        audio=encode_opus_clip(10),
    )
    publishers.append(publisher)
    return str(lesson["whip_token"])


async def _classroom_pc(browser: Browser, url: str, *, click: bool = True) -> Page:
    page = await open_page(browser, url)
    if click:  # the one click, for sound, before the first lesson
        await page.click("#start")
        await expect(page.locator("#start-screen")).to_be_hidden()
    return page


async def test_a_classroom_pc_enters_two_lessons_by_itself(
    server: Server, browser: Browser, publishers: list[Publisher]
) -> None:
    course = _course(server, "三年级数学", ["石门小学"])
    now = dt.datetime.now(ZONE)
    first = _lesson_at(server, course, now + dt.timedelta(seconds=4), 12)
    second = _lesson_at(server, course, now + dt.timedelta(seconds=20), 12)
    room = await _classroom_pc(browser, course["classroom_links"][0]["url"])
    await expect(room.locator("body")).to_have_attribute("data-screen", "waiting")
    await expect(room.locator("#next-title")).to_contain_text("三年级数学（第 1 课）")
    await expect(room.locator("#countdown")).to_have_text(re.compile(r"还有 00:00:0\d"))

    # the lesson opens: the page is in it with no click, and plays once the teacher publishes
    await room.wait_for_url(re.compile(f"/lessons/{first}/join"), timeout=10000)
    token = await _teach(server, first, publishers)
    await expect(room.locator("body")).to_have_attribute("data-screen", "playing", timeout=10000)
    await expect(room.locator("#bar-lesson")).to_have_text("三年级数学")
    status, lesson = server.request("GET", f"/api/lessons/{first}", token=server.teacher_key)
    assert lesson["state"] == "live" and lesson["classrooms"] == 1
    # the teacher ends early: back to the countdown of the next lesson
    status, _ = server.request("POST", f"/api/lessons/{first}/end", token=token)
    assert status == 200
    await room.wait_for_url(re.compile(f"/courses/{course['id']}/room"), timeout=10000)
    await expect(room.locator("body")).to_have_attribute("data-screen", "waiting")
    await expect(room.locator("#next-title")).to_contain_text("（第 2 课）")

    # and into the second one by itself, under the name its own link fixes
    await room.wait_for_url(re.compile(f"/lessons/{second}/join"), timeout=15000)
    token = await _teach(server, second, publishers)
    await expect(room.locator("body")).to_have_attribute("data-screen", "playing", timeout=10000)
    status, report = server.request(
        "GET", f"/api/lessons/{second}/attendance", token=server.teacher_key
    )
    assert status == 200, report
    assert [room["name"] for room in report["classrooms"]] == ["石门小学"]
    # a reload lands where it should be: still in the lesson
    await room.reload()
    await expect(room.locator("body")).to_have_attribute("data-screen", "playing", timeout=10000)
    assert server.request("POST", f"/api/lessons/{second}/end", token=token)[0] == 200


async def test_revoking_one_classrooms_link_lets_that_one_go_at_once(
    server: Server, browser: Browser, publishers: list[Publisher]
) -> None:
    course = _course(server, "四年级语文", ["东山小学", "西山小学"])
    lesson = _lesson_at(server, course, dt.datetime.now(ZONE) + dt.timedelta(seconds=1), 60)
    await _teach(server, lesson, publishers)
    # a lesson on now: the pages go straight in, no click asked for
    east, west = [
        await _classroom_pc(browser, link["url"], click=False) for link in course["classroom_links"]
    ]
    for page in (east, west):
        await expect(page.locator("body")).to_have_attribute(
            "data-screen", "playing", timeout=15000
        )
    status, _ = server.request(
        "POST",
        f"/api/courses/{course['id']}/links/revoke",
        token=server.teacher_key,
        body={"classroom": "东山小学"},
    )
    assert status == 200
    await east.wait_for_url(re.compile(f"/courses/{course['id']}/room"), timeout=15000)
    await expect(east.locator("body")).to_have_attribute("data-screen", "invalid")
    await expect(east.locator("#wait-problem")).to_have_text(re.compile("停用"))
    await expect(west.locator("body")).to_have_attribute("data-screen", "playing")
    status, state = server.request("GET", f"/api/lessons/{lesson}", token=server.teacher_key)
    assert state["classrooms"] == 1


async def test_a_one_off_lessons_link_still_works(
    server: Server, browser: Browser, publishers: list[Publisher]
) -> None:
    lesson = server.create_lesson("临时课")
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(10),
        audio=encode_opus_clip(10),
    )
    publishers.append(publisher)
    room = await open_page(browser, lesson["join_url"])
    await room.fill("#name-input", "Room 1")
    await room.click("#name-form [type=submit]")
    await expect(room.locator("body")).to_have_attribute("data-screen", "playing", timeout=10000)


async def test_the_home_page_shows_the_timetable_and_refuses_a_clash(
    server: Server, browser: Browser
) -> None:
    home = await open_page(browser, server.url + "/")
    await home.fill("#key-input", server.teacher_key)
    await home.click("#key-form [type=submit]")
    await expect(home.locator("#schedule-card")).to_be_visible()
    day = dt.datetime.now(ZONE).date() + dt.timedelta(days=1)
    await home.select_option("#schedule-course", "")
    await home.fill("#course-title", "五年级科学")
    await home.fill("#course-classrooms", "南坪小学\n北坪小学")
    await home.fill("#schedule-date", str(day))
    await home.fill("#schedule-time", "15:00")
    await home.fill("#schedule-minutes", "40")
    await home.click("#schedule")
    await expect(home.locator("#schedule-done")).to_have_text("已加入 1 节课。")
    await expect(home.locator("#course-links li")).to_have_count(3)
    entry = home.locator("#timetable li", has_text="五年级科学")
    await expect(entry).to_contain_text(f"{day:%m-%d} 15:00")
    await expect(entry).to_contain_text("第 1 课")
    # the same teacher at 15:20 the same day: refused, and said why
    await home.fill("#schedule-time", "15:20")
    await home.click("#schedule")
    problem = home.locator("#schedule-error")
    await expect(problem).to_contain_text("时间冲突")
    await expect(problem).to_contain_text(f"'五年级科学' on {day} 15:00–15:40")
    await expect(home.locator("#timetable li", has_text="五年级科学")).to_have_count(1)
    # the lesson is one click from the teacher's view
    await entry.locator("button").click()
    await home.wait_for_url(re.compile(r"/lessons/[^/]+/teach"))
