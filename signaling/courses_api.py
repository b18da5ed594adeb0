"""REST API for courses under /api/courses: a term of lessons with standing classroom links,
its timetable (with clash checks), its calendar feed, and what a classroom PC left on a
course link reads to enter each lesson by itself.

A course link is a standing token: it does not expire with a lesson, and the teacher replaces
or revokes each one alone (the shared link, or one receiving classroom's). What a classroom
joins a lesson with is an ordinary classroom token of that lesson, handed out on the course
link and working only while the link stands.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from .audit_api import audit
from .auth import account_of, credential_of, require_teacher
from .calendar_feed import Event, calendar
from .classrooms import valid_name
from .contracts import (
    Account,
    AuditAction,
    Clash,
    ClashError,
    Course,
    CourseLink,
    Lesson,
    LessonState,
    Role,
    TokenError,
)
from .errors import http_error, json_object
from .json_answers import dumps, json_response
from .keys import ACCOUNTS, AUTHORITY, COURSES, LESSONS, STORE
from .lesson_clock import TIMES
from .lessons_api import DEFAULT_MAX_CLASSROOMS, MAX_CLASSROOMS_LIMIT, MAX_TEACHER, MAX_TITLE
from .recordings_api import as_public as library_view
from .recordings_api import entry as library_entry
from .timetable import Schedule, TimetableError, read_schedule

logger = logging.getLogger(__name__)

MAX_COURSE_CLASSROOMS = 100
UPCOMING = 5  # the next lessons a classroom's page lists
MAX_TIMETABLE_DAYS = 62
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="syncclass"'}


# --- who is asking ----------------------------------------------------------------------------


def _course(request: web.Request) -> Course:
    course_id = request.match_info["course_id"]
    course = request.app[COURSES].get(course_id)
    if course is None:
        raise http_error(404, "no_such_course", f"there is no course {course_id!r}")
    return course


def _may_manage(account: Account, course: Course) -> bool:
    return account.admin or course.owner == account.name


def _managed(request: web.Request) -> tuple[Account, Course]:
    """The caller's account and the route's course: 401 without a key, 403 for another
    teacher's course, 404 for none."""
    account = require_teacher(request)
    course = _course(request)
    if not _may_manage(account, course):
        raise http_error(403, "not_your_course", "this course belongs to another teacher")
    return account, course


def _link_of(request: web.Request, course: Course) -> CourseLink:
    """The standing course link the caller presents (Bearer or ``?token=``): 401 for none, a
    bad one, or one replaced or revoked; 403 for another course's."""
    token = credential_of(request)
    if token is None:
        raise http_error(401, "unauthorized", "a course link is required", _CHALLENGE)
    try:
        link = request.app[AUTHORITY].verify_course_link(token)
    except TokenError as exc:
        raise http_error(401, "invalid_token", f"not a course link: {exc}", _CHALLENGE) from None
    if link.course_id != course.id:
        raise http_error(403, "wrong_course", "this link belongs to another course")
    if not request.app[COURSES].stands(link):
        raise http_error(
            401,
            "token_revoked",
            "this course link was revoked or replaced; ask the teacher for the new link",
            _CHALLENGE,
        )
    return link


# --- what is answered -------------------------------------------------------------------------


def _zone(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[TIMES].zone)


def _local(request: web.Request, instant: float | None) -> str | None:
    if instant is None:
        return None
    return dt.datetime.fromtimestamp(instant, _zone(request)).isoformat(timespec="seconds")


def numbers(lessons: list[Lesson]) -> dict[str, int]:
    """Each lesson's number in its course (第 N 课): its place in timetable order."""
    return {lesson.id: n for n, lesson in enumerate(lessons, 1)}


def _lesson_entry(request: web.Request, lesson: Lesson, number: int | None) -> dict[str, Any]:
    return {
        "id": lesson.id,
        "number": number,
        "title": lesson.title,
        "state": lesson.state.value,
        "starts_at": lesson.starts_at,
        "ends_at": lesson.ends_at,
        "length_s": lesson.length_s,
        "local_start": _local(request, lesson.starts_at),
        "local_end": _local(request, lesson.ends_at),
        "recording": request.app[LESSONS].recording_info(lesson.id) is not None,
    }


