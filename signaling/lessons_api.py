"""REST API for lessons under /api/: create, list, read, end, replace a link."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from .audit_api import audit
from .auth import grant_for, is_teacher, may_manage, require_teacher, teacher_or_grant
from .cluster import wake
from .contracts import Account, AuditAction, Grant, Lesson, LessonState, Role
from .errors import http_error, json_object
from .json_answers import json_response
from .keys import AUTHORITY, LESSONS, RTMP, STORE, TURN
from .lesson_clock import TIMES
from .source_url import SourceUrl, SourceUrlError

logger = logging.getLogger(__name__)

MAX_TITLE = 200
MAX_TEACHER = 100
MAX_CLASSROOMS_LIMIT = 1000
DEFAULT_MAX_CLASSROOMS = web.AppKey("default_max_classrooms", int)


def _lesson_fields(request: web.Request, body: dict[str, Any]) -> tuple[str, int, bool]:
    unknown = set(body) - {"title", "max_classrooms", "record"}
    if unknown:
        raise http_error(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise http_error(400, "bad_title", "title must be a non-empty string")
    if len(title) > MAX_TITLE:
        raise http_error(400, "bad_title", f"title must be at most {MAX_TITLE} characters")
    max_classrooms = body.get("max_classrooms", request.app[DEFAULT_MAX_CLASSROOMS])
    if (
        not isinstance(max_classrooms, int)
        or isinstance(max_classrooms, bool)
        or not 1 <= max_classrooms <= MAX_CLASSROOMS_LIMIT
    ):
        raise http_error(
            400,
            "bad_max_classrooms",
            f"max_classrooms must be an integer from 1 to {MAX_CLASSROOMS_LIMIT}",
        )
    record = body.get("record", True)
    if not isinstance(record, bool):
        raise http_error(400, "bad_record", "record must be true or false")
    return title.strip(), max_classrooms, record


def _keep_chat_field(body: dict[str, Any]) -> bool:
    """The optional ``keep_chat``: store the lesson's chat for its report (off: relayed only,
    never written down); taken out of ``body``."""
    keep_chat = body.pop("keep_chat", False)
    if not isinstance(keep_chat, bool):
        raise http_error(400, "bad_keep_chat", "keep_chat must be true or false")
    return keep_chat


def _source_field(body: dict[str, Any]) -> SourceUrl | None:
    """The optional ``source_url``: a camera (rtsp://user:password@host/path) the lesson's
    camera is pulled from, or a lesson on another server (http(s)://name:token@host/whep/id)
    this one relays as its edge; taken out of ``body``."""
    value = body.pop("source_url", None)
    if value is None:
        return None
    try:
        return SourceUrl(value)
    except SourceUrlError as exc:
        raise http_error(400, "bad_source_url", str(exc)) from None


def _teacher_field(body: dict[str, Any]) -> str:
    """The optional ``teacher`` (a name for the replay library); taken out of ``body``."""
    teacher = body.pop("teacher", "")
    if not isinstance(teacher, str) or len(teacher.strip()) > MAX_TEACHER:
        raise http_error(
            400, "bad_teacher", f"teacher must be text of at most {MAX_TEACHER} characters"
        )
    return teacher.strip()


def lesson_json(
    request: web.Request, lesson: Lesson, *, with_links: bool, grant: Grant | None = None
) -> dict[str, Any]:
    """The lesson as the API answers it; ``with_links``: with the teacher's and classrooms'
    links, which expire no later than ``grant`` (the origin token presented, if it was one):
    only the teacher's key gets links of the full lifetime, so a leaked origin token cannot
    renew itself."""
    lessons = request.app[LESSONS]
    live = lessons.get(lesson.id)
    data: dict[str, Any] = {
        "id": lesson.id,
        "title": lesson.title,
        "teacher": lesson.teacher,
        "owner": lesson.owner,
        "state": lesson.state.value,
        "max_classrooms": lesson.max_classrooms,
        "record": lesson.record,
        "keep_chat": lesson.keep_chat,
        "created_at": lesson.created_at,
        "started_at": lesson.started_at,
        "ended_at": lesson.ended_at,
        "classrooms": live.sessions.classrooms() if live else 0,
        "recording": lessons.recording_info(lesson.id),
        "origin_sources": live.sources() if live else [],
        # the camera pulled for the camera source: its URL never with the password
        "source_url": lesson.source.masked if lesson.source is not None else None,
        "camera_source": live.pulled() if live else None,
        # a session of a course, at the time its timetable gives (None for a one-off lesson)
        "course_id": lesson.course_id,
        "starts_at": lesson.starts_at,
        "ends_at": lesson.ends_at,
    }
    if with_links and lesson.state is not LessonState.ENDED:
        authority = request.app[AUTHORITY]
        base = str(request.url.origin())
        not_after = grant.expires_at if grant is not None else None
        # a timetabled lesson's links live until it is over, however early they are sent
        times = request.app.get(TIMES)
        ends_at = lesson.ends_at
        lasting = ends_at + times.end_grace_s if ends_at is not None and times else None
        origin_token = authority.issue(
            lesson.id,
            Role.ORIGIN,
            lesson.origin_generation,
            not_after=not_after,
            lasting_until=lasting,
        )
        classroom_token = authority.issue(
            lesson.id,
            Role.CLASSROOM,
            lesson.link_generation,
            not_after=not_after,
            lasting_until=lasting,
        )
        data.update(
            teacher_url=f"{base}/lessons/{lesson.id}/teach?token={origin_token}",
            join_url=f"{base}/lessons/{lesson.id}/join?token={classroom_token}",
            whip_url=f"{base}/whip/{lesson.id}",
            whip_token=origin_token,
            whep_url=f"{base}/whep/{lesson.id}",
            whep_token=classroom_token,
        )
        rtmp = request.app.get(RTMP)
        if rtmp is not None:
            # OBS and hardware encoders: the server's URL, and the teacher token as the key
            data.update(
                rtmp_url=f"rtmp://{request.url.host}:{rtmp.port}/live", rtmp_key=origin_token
            )
    return data


def _existing(request: web.Request, lesson_id: str) -> Lesson:
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        raise http_error(404, "no_such_lesson", f"there is no lesson {lesson_id!r}")
    return lesson


async def create_lesson(request: web.Request) -> web.Response:
    account = require_teacher(request)
    body = await json_object(request)
    teacher = _teacher_field(body)
    keep_chat = _keep_chat_field(body)
    source = _source_field(body)
    title, max_classrooms, record = _lesson_fields(request, body)
    lesson = request.app[STORE].create(
        title, max_classrooms, record, teacher, account.name, keep_chat
    )
    audit(request, AuditAction.LESSON_CREATED, lesson.id, lesson.title)
    logger.info("lesson %s created by %s: %r", lesson.id, account.name, lesson.title)
    wake(request.app)
    if source is not None:
        lesson = request.app[STORE].set_source(lesson.id, source)
        audit(request, AuditAction.SOURCE_SET, lesson.id, source.masked)
        await request.app[LESSONS].pull(lesson)
    return json_response(
        lesson_json(request, lesson, with_links=True),
        status=201,
        headers={"Location": f"/api/lessons/{lesson.id}"},
    )


async def list_lessons(request: web.Request) -> web.Response:
    account = require_teacher(request)
    lessons = [lesson for lesson in request.app[STORE].list() if may_manage(account, lesson)]
    return json_response(
        {"lessons": [lesson_json(request, lesson, with_links=False) for lesson in lessons]}
    )


async def get_lesson(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    grant: Grant | None = None
    if is_teacher(request):
        full = True
    else:
        # a classroom may see the state (waiting / live), not the teacher's links; once the
        # lesson has ended only the teacher's page still reads it
        grant = grant_for(
            request, lesson_id, {Role.ORIGIN, Role.CLASSROOM}, after_end={Role.ORIGIN}
        )
        full = grant.role is Role.ORIGIN
    lesson = _existing(request, lesson_id)
    data = lesson_json(request, lesson, with_links=full, grant=grant)
    data["ice_servers"] = _ice_servers(request, lesson, grant, data)
    return json_response(data)


def _ice_servers(
    request: web.Request, lesson: Lesson, grant: Grant | None, data: dict[str, Any]
) -> list[dict[str, object]]:
    """The TURN servers for the caller's page (``iceServers``), with a credential that expires
    with its token: the token presented, or for the teacher's key the origin token just
    issued. None once the lesson has ended, or without TURN servers configured."""
    turn = request.app.get(TURN)
    if turn is None or lesson.state is LessonState.ENDED:
        return []
    if grant is None:
        grant = request.app[AUTHORITY].verify(data["whip_token"])
    return [turn.for_grant(grant).ice_server()]


async def end_lesson(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    # ending again is harmless (a retry), so the origin token may still say it
    teacher_or_grant(request, lesson_id, {Role.ORIGIN}, after_end={Role.ORIGIN})
    lesson = _existing(request, lesson_id)
    if lesson.state is not LessonState.ENDED:
        lesson = request.app[STORE].set_state(lesson_id, LessonState.ENDED)
        await request.app[LESSONS].end(lesson_id)
        audit(request, AuditAction.LESSON_ENDED, lesson_id)
        wake(request.app)
        logger.info("lesson %s ended", lesson_id)
    return json_response(lesson_json(request, lesson, with_links=False))


async def update_lesson(request: web.Request) -> web.Response:
    """``PATCH``: the teacher gives the lesson a camera to pull its camera source from
    (``{"source_url": "rtsp://…"}``), another one, or none (``null``); pulling starts (or
    stops) at once."""
    lesson_id = request.match_info["lesson_id"]
    caller: Account | Grant = teacher_or_grant(request, lesson_id, {Role.ORIGIN})
    body = await json_object(request)
    unknown = set(body) - {"source_url"}
    if unknown:
        raise http_error(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    if "source_url" not in body:
        raise http_error(400, "nothing_to_change", "give source_url (a URL, or null for none)")
    source = _source_field(body)
    lesson = _existing(request, lesson_id)
    if lesson.state is LessonState.ENDED:
        raise http_error(410, "lesson_ended", "this lesson has ended")
    live = request.app[LESSONS].get(lesson_id)
    if source is not None and live is not None and live.pushing():
        raise http_error(
            409, "camera_pushed", "an encoder pushes the camera over RTMP now: stop it first"
        )
    # an origin's lesson brings the courseware too: nobody may publish beside it
    taken = (
        ("camera", "courseware") if source is not None and source.kind == "whep" else ("camera",)
    )
    if source is not None and live is not None and set(taken) & set(live.sessions.sources()):
        raise http_error(
            409,
            "camera_published",
            f"the teacher publishes the {' or '.join(taken)} now: stop it first, then set "
            "source_url",
        )
    lesson = request.app[STORE].set_source(lesson_id, source)
    audit(request, AuditAction.SOURCE_SET, lesson_id, source.masked if source else "none")
    await request.app[LESSONS].pull(lesson)
    grant = caller if isinstance(caller, Grant) else None
    return json_response(lesson_json(request, lesson, with_links=True, grant=grant))


ROTATABLE_LINKS = ("classroom", "origin")


async def _link_field(request: web.Request) -> str:
    """Which link to replace: the optional body ``{"link": "classroom" | "origin"}``."""
    if not request.body_exists:
        return "classroom"
    body = await json_object(request)
    unknown = set(body) - {"link"}
    if unknown:
        raise http_error(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    link = body.get("link", "classroom")
    if link not in ROTATABLE_LINKS:
        raise http_error(400, "bad_link", 'link must be "classroom" or "origin"')
    return str(link)


async def rotate_link(request: web.Request) -> web.Response:
    """A new classroom link (the default) or teacher link: tokens of that link issued before
    stop working at once. Peers connected now stay connected; one that leaves needs the new
    link to come back. Only the teacher's key replaces the teacher (origin) link: a leaked
    origin token must not lock the teacher out."""
    lesson_id = request.match_info["lesson_id"]
    caller: Account | Grant = teacher_or_grant(request, lesson_id, {Role.ORIGIN})
    link = await _link_field(request)
    grant = caller if isinstance(caller, Grant) else None
    if link == "origin" and grant is not None:
        raise http_error(
            403, "key_required", "only the teacher's key can replace the teacher's link"
        )
    lesson = _existing(request, lesson_id)
    if lesson.state is LessonState.ENDED:
        raise http_error(410, "lesson_ended", "this lesson has ended; it has no links")
    if link == "origin":
        lesson = request.app[STORE].rotate_origin_link(lesson_id)
        detail = f"teacher link, generation {lesson.origin_generation}"
    else:
        lesson = request.app[STORE].rotate_link(lesson_id)
        live = request.app[LESSONS].get(lesson_id)
        if live is not None:
            live.link_rotated()  # the classrooms the teacher removed may join with the new link
        detail = f"generation {lesson.link_generation}"
    audit(request, AuditAction.LINK_ROTATED, lesson_id, detail)
    logger.info("lesson %s: %s link replaced", lesson_id, link)
    return json_response(lesson_json(request, lesson, with_links=True, grant=grant))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/lessons", create_lesson)
    app.router.add_get("/api/lessons", list_lessons)
    app.router.add_get("/api/lessons/{lesson_id}", get_lesson)
    app.router.add_patch("/api/lessons/{lesson_id}", update_lesson)
    app.router.add_post("/api/lessons/{lesson_id}/end", end_lesson)
    app.router.add_post("/api/lessons/{lesson_id}/rotate", rotate_link)
