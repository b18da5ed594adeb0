"""REST API for lessons under /api/: create, list, read, end."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from .auth import grant_for, is_teacher, require_teacher
from .contracts import Lesson, LessonState, Role
from .errors import http_error, json_object
from .hooks import hooks_of
from .keys import AUTHORITY, EVENTS, SESSIONS, SFU, STORE

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


def _teacher_field(body: dict[str, Any]) -> str:
    """The optional ``teacher`` (a name for the replay library); taken out of ``body``."""
    teacher = body.pop("teacher", "")
    if not isinstance(teacher, str) or len(teacher.strip()) > MAX_TEACHER:
        raise http_error(
            400, "bad_teacher", f"teacher must be text of at most {MAX_TEACHER} characters"
        )
    return teacher.strip()


def lesson_json(request: web.Request, lesson: Lesson, *, with_links: bool) -> dict[str, Any]:
    sessions = request.app[SESSIONS]
    data: dict[str, Any] = {
        "id": lesson.id,
        "title": lesson.title,
        "teacher": lesson.teacher,
        "state": lesson.state.value,
        "max_classrooms": lesson.max_classrooms,
        "record": lesson.record,
        "created_at": lesson.created_at,
        "started_at": lesson.started_at,
        "ended_at": lesson.ended_at,
        "classrooms": sessions.classrooms(lesson.id),
        "recording": hooks_of(request.app).recording_info(lesson.id),
        "origin_sources": sorted(s.name for s in sessions.of_lesson(lesson.id, "whip")),
    }
    if with_links and lesson.state is not LessonState.ENDED:
        authority = request.app[AUTHORITY]
        base = str(request.url.origin())
        origin_token = authority.issue(lesson.id, Role.ORIGIN)
        classroom_token = authority.issue(lesson.id, Role.CLASSROOM)
        data.update(
            teacher_url=f"{base}/lessons/{lesson.id}/teach?token={origin_token}",
            join_url=f"{base}/lessons/{lesson.id}/join?token={classroom_token}",
            whip_url=f"{base}/whip/{lesson.id}",
            whip_token=origin_token,
            whep_url=f"{base}/whep/{lesson.id}",
            whep_token=classroom_token,
        )
    return data


def _existing(request: web.Request, lesson_id: str) -> Lesson:
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        raise http_error(404, "no_such_lesson", f"there is no lesson {lesson_id!r}")
    return lesson


async def create_lesson(request: web.Request) -> web.Response:
    require_teacher(request)
    body = await json_object(request)
    teacher = _teacher_field(body)
    title, max_classrooms, record = _lesson_fields(request, body)
    lesson = request.app[STORE].create(title, max_classrooms, record, teacher)
    logger.info("lesson %s created: %r", lesson.id, lesson.title)
    return web.json_response(
        lesson_json(request, lesson, with_links=True),
        status=201,
        headers={"Location": f"/api/lessons/{lesson.id}"},
    )


async def list_lessons(request: web.Request) -> web.Response:
    require_teacher(request)
    lessons = request.app[STORE].list()
    return web.json_response(
        {"lessons": [lesson_json(request, lesson, with_links=False) for lesson in lessons]}
    )


async def get_lesson(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    if is_teacher(request):
        full = True
    else:
        # a classroom may see the state (waiting / live / ended), not the teacher's links
        full = grant_for(request, lesson_id, {Role.ORIGIN, Role.CLASSROOM}).role is Role.ORIGIN
    return web.json_response(lesson_json(request, _existing(request, lesson_id), with_links=full))


async def end_lesson(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    if not is_teacher(request):
        grant_for(request, lesson_id, {Role.ORIGIN})
    lesson = _existing(request, lesson_id)
    if lesson.state is not LessonState.ENDED:
        lesson = request.app[STORE].set_state(lesson_id, LessonState.ENDED)
        await request.app[SFU].close_router(lesson_id)
        hooks_of(request.app).on_ended(lesson)
        await request.app[EVENTS].end(lesson_id)
        logger.info("lesson %s ended", lesson_id)
    return web.json_response(lesson_json(request, lesson, with_links=False))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/lessons", create_lesson)
    app.router.add_get("/api/lessons", list_lessons)
    app.router.add_get("/api/lessons/{lesson_id}", get_lesson)
    app.router.add_post("/api/lessons/{lesson_id}/end", end_lesson)
