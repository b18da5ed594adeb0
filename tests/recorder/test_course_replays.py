"""Replays by course: a course's recordings come together in timetable order with their number
(第 N 课), and the classrooms holding its link watch them when the teacher allows it, without
the recordings being public."""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, expect

from signaling.timetable import local_zone
from tests.server import Server, start_server
from tests.support.browser import open_page

from .lessons import end_and_wait, play_out, publish, request


def _first_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as media:
        return bytes(media.read(1000))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # its own: the library tests count the recordings of theirs
    instance = start_server(tmp_path_factory.mktemp("course-replays"))
    yield instance
    instance.stop()


async def test_a_courses_replays_in_order_for_its_classrooms(
    server: Server, browser: Browser
) -> None:
    start = dt.datetime.now(local_zone())
    status, course = await request(
        server,
        "POST",
        "/api/courses",
        token=server.teacher_key,
        body={
            "title": "六年级数学",
            "classrooms": ["石门小学"],
            "lessons": {
                "weekly": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "from": str(start.date()),
                "until": str(start.date() + dt.timedelta(days=1)),
                "time": f"{start:%H:%M:%S}",
                "minutes": 40,
            },
        },
    )
    assert status == 201, course
    lessons = course["lessons"]
    assert [lesson["number"] for lesson in lessons] == [1, 2]
    # taught in the wrong order: the second lesson early (starting early works), then the first
    for lesson in reversed(lessons):
        _, full = await request(
            server, "GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key
        )
        await play_out(await publish(full, 2))
        await end_and_wait(server, lesson["id"])

    status, library = await request(server, "GET", "/api/recordings", token=server.teacher_key)
    mine = [
        entry
        for entry in library["recordings"]
        if (entry["course"] or {}).get("id") == course["id"]
    ]
    assert sorted((entry["course"]["number"], entry["lesson_id"]) for entry in mine) == [
        (1, lessons[0]["id"]),
        (2, lessons[1]["id"]),
    ]
    link = course["classroom_links"][0]["token"]
    path = f"/api/courses/{course['id']}/recordings"
    status, closed = await request(server, "GET", path, token=link)
    assert status == 403 and closed["error"] == "replays_closed"
    status, _ = await request(
        server, "PATCH", f"/api/courses/{course['id']}", token=server.teacher_key,
        body={"classroom_replays": True},
    )  # fmt: skip
    assert status == 200
    status, opened = await request(server, "GET", path, token=link)
    assert status == 200
    assert [entry["course"]["number"] for entry in opened["recordings"]] == [1, 2]
    first = opened["recordings"][0]
    assert len(await asyncio.to_thread(_first_bytes, server.url + first["url"])) == 1000
    # not public: without the link, nothing
    status, _ = await request(server, "GET", f"/api/recordings/{first['lesson_id']}")
    assert status == 401

    # the library page on the course link: one group, in timetable order
    page = await open_page(browser, f"{server.url}/recordings?course={course['id']}&token={link}")
    group = page.locator(f".course-group[data-course='{course['id']}']")
    await expect(group.locator("h2.course-title")).to_have_text("六年级数学")
    await expect(group.locator(".recording-card h2")).to_have_text(["第 1 课", "第 2 课"])