def _link_urls(request: web.Request, course: Course, link: CourseLink) -> dict[str, Any]:
    entry: dict[str, Any] = {"classroom": link.classroom or None, "revoked": link.revoked}
    if not link.revoked:
        token = request.app[AUTHORITY].course_link(link)
        base = str(request.url.origin())
        entry.update(
            url=f"{base}/courses/{course.id}/room?token={token}",
            calendar_url=f"{base}/api/courses/{course.id}/calendar.ics?token={token}",
            token=token,
        )
    return entry


def course_json(request: web.Request, course: Course, *, with_lessons: bool) -> dict[str, Any]:
    shared = course.link("")
    data: dict[str, Any] = {
        "id": course.id,
        "title": course.title,
        "teacher": course.teacher,
        "owner": course.owner,
        "classrooms": list(course.classrooms),
        "max_classrooms": course.max_classrooms,
        "record": course.record,
        "classroom_replays": course.classroom_replays,
        "created_at": course.created_at,
        "zone": request.app[TIMES].zone,
        "link": _link_urls(request, course, shared) if shared is not None else None,
        "classroom_links": [
            _link_urls(request, course, link) for link in course.links if link.classroom
        ],
    }
    if with_lessons:
        lessons = request.app[COURSES].lessons(course.id)
        number = numbers(lessons)
        data["lessons"] = [_lesson_entry(request, lesson, number[lesson.id]) for lesson in lessons]
    return data


def _clash_json(request: web.Request, clash: Clash) -> dict[str, Any]:
    return {
        "lesson_id": clash.lesson_id,
        "course_id": clash.course_id,
        "title": clash.title,
        "starts_at": clash.starts_at,
        "ends_at": clash.ends_at,
        "local_start": _local(request, clash.starts_at),
        "reason": clash.reason,
    }


def _clash_message(request: web.Request, clash: Clash) -> str:
    start = dt.datetime.fromtimestamp(clash.starts_at, _zone(request))
    end = dt.datetime.fromtimestamp(clash.ends_at, _zone(request))
    who = (
        "the same teacher"
        if clash.reason == "teacher"
        else f"the same classroom {clash.reason.removeprefix('classroom:')!r}"
    )
    return (
        f"clashes with {clash.title!r} on {start:%Y-%m-%d %H:%M}–{end:%H:%M} ({who} in two "
        'lessons at once); choose another time, or send "force": true to schedule it anyway'
    )


# --- fields -----------------------------------------------------------------------------------


def _text(body: dict[str, Any], field: str, limit: int, *, required: bool) -> str | None:
    if field not in body:
        if required:
            raise http_error(400, f"bad_{field}", f"{field} must be a non-empty string")
        return None
    value = body[field]
    if not isinstance(value, str) or (required and not value.strip()):
        raise http_error(400, f"bad_{field}", f"{field} must be a non-empty string")
    if len(value) > limit:
        raise http_error(400, f"bad_{field}", f"{field} must be at most {limit} characters")
    return value.strip()


