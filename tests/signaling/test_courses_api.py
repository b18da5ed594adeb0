"""The courses API: standing classroom links, a timetable in the server's time zone with clash
checks, lessons that end by themselves, and the .ics feed; bad input gets a clear 4xx and
leaves nothing half-made."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from tests.server import Server, start_server

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(
        tmp_path_factory.mktemp("server"), "--timezone", "Asia/Shanghai", "--end-grace", "1"
    )
    yield instance
    instance.stop()


def _course(server: Server, title: str = "三年级数学", **fields: Any) -> dict[str, Any]:
    body = {"title": title, "classrooms": ["石门小学", "溪口小学"], **fields}
    status, course = server.request("POST", "/api/courses", token=server.teacher_key, body=body)
    assert status == 201, course
    return dict(course)


def _schedule(server: Server, course: dict[str, Any], **body: Any) -> tuple[int, Any]:
    return server.request(
        "POST", f"/api/courses/{course['id']}/lessons", token=server.teacher_key, body=body
    )


def _lessons(server: Server, course: dict[str, Any]) -> list[dict[str, Any]]:
    status, body = server.request("GET", f"/api/courses/{course['id']}", token=server.teacher_key)
    assert status == 200, body
    return list(body["lessons"])


def _days_ahead(days: int, zone: ZoneInfo = SHANGHAI) -> dt.date:
    return dt.datetime.now(zone).date() + dt.timedelta(days=days)


def test_a_course_has_a_shared_link_and_one_per_classroom(server: Server) -> None:
    course = _course(server, teacher="王老师")
    assert course["classrooms"] == ["石门小学", "溪口小学"]
    assert course["zone"] == "Asia/Shanghai"
    shared = course["link"]
    assert shared["url"].startswith(f"{server.url}/courses/{course['id']}/room?token=")
    assert [link["classroom"] for link in course["classroom_links"]] == ["石门小学", "溪口小学"]
    tokens = {shared["token"], *(link["token"] for link in course["classroom_links"])}
    assert len(tokens) == 3
    status, page = server.request("GET", shared["url"][len(server.url) :])
    assert status == 200 and "course-room.js" in page
    # a course link is no key: it neither lists nor manages courses
    status, body = server.request("GET", "/api/courses", token=shared["token"])
    assert status == 401, body
    status, body = server.request("GET", f"/api/courses/{course['id']}", token=shared["token"])
    assert status == 401, body


def test_another_teacher_cannot_touch_a_course(server: Server) -> None:
    course = _course(server)
    status, added = server.request(
        "POST", "/api/teachers", token=server.admin_key, body={"name": "zhang"}
    )
    assert status == 201, added
    other = added["key"]
    status, body = server.request("GET", f"/api/courses/{course['id']}", token=other)
    assert status == 403 and body["error"] == "not_your_course"
    status, body = server.request(
        "POST",
        f"/api/courses/{course['id']}/lessons",
        token=other,
        body={"date": str(_days_ahead(3)), "time": "10:00", "minutes": 40},
    )
    assert status == 403
    assert _lessons(server, course) == []
    # the admin makes a course for that teacher, whose course it then is
    status, made = server.request(
        "POST", "/api/courses", token=server.admin_key, body={"title": "美术", "owner": "zhang"}
    )
    assert status == 201 and made["owner"] == "zhang"
    assert [c["id"] for c in server.request("GET", "/api/courses", token=other)[1]["courses"]] == [
        made["id"]
    ]


def test_a_weekly_term_with_holidays_in_china_time(server: Server) -> None:
    course = _course(server, "四年级语文", classrooms=["岭下小学"])
    first = _days_ahead(1)
    last = first + dt.timedelta(days=27)  # four weeks
    holiday = {
        "from": str(first + dt.timedelta(days=7)),
        "until": str(first + dt.timedelta(days=13)),
    }
    status, made = _schedule(
        server,
        course,
        weekly=["mon", "wed"],
        **{"from": str(first), "until": str(last), "except": [holiday]},
        time="10:00",
        minutes=40,
    )
    assert status == 201, made
    lessons = _lessons(server, course)
    assert len(lessons) == 6  # two a week for three of the four weeks
    assert [lesson["number"] for lesson in lessons] == [1, 2, 3, 4, 5, 6]
    for lesson in lessons:
        start = dt.datetime.fromtimestamp(lesson["starts_at"], SHANGHAI)
        assert (start.hour, start.minute, start.weekday() in (0, 2)) == (10, 0, True)
        assert lesson["local_start"].endswith("T10:00:00+08:00")
        assert lesson["ends_at"] - lesson["starts_at"] == 40 * 60
        assert not first + dt.timedelta(days=7) <= start.date() <= first + dt.timedelta(days=13)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"date": "2026-02-30", "time": "10:00", "minutes": 40}, "bad_date"),
        ({"date": "2026-13-01", "time": "10:00", "minutes": 40}, "bad_date"),
        ({"date": "next week", "time": "10:00", "minutes": 40}, "bad_date"),
        ({"date": "FUTURE", "time": "24:00", "minutes": 40}, "bad_time"),
        ({"date": "FUTURE", "time": "10:00", "minutes": 0}, "bad_length"),
        ({"date": "FUTURE", "time": "10:00", "minutes": 24 * 60}, "bad_length"),
        ({"date": "FUTURE", "time": "10:00", "minutes": 40.5}, "bad_length"),
        ({"date": "2020-01-06", "time": "10:00", "minutes": 40}, "in_the_past"),
        ({"date": "FUTURE", "weekly": ["mon"], "time": "10:00", "minutes": 40}, "bad_schedule"),
        # 10,000 weekly lessons: two centuries of Mondays
        (
            {
                "weekly": ["mon"],
                "from": "FUTURE",
                "until": "2218-01-01",
                "time": "10:00",
                "minutes": 40,
            },
            "term_too_long",
        ),
        # every day for a year: more lessons than one request may make
        (
            {
                "weekly": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "from": "FUTURE",
                "until": "YEAR",
                "time": "10:00",
                "minutes": 40,
            },
            "too_many_lessons",
        ),
        (
            {
                "weekly": ["mon"],
                "from": "FUTURE",
                "until": "YEAR",
                "time": "10:00",
                "minutes": 40,
                "except": [{"from": "E1", "until": "E3"}, {"from": "E2", "until": "E4"}],
            },
            "overlapping_exceptions",
        ),
        (
            {
                "weekly": ["mon"],
                "from": "FUTURE",
                "until": "YEAR",
                "time": "10:00",
                "minutes": 40,
                "except": ["2000-01-01"],
            },
            "bad_except",
        ),
        (
            {
                "weekly": ["someday"],
                "from": "FUTURE",
                "until": "YEAR",
                "time": "10:00",
                "minutes": 40,
            },
            "bad_weekly",
        ),
        (
            {"weekly": ["mon"], "from": "YEAR", "until": "FUTURE", "time": "10:00", "minutes": 40},
            "bad_term",
        ),
        ({"date": "FUTURE", "time": "10:00", "minutes": 40, "when": "now"}, "unknown_field"),
    ],
)
def test_impossible_timetables_get_400_and_make_nothing(
    server: Server, body: dict[str, Any], code: str
) -> None:
    course = _course(server, "Bad input")
    words = {
        "FUTURE": str(_days_ahead(2)),
        "YEAR": str(_days_ahead(300)),
        "E1": str(_days_ahead(10)),
        "E2": str(_days_ahead(12)),
        "E3": str(_days_ahead(14)),
        "E4": str(_days_ahead(20)),
    }

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return words.get(value, value)
        if isinstance(value, list):
            return [fill(item) for item in value]
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        return value

    started = time.monotonic()
    status, answer = _schedule(server, course, **fill(body))
    assert status == 400, answer
    assert answer["error"] == code and answer["message"]
    assert time.monotonic() - started < 2  # refused before any large work
    assert _lessons(server, course) == []


def test_clashes_are_refused_with_a_clear_message(server: Server) -> None:
    day = str(_days_ahead(5))
    maths = _course(server, "数学", classrooms=["东山小学"])
    status, _ = _schedule(server, maths, date=day, time="09:00", minutes=40)
    assert status == 201
    # the same teacher, another course, overlapping by 10 minutes
    music = _course(server, "音乐", classrooms=["西山小学"])
    status, refused = _schedule(server, music, date=day, time="09:30", minutes=40)
    assert status == 409, refused
    assert refused["error"] == "clash"
    assert "'数学'" in refused["message"] and "the same teacher" in refused["message"]
    assert f"{day} 09:00" in refused["message"]
    assert refused["clashes"][0]["reason"] == "teacher"
    assert _lessons(server, music) == []
    # back to back is no clash
    status, _ = _schedule(server, music, date=day, time="09:40", minutes=40)
    assert status == 201
    # another teacher, the same receiving classroom
    status, added = server.request(
        "POST", "/api/teachers", token=server.admin_key, body={"name": "li"}
    )
    assert status == 201
    status, science = server.request(
        "POST",
        "/api/courses",
        token=added["key"],
        body={"title": "科学", "classrooms": ["东山小学"]},
    )
    assert status == 201
    status, refused = server.request(
        "POST",
        f"/api/courses/{science['id']}/lessons",
        token=added["key"],
        body={"date": day, "time": "08:50", "minutes": 20},
    )
    assert status == 409 and refused["clashes"][0]["reason"] == "classroom:东山小学"
    assert "东山小学" in refused["message"]
    # told, and scheduled anyway
    status, forced = server.request(
        "POST",
        f"/api/courses/{science['id']}/lessons",
        token=added["key"],
        body={"date": day, "time": "08:50", "minutes": 20, "force": True},
    )
    assert status == 201 and forced["clashes"][0]["reason"] == "classroom:东山小学"


def test_links_are_revoked_and_replaced_one_at_a_time(server: Server) -> None:
    course = _course(server, "链接")
    start = dt.datetime.now(SHANGHAI) + dt.timedelta(seconds=60)  # open: within join-early
    status, made = _schedule(
        server, course, date=str(start.date()), time=f"{start:%H:%M:%S}", minutes=40
    )
    assert status == 201, made
    lesson_id = made["lessons"][0]["id"]
    links = {link["classroom"]: link["token"] for link in course["classroom_links"]}
    rooms = {}
    for name, token in [("", course["link"]["token"]), *links.items()]:
        status, room = server.request("GET", f"/api/courses/{course['id']}/room", token=token)
        assert status == 200, room
        assert room["current"]["id"] == lesson_id and room["current"]["number"] == 1
        assert room["classroom"] == (name or None)
        rooms[name] = room["current"]["token"]
    for token in rooms.values():  # a lesson token handed out on the link opens the lesson
        assert server.request("GET", f"/api/lessons/{lesson_id}", token=token)[0] == 200

    status, _ = server.request(
        "POST",
        f"/api/courses/{course['id']}/links/revoke",
        token=server.teacher_key,
        body={"classroom": "石门小学"},
    )
    assert status == 200
    status, refused = server.request(
        "GET", f"/api/courses/{course['id']}/room", token=links["石门小学"]
    )
    assert status == 401 and refused["error"] == "token_revoked"
    status, refused = server.request("GET", f"/api/lessons/{lesson_id}", token=rooms["石门小学"])
    assert status == 401 and refused["error"] == "token_revoked"
    for name in ("", "溪口小学"):  # the others are untouched
        assert server.request("GET", f"/api/lessons/{lesson_id}", token=rooms[name])[0] == 200

    status, replaced = server.request(
        "POST", f"/api/courses/{course['id']}/links/replace", token=server.teacher_key
    )
    assert status == 200
    assert server.request("GET", f"/api/lessons/{lesson_id}", token=rooms[""])[0] == 401
    assert server.request("GET", f"/api/lessons/{lesson_id}", token=rooms["溪口小学"])[0] == 200
    status, room = server.request(
        "GET", f"/api/courses/{course['id']}/room", token=replaced["link"]["token"]
    )
    assert status == 200 and room["current"]["id"] == lesson_id
    status, body = server.request(
        "POST",
        f"/api/courses/{course['id']}/links/revoke",
        token=server.teacher_key,
        body={"classroom": "no such school"},
    )
    assert status == 404 and body["error"] == "no_such_link"


def test_a_lesson_nobody_teaches_ends_by_itself_after_its_end(server: Server) -> None:
    course = _course(server, "无人上课")
    start = dt.datetime.now(SHANGHAI) - dt.timedelta(seconds=8)
    status, made = _schedule(
        server, course, date=str(start.date()), time=f"{start:%H:%M:%S}", seconds=10
    )
    assert status == 201, made
    lesson_id = made["lessons"][0]["id"]
    status, room = server.request(
        "GET", f"/api/courses/{course['id']}/room", token=course["link"]["token"]
    )
    assert room["current"]["id"] == lesson_id
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = server.request("GET", f"/api/lessons/{lesson_id}", token=server.teacher_key)[1]
        if state["state"] == "ended":
            break
        time.sleep(0.2)
    assert state["state"] == "ended"
    assert state["ended_at"] >= made["lessons"][0]["ends_at"] + 1  # the grace, then
    status, room = server.request(
        "GET", f"/api/courses/{course['id']}/room", token=course["link"]["token"]
    )
    assert room["current"] is None


def test_a_lesson_not_begun_can_be_cancelled(server: Server) -> None:
    course = _course(server, "取消")
    status, made = _schedule(server, course, date=str(_days_ahead(4)), time="14:00", minutes=45)
    assert status == 201
    lesson_id = made["lessons"][0]["id"]
    status, _ = server.request(
        "DELETE", f"/api/courses/{course['id']}/lessons/{lesson_id}", token=server.teacher_key
    )
    assert status == 200
    assert _lessons(server, course) == []
    assert server.request("GET", f"/api/lessons/{lesson_id}", token=server.teacher_key)[0] == 404


def _calendar(url: str) -> icalendar.Calendar:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/calendar")
        return icalendar.Calendar.from_ical(response.read())


def test_the_calendar_feed_has_the_lessons_at_their_times(server: Server) -> None:
    course = _course(server, "五年级英语", teacher="陈老师", classrooms=["南坪小学"])
    first = _days_ahead(1)
    status, _ = _schedule(
        server,
        course,
        weekly=["tue", "thu"],
        **{"from": str(first), "until": str(first + dt.timedelta(days=13))},
        time="08:05",
        minutes=45,
    )
    assert status == 201
    lessons = _lessons(server, course)
    classroom = course["classroom_links"][0]
    for url, name in (
        (course["link"]["calendar_url"], "五年级英语"),
        (classroom["calendar_url"], "五年级英语 · 南坪小学"),
    ):
        feed = _calendar(url)
        assert str(feed["X-WR-CALNAME"]) == name
        events = sorted(feed.walk("VEVENT"), key=lambda e: e.decoded("DTSTART"))
        assert len(events) == len(lessons) == 4
        for n, (event, lesson) in enumerate(zip(events, lessons, strict=True), 1):
            start, end = event.decoded("DTSTART"), event.decoded("DTEND")
            assert start.timestamp() == lesson["starts_at"]
            assert end - start == dt.timedelta(minutes=45)
            local = start.astimezone(SHANGHAI)  # the server's zone, as the feed says
            assert start.utcoffset() == dt.timedelta(hours=8)
            assert (local.hour, local.minute) == (8, 5)
            assert str(event["SUMMARY"]) == f"五年级英语 第 {n} 课"
    # a revoked link's feed stops too
    server.request(
        "POST",
        f"/api/courses/{course['id']}/links/revoke",
        token=server.teacher_key,
        body={"classroom": "南坪小学"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        _calendar(classroom["calendar_url"])
    assert refused.value.code == 401


def test_a_server_in_utc_keeps_its_own_times(tmp_path_factory: pytest.TempPathFactory) -> None:
    utc = start_server(tmp_path_factory.mktemp("utc"), "--timezone", "UTC")
    try:
        course = _course(utc, "UTC")
        day = _days_ahead(3, ZoneInfo("UTC"))
        status, made = _schedule(utc, course, date=str(day), time="23:30", minutes=40)
        assert status == 201, made
        lesson = made["lessons"][0]
        assert lesson["starts_at"] == dt.datetime.combine(day, dt.time(23, 30), dt.UTC).timestamp()
        assert lesson["local_start"] == f"{day}T23:30:00+00:00"
        event = next(iter(_calendar(course["link"]["calendar_url"]).walk("VEVENT")))
        assert event.decoded("DTSTART") == dt.datetime.combine(day, dt.time(23, 30), dt.UTC)
    finally:
        utc.stop()


def test_course_replays_are_closed_to_classrooms_until_the_teacher_opens_them(
    server: Server,
) -> None:
    course = _course(server, "回放")
    path = f"/api/courses/{course['id']}/recordings"
    status, body = server.request("GET", path, token=course["link"]["token"])
    assert status == 403 and body["error"] == "replays_closed"
    status, changed = server.request(
        "PATCH",
        f"/api/courses/{course['id']}",
        token=server.teacher_key,
        body={"classroom_replays": True},
    )
    assert status == 200 and changed["classroom_replays"] is True
    status, body = server.request("GET", path, token=course["link"]["token"])
    assert status == 200 and body["recordings"] == []
    assert server.request("GET", path)[0] == 401


def _expiry(token: str) -> float:
    payload = token.split(".")[0]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["e"])


def test_a_timetabled_lessons_links_live_until_it_is_over(server: Server) -> None:
    """Links sent the evening before (or a week before) still work when the lesson starts:
    they last until its end and the grace after it, not 12 hours."""
    course = _course(server, "提前发链接")
    status, made = _schedule(server, course, date=str(_days_ahead(7)), time="08:00", minutes=40)
    assert status == 201, made
    planned = made["lessons"][0]
    status, lesson = server.request(
        "GET", f"/api/lessons/{planned['id']}", token=server.teacher_key
    )
    assert status == 200
    for token in (lesson["whep_token"], lesson["whip_token"]):
        assert _expiry(token) >= planned["ends_at"] + 1  # --end-grace 1
    # a one-off lesson's keep the usual lifetime
    one_off = server.create_lesson("临时")
    assert _expiry(one_off["whep_token"]) < time.time() + 12 * 3600 + 5


def test_every_course_route_refuses_wrong_credentials(server: Server) -> None:
    """What the token matrix (tests/syncclass/test_token_matrix.py) does for a lesson's routes,
    for a course's: each wrong credential is refused with its 4xx, and nothing changes."""
    course = _course(server, "凭证")
    other_course = _course(server, "另一门")
    status, made = _schedule(server, course, date=str(_days_ahead(9)), time="11:00", minutes=40)
    assert status == 201
    lesson_id = made["lessons"][0]["id"]
    lesson = server.create_lesson("一节课")
    status, added = server.request(
        "POST", "/api/teachers", token=server.admin_key, body={"name": "zhao"}
    )
    assert status == 201
    status, revoked = server.request(
        "POST", f"/api/courses/{other_course['id']}/links/replace", token=server.teacher_key
    )
    old_link = other_course["link"]["token"]  # replaced: no longer stands
    wrong: dict[str, tuple[str | None, int]] = {
        "none": (None, 401),
        "garbage": ("not-a-token", 401),
        "origin token": (lesson["whip_token"], 401),
        "classroom token": (lesson["whep_token"], 401),
        "tampered link": (course["link"]["token"][:-2] + "AA", 401),
    }
    base = f"/api/courses/{course['id']}"
    keyed = [
        ("GET", base, None),
        ("PATCH", base, {"title": "x"}),
        ("POST", base + "/links/replace", {}),
        ("POST", base + "/links/revoke", {}),
        ("POST", base + "/lessons", {"date": str(_days_ahead(10)), "time": "09:00", "minutes": 40}),
        ("DELETE", f"{base}/lessons/{lesson_id}", None),
    ]
    accounts = [
        ("POST", "/api/courses", {"title": "x"}),
        ("GET", "/api/courses", None),
        ("GET", "/api/timetable", None),
    ]
    linked = [base + "/room", base + "/calendar.ics", base + "/recordings"]
    before = server.request("GET", base, token=server.teacher_key)[1]
    courses_before = len(
        server.request("GET", "/api/courses", token=server.admin_key)[1]["courses"]
    )
    for method, path, body in keyed + accounts:
        for name, (credential, expected) in {
            **wrong,
            "course link": (course["link"]["token"], 401),
        }.items():
            status, answer = server.request(method, path, token=credential, body=body)
            assert status == expected, (method, path, name, answer)
            assert answer["error"] and answer["message"]
    for method, path, body in keyed:  # another teacher's key
        status, answer = server.request(method, path, token=added["key"], body=body)
        assert status == 403, (method, path, answer)
        assert answer["error"] in ("not_your_course", "not_your_lesson")
    for path in linked:
        for name, (credential, expected) in {
            **wrong,
            "another course's link": (revoked["link"]["token"], 403),
            "a replaced link": (old_link, 403),
            "another teacher's key": (added["key"], 401),
        }.items():
            status, answer = server.request("GET", path, token=credential)
            assert status == expected, (path, name, answer)
    assert server.request("GET", base, token=server.teacher_key)[1] == before
    after = len(server.request("GET", "/api/courses", token=server.admin_key)[1]["courses"])
    assert after == courses_before


def test_a_course_made_with_its_lessons_is_all_or_nothing(server: Server) -> None:
    day = str(_days_ahead(11))
    first = _course(server, "先有的课", lessons={"date": day, "time": "13:00", "minutes": 40})
    assert [lesson["number"] for lesson in first["lessons"]] == [1]
    count = len(server.request("GET", "/api/courses", token=server.teacher_key)[1]["courses"])
    for lessons, status_code, code in (
        ({"date": day, "time": "13:30", "minutes": 40}, 409, "clash"),
        ({"date": "2027-02-29", "time": "13:30", "minutes": 40}, 400, "bad_date"),
        ("every monday", 400, "bad_schedule"),
    ):
        status, refused = server.request(
            "POST",
            "/api/courses",
            token=server.teacher_key,
            body={"title": "不该留下", "lessons": lessons},
        )
        assert (status, refused["error"]) == (status_code, code), refused
    courses = server.request("GET", "/api/courses", token=server.teacher_key)[1]["courses"]
    assert len(courses) == count and "不该留下" not in {c["title"] for c in courses}