def _flag(body: dict[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is not None and not isinstance(value, bool):
        raise http_error(400, f"bad_{field}", f"{field} must be true or false")
    return value


def _max_classrooms(body: dict[str, Any]) -> int | None:
    value = body.get("max_classrooms")
    if value is None:
        return None
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_CLASSROOMS_LIMIT
    ):
        raise http_error(
            400,
            "bad_max_classrooms",
            f"max_classrooms must be an integer from 1 to {MAX_CLASSROOMS_LIMIT}",
        )
    return value


def _classrooms(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("classrooms", [])
    if not isinstance(value, list) or len(value) > MAX_COURSE_CLASSROOMS:
        raise http_error(
            400,
            "bad_classrooms",
            f"classrooms must be a list of at most {MAX_COURSE_CLASSROOMS} names",
        )
    names: list[str] = []
    for raw in value:
        name = raw.strip() if isinstance(raw, str) else ""
        if not valid_name(name):
            raise http_error(
                400, "bad_classrooms", "each classroom is a name of 1 to 64 printable characters"
            )
        if name in names:
            raise http_error(400, "bad_classrooms", f"the classroom {name!r} is listed twice")
        names.append(name)
    return tuple(names)


def _owner(request: web.Request, account: Account, body: dict[str, Any]) -> str:
    """Whose course it is: the teacher's own; the admin names a teacher's account."""
    owner = body.get("owner")
    if owner is None:
        if account.admin:
            raise http_error(400, "bad_owner", "the admin names the teacher's account as owner")
        return account.name
    if not account.admin and owner != account.name:
        raise http_error(403, "admin_only", "only the admin makes a course for another teacher")
    names = {teacher.name for teacher in request.app[ACCOUNTS].list()}
    if owner not in names:
        raise http_error(400, "bad_owner", f"there is no teacher account {owner!r}")
    return str(owner)


# --- handlers ---------------------------------------------------------------------------------

_CREATE_FIELDS = {
    "title",
    "teacher",
    "owner",
    "classrooms",
    "max_classrooms",
    "record",
    "classroom_replays",
    "lessons",
}


def _refused_clash(request: web.Request, exc: ClashError) -> web.HTTPException:
    message = _clash_message(request, exc.clashes[0])
    if len(exc.clashes) > 1:
        message += f" ({len(exc.clashes)} clashes in all)"
    return web.HTTPConflict(
        text=dumps(
            {
                "error": "clash",
                "message": f"this timetable {message}",
                "clashes": [_clash_json(request, clash) for clash in exc.clashes],
            }
        ),
        content_type="application/json",
    )


def _schedule_of(request: web.Request, body: object) -> Schedule:
    if not isinstance(body, dict):
        raise http_error(400, "bad_schedule", "lessons must be a JSON object (a schedule)")
    try:
        return read_schedule(body, _zone(request), time.time())
    except TimetableError as exc:
        raise http_error(400, exc.code, str(exc)) from None


async def create_course(request: web.Request) -> web.Response:
    account = require_teacher(request)
    body = await json_object(request)
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        raise http_error(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    title = _text(body, "title", MAX_TITLE, required=True)
    assert title is not None
    teacher = _text(body, "teacher", MAX_TEACHER, required=False) or ""
    owner = _owner(request, account, body)
    classrooms = _classrooms(body)
    max_classrooms = _max_classrooms(body) or request.app[DEFAULT_MAX_CLASSROOMS]
    record = _flag(body, "record")
    replays = _flag(body, "classroom_replays")
    # its first lessons with it, all or nothing: a clash leaves no course behind either
    schedule = _schedule_of(request, body["lessons"]) if "lessons" in body else None
    try:
        course = request.app[COURSES].create(
            title,
            owner,
            teacher,
            classrooms,
            max_classrooms,
            True if record is None else record,
            bool(replays),
            schedule.times if schedule else None,
            schedule.force if schedule else False,
        )
    except ClashError as exc:
        raise _refused_clash(request, exc) from None
    except ValueError as exc:
        raise http_error(400, "too_many_lessons", str(exc)) from None
    audit(request, AuditAction.COURSE_CREATED, None, f"{course.id}: {course.title}")
    logger.info("course %s created by %s: %r", course.id, account.name, course.title)
    return json_response(
        course_json(request, course, with_lessons=True),
        status=201,
        headers={"Location": f"/api/courses/{course.id}"},
    )


async def list_courses(request: web.Request) -> web.Response:
    account = require_teacher(request)
    courses = request.app[COURSES].list(None if account.admin else account.name)
    return json_response(
        {"courses": [course_json(request, course, with_lessons=False) for course in courses]}
    )


async def get_course(request: web.Request) -> web.Response:
    _, course = _managed(request)
    return json_response(course_json(request, course, with_lessons=True))


async def update_course(request: web.Request) -> web.Response:
    """``PATCH``: title, teacher, max_classrooms, record, classroom_replays (for lessons
    scheduled from now on; classroom_replays at once)."""
    _, course = _managed(request)
    body = await json_object(request)
    allowed = {"title", "teacher", "max_classrooms", "record", "classroom_replays"}
    unknown = set(body) - allowed
    if unknown:
        raise http_error(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    if not body:
        raise http_error(400, "nothing_to_change", f"give one of {', '.join(sorted(allowed))}")
    changes: dict[str, Any] = {}
    if "title" in body:
        changes["title"] = _text(body, "title", MAX_TITLE, required=True)
    if "teacher" in body:
        changes["teacher"] = _text(body, "teacher", MAX_TEACHER, required=False) or ""
    if "max_classrooms" in body:
        changes["max_classrooms"] = _max_classrooms(body)
    for flag in ("record", "classroom_replays"):
        if flag in body:
            if not isinstance(body[flag], bool):
                raise http_error(400, f"bad_{flag}", f"{flag} must be true or false")
            changes[flag] = body[flag]
    course = request.app[COURSES].update(course.id, **changes)
    audit(request, AuditAction.COURSE_CHANGED, None, f"{course.id}: {', '.join(sorted(changes))}")
    return json_response(course_json(request, course, with_lessons=True))


async def _which_link(request: web.Request, course: Course) -> str:
    """The body's ``{"classroom": name}`` (the shared link without it or with null)."""
    body = await json_object(request) if request.body_exists else {}
    unknown = set(body) - {"classroom"}
    if unknown:
        raise http_error(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    classroom = body.get("classroom") or ""
    if not isinstance(classroom, str) or course.link(classroom) is None:
        raise http_error(
            404, "no_such_link", f"the course has no link for the classroom {classroom!r}"
        )
    return classroom


async def _change_link(request: web.Request, revoke: bool) -> web.Response:
    _, course = _managed(request)
    classroom = await _which_link(request, course)
    courses = request.app[COURSES]
    course = (
        courses.revoke_link(course.id, classroom)
        if revoke
        else courses.replace_link(course.id, classroom)
    )
    # whoever joined with the old link is let go at once, in every lesson of the course
    closed = 0
    for lesson in courses.lessons(course.id):
        live = request.app[LESSONS].get(lesson.id)
        if live is not None and lesson.state is not LessonState.ENDED:
            closed += live.link_revoked(course.id, classroom)
    which = f"classroom {classroom!r}" if classroom else "shared"
    action = AuditAction.COURSE_LINK_REVOKED if revoke else AuditAction.COURSE_LINK_REPLACED
    audit(request, action, None, f"{course.id}: {which} link")
    logger.info(
        "course %s: %s link %s (%d session(s) closed)",
        course.id,
        which,
        "revoked" if revoke else "replaced",
        closed,
    )
    return json_response(course_json(request, course, with_lessons=False))


async def replace_link(request: web.Request) -> web.Response:
    return await _change_link(request, revoke=False)


async def revoke_link(request: web.Request) -> web.Response:
    return await _change_link(request, revoke=True)


async def schedule_lessons(request: web.Request) -> web.Response:
    """Lessons of the course: one on a date, or weekly over a term with exceptions. All of
    them or none: a clash with the same teacher's or the same receiving classroom's lessons is
    refused (409) unless ``force``; anything impossible or too large is refused (400)."""
    _, course = _managed(request)
    schedule = _schedule_of(request, await json_object(request))
    try:
        lessons, clashes = request.app[COURSES].schedule(course, schedule.times, schedule.force)
    except ClashError as exc:
        raise _refused_clash(request, exc) from None
    except ValueError as exc:
        raise http_error(400, "too_many_lessons", str(exc)) from None
    audit(request, AuditAction.LESSONS_SCHEDULED, None, f"{course.id}: {len(lessons)} lesson(s)")
    number = numbers(request.app[COURSES].lessons(course.id))
    return json_response(
        {
            "lessons": [
                _lesson_entry(request, lesson, number.get(lesson.id)) for lesson in lessons
            ],
            "clashes": [_clash_json(request, clash) for clash in clashes],
        },
        status=201,
    )


async def cancel_lesson(request: web.Request) -> web.Response:
    _, course = _managed(request)
    lesson_id = request.match_info["lesson_id"]
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None or lesson.course_id != course.id:
        raise http_error(404, "no_such_lesson", f"the course has no lesson {lesson_id!r}")
    if not request.app[COURSES].cancel(lesson_id):
        raise http_error(
            409, "lesson_begun", "this lesson has begun or ended: end it instead of cancelling"
        )
    audit(request, AuditAction.LESSON_CANCELLED, lesson_id, course.id)
    return json_response({"cancelled": lesson_id})


def _current(request: web.Request, lessons: list[Lesson], now: float) -> Lesson | None:
    """The lesson a classroom on the course link should be in now: one that is live, or one
    whose time has come (from a few minutes before its start) and that has not ended."""
    early = request.app[TIMES].join_early_s
    for lesson in lessons:
        if lesson.state is LessonState.LIVE:
            return lesson
    for lesson in lessons:
        if lesson.state is LessonState.SCHEDULED and lesson.starts_at is not None:
            if lesson.starts_at - early <= now:
                return lesson
    return None


async def course_room(request: web.Request) -> web.Response:
    """What a classroom PC left on a course link reads: the next lessons, and the lesson to be
    in now with a classroom token for it (working while the link stands)."""
    course = _course(request)
    link = _link_of(request, course)
    now = time.time()
    lessons = request.app[COURSES].lessons(course.id)
    number = numbers(lessons)
    ahead = [lesson for lesson in lessons if lesson.state is not LessonState.ENDED]
    current = _current(request, ahead, now)
    data: dict[str, Any] = {
        "course": {"id": course.id, "title": course.title, "teacher": course.teacher},
        "classroom": link.classroom or None,
        "now": now,
        "zone": request.app[TIMES].zone,
        "join_early_s": request.app[TIMES].join_early_s,
        "lessons": [
            _lesson_entry(request, lesson, number[lesson.id]) for lesson in ahead[:UPCOMING]
        ],
        "replays": course.classroom_replays,
        "current": None,
    }
    if current is not None:
        token = request.app[AUTHORITY].issue_for_link(current.id, current.link_generation, link)
        data["current"] = {
            **_lesson_entry(request, current, number[current.id]),
            "token": token,
            "join_url": f"/lessons/{current.id}/join?token={token}&course={course.id}",
        }
    return json_response(data)


async def course_calendar(request: web.Request) -> web.StreamResponse:
    """The course's timetable as an iCalendar feed: with a course link (as ``?token=``, what a
    calendar can send) or the teacher's key."""
    course = _course(request)
    account = account_of(request)
    classroom = ""
    if account is not None and _may_manage(account, course):
        room_url = ""
    else:
        link = _link_of(request, course)
        classroom = link.classroom
        token = credential_of(request)
        room_url = f"{request.url.origin()}/courses/{course.id}/room?token={token}"
    lessons = request.app[COURSES].lessons(course.id)
    teacher = f"（{course.teacher}）" if course.teacher else ""
    events = [
        Event(
            uid=f"{lesson.id}@syncclass",
            starts_at=lesson.starts_at or lesson.created_at,
            ends_at=lesson.ends_at or lesson.created_at,
            summary=f"{course.title} 第 {n} 课",
            description=f"{course.title}{teacher}" + (f" · {classroom}" if classroom else ""),
            url=room_url,
        )
        for n, lesson in enumerate(lessons, 1)
        if lesson.starts_at is not None
    ]
    name = course.title + (f" · {classroom}" if classroom else "")
    text = calendar(name, _zone(request), events, time.time())
    return web.Response(
        text=text,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Content-Disposition": f'inline; filename="course-{course.id}.ics"'},
    )


def _period(request: web.Request) -> tuple[float, float]:
    """``?from=`` and ``?until=`` (dates, the zone's): today and the six days after."""
    zone = _zone(request)
    today = dt.datetime.now(zone).date()
    values = []
    for field, default in (("from", today), ("until", today + dt.timedelta(days=7))):
        text = request.query.get(field)
        try:
            day = dt.date.fromisoformat(text) if text else default
        except ValueError:
            raise http_error(400, "bad_date", f"{field} must be a date as YYYY-MM-DD") from None
        values.append(dt.datetime.combine(day, dt.time(), zone).timestamp())
    since, until = values
    if not 0 < until - since <= MAX_TIMETABLE_DAYS * 86400:
        raise http_error(
            400, "bad_period", f"until must be after from, at most {MAX_TIMETABLE_DAYS} days on"
        )
    return since, until


async def teacher_timetable(request: web.Request) -> web.Response:
    """The caller's timetable (the admin's: everybody's) over a period, in time order."""
    account = require_teacher(request)
    since, until = _period(request)
    courses = request.app[COURSES]
    lessons = courses.timetable(since, until, None if account.admin else account.name)
    titles: dict[str, Course | None] = {}
    numbered: dict[str, dict[str, int]] = {}
    entries = []
    for lesson in lessons:
        assert lesson.course_id is not None
        if lesson.course_id not in titles:
            titles[lesson.course_id] = courses.get(lesson.course_id)
            numbered[lesson.course_id] = numbers(courses.lessons(lesson.course_id))
        course = titles[lesson.course_id]
        entry = _lesson_entry(request, lesson, numbered[lesson.course_id].get(lesson.id))
        entry["course"] = {"id": lesson.course_id, "title": course.title if course else ""}
        entries.append(entry)
    return json_response(
        {"zone": request.app[TIMES].zone, "since": since, "until": until, "lessons": entries}
    )


async def course_recordings(request: web.Request) -> web.Response:
    """The course's replays in timetable order, each with its number: for the teacher, and for
    a classroom holding a course link when the teacher lets classrooms watch them (ready ones,
    without the stage file of pupils unless the teacher made that public)."""
    course = _course(request)
    account = account_of(request)
    teacher = account is not None and _may_manage(account, course)
    if not teacher:
        _link_of(request, course)
        if not course.classroom_replays:
            raise http_error(
                403,
                "replays_closed",
                "the teacher has not opened this course's replays to classrooms",
            )
    authority = request.app[AUTHORITY]
    entries = []
    for lesson in request.app[COURSES].lessons(course.id):
        info = request.app[LESSONS].recording_info(lesson.id)
        if info is None or (not teacher and info.get("state") != "ready"):
            continue
        shown = info if teacher else library_view(info)
        entries.append(
            library_entry(request, lesson, shown, authority.issue(lesson.id, Role.REPLAY))
        )
    return json_response(
        {
            "course": {"id": course.id, "title": course.title},
            "recordings": entries,
            "teacher": teacher,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/courses", create_course)
    app.router.add_get("/api/courses", list_courses)
    app.router.add_get("/api/courses/{course_id}", get_course)
    app.router.add_patch("/api/courses/{course_id}", update_course)
    app.router.add_post("/api/courses/{course_id}/links/replace", replace_link)
    app.router.add_post("/api/courses/{course_id}/links/revoke", revoke_link)
    app.router.add_post("/api/courses/{course_id}/lessons", schedule_lessons)
    app.router.add_delete("/api/courses/{course_id}/lessons/{lesson_id}", cancel_lesson)
    app.router.add_get("/api/courses/{course_id}/room", course_room)
    app.router.add_get("/api/courses/{course_id}/calendar.ics", course_calendar)
    app.router.add_get("/api/courses/{course_id}/recordings", course_recordings)
    app.router.add_get("/api/timetable", teacher_timetable)
