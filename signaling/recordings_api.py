"""The replay library over HTTP: recordings listed and described under /api/recordings, their
files served (with range requests, so players seek) under /recordings/{lesson}/{file}.

Who may watch a recording follows the lesson: the teacher key; the lesson's origin token; a
replay token the teacher shares (``POST /api/recordings/{id}/link``); anyone at all once the
teacher made the recording public. A classroom token of a lesson that is not public is not
enough. Media elements cannot send headers, so the token may also come as ``?token=``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from .audit_api import audit
from .auth import (
    account_for,
    account_of,
    credential_of,
    grant_of,
    may_manage,
    require_teacher,
    teacher_or_grant,
)
from .contracts import AuditAction, Lesson, Role, TokenError
from .errors import http_error, json_object, query_number
from .file_ranges import RangeFileResponse
from .json_answers import json_response
from .keys import AUTHORITY, COURSES, LESSONS, STORE
from .recording_port import LIBRARY, RecordingBusyError

logger = logging.getLogger(__name__)

MAX_QUERY = 200
# roles whose token of the lesson opens its recording even when it is not public
_WATCH_ROLES = {Role.ORIGIN, Role.REPLAY}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="syncclass"'}


def _lesson(request: web.Request, lesson_id: str) -> Lesson:
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        raise http_error(404, "no_such_recording", f"there is no recording of {lesson_id!r}")
    return lesson


def _recording(request: web.Request, lesson_id: str) -> dict[str, Any]:
    info = request.app[LESSONS].recording_info(lesson_id)
    if info is None:
        raise http_error(404, "no_such_recording", f"lesson {lesson_id!r} has no recording")
    return info


def _access(request: web.Request, lesson_id: str) -> str:
    """Who the caller is to this recording: "teacher", "origin", "replay" or "public";
    401/403 when the caller may not watch it."""
    credential = credential_of(request)
    authority = request.app[AUTHORITY]
    info = _recording(request, lesson_id)
    problem: web.HTTPException | None = None
    account = account_for(request, credential) if credential is not None else None
    if account is not None:
        lesson = request.app[STORE].get(lesson_id)
        if lesson is not None and may_manage(account, lesson):
            return "teacher"
        # another teacher's key: as anybody else, a public recording is open to them
        problem = http_error(403, "not_your_lesson", "this recording belongs to another teacher")
    elif credential is not None:
        try:
            grant = authority.verify(credential)
        except TokenError as exc:
            problem = http_error(401, "invalid_token", str(exc), _CHALLENGE)
        else:
            if grant.lesson_id == lesson_id and grant.role in _WATCH_ROLES:
                try:  # an origin link the teacher replaced opens nothing, recordings included
                    grant_of(request, credential, lesson_id, _WATCH_ROLES, after_end=_WATCH_ROLES)
                except web.HTTPException as refused:
                    problem = refused
                else:
                    return grant.role.value
            else:
                problem = http_error(
                    403,
                    "not_allowed",
                    "this token does not open this recording (it is not public)",
                )
    if info.get("public"):
        return "public"
    raise problem or http_error(
        401, "unauthorized", "this recording is not public: a replay link is needed", _CHALLENGE
    )


def _require_owner(request: web.Request, lesson_id: str) -> None:
    """The key of the lesson's teacher (or the admin's) or the lesson's origin token, which
    keeps this power over the recording after the lesson has ended."""
    teacher_or_grant(request, lesson_id, {Role.ORIGIN}, after_end={Role.ORIGIN})


_COURSE_PLACES = web.RequestKey("course_places", dict)


def _course_place(request: web.Request, lesson: Lesson) -> dict[str, Any] | None:
    """The lesson's course and its number in it (第 N 课) and place in the timetable, for the
    library to group a course's replays in order; None for a one-off lesson."""
    courses = request.app.get(COURSES)
    if lesson.course_id is None or courses is None:
        return None
    places: dict[str, dict[str, Any] | None] = request.setdefault(_COURSE_PLACES, {})
    if lesson.course_id not in places:
        course = courses.get(lesson.course_id)
        places[lesson.course_id] = None
        if course is not None:
            order = [item.id for item in courses.lessons(course.id)]
            places[lesson.course_id] = {"id": course.id, "title": course.title, "order": order}
    place = places[lesson.course_id]
    if place is None or lesson.id not in place["order"]:
        return None
    return {
        "id": place["id"],
        "title": place["title"],
        "number": place["order"].index(lesson.id) + 1,
        "starts_at": lesson.starts_at,
    }


def entry(
    request: web.Request, lesson: Lesson, info: dict[str, Any], token: str | None
) -> dict[str, Any]:
    """A recording as the library shows it: the lesson's title, teacher and date with it, and
    its course and number there; ``token`` is appended to its media URLs (what a <video>
    element cannot send as a header)."""
    data = {
        "lesson_id": lesson.id,
        "title": lesson.title,
        "teacher": lesson.teacher,
        "lesson_state": lesson.state.value,
        "date": lesson.started_at or lesson.starts_at or lesson.created_at,
        "course": _course_place(request, lesson),
        **info,
    }
    if token is not None:
        suffix = f"?token={token}"
        for key in ("url", "thumbnail_url"):
            if data.get(key):
                data[key] += suffix
        for part in ("courseware", "stage"):
            side = data.get(part)
            if side and side.get("url"):
                data[part] = {**side, "url": side["url"] + suffix}
        data["token"] = token
    return data


async def list_recordings(request: web.Request) -> web.Response:
    """The library: every recording for the teacher, the public ones for everybody else;
    ``q`` filters by title or teacher, ``since``/``until`` by the lesson's date."""
    account = account_of(request)
    teacher = account is not None
    query = request.query.get("q", "").strip().casefold()[:MAX_QUERY]
    since = query_number(request, "since", "Unix seconds", empty_is_absent=True)
    until = query_number(request, "until", "Unix seconds", empty_is_absent=True)
    lessons = request.app[LESSONS]
    authority = request.app[AUTHORITY]
    entries = []
    total = 0
    for lesson in request.app[STORE].list():
        info = lessons.recording_info(lesson.id)
        mine = account is not None and may_manage(account, lesson)
        if info is None or not (mine or info.get("public")):
            continue
        total += int(info.get("size_bytes") or 0)
        date = lesson.started_at or lesson.created_at
        if since is not None and date < since or until is not None and date >= until:
            continue
        haystack = f"{lesson.title}\n{lesson.teacher}".casefold()
        if query and query not in haystack:
            continue
        token = authority.issue(lesson.id, Role.REPLAY) if mine else None
        entries.append(entry(request, lesson, info if mine else as_public(info), token))
    return json_response({"recordings": entries, "total_size_bytes": total, "teacher": teacher})


def as_public(info: dict[str, Any]) -> dict[str, Any]:
    """A recording as anybody without a link sees it: no stage file unless the teacher
    opened that too."""
    if info.get("public_stage"):
        return info
    return {**info, "stage": None}


async def get_recording(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    lesson = _lesson(request, lesson_id)
    who = _access(request, lesson_id)
    info = _recording(request, lesson_id)
    if who == "public":
        info = as_public(info)
    token = None
    if who == "teacher":
        token = request.app[AUTHORITY].issue(lesson_id, Role.REPLAY)
    elif who in ("origin", "replay"):
        token = credential_of(request)
    return json_response(entry(request, lesson, info, token))


async def update_recording(request: web.Request) -> web.Response:
    """``{"public": true|false, "public_stage": true|false}`` (either or both): whether anyone
    may watch it without a link. Public means the teacher's camera, sound and courseware; the
    stage file (the classrooms called on stage: pupils) stays private unless ``public_stage``
    is chosen as well, on a public recording."""
    lesson_id = request.match_info["lesson_id"]
    _require_owner(request, lesson_id)
    lesson = _lesson(request, lesson_id)
    body = await json_object(request)
    unknown = set(body) - {"public", "public_stage"}
    if unknown:
        raise http_error(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    if not body:
        raise http_error(400, "nothing_to_change", "give public and/or public_stage")
    public, public_stage = body.get("public"), body.get("public_stage")
    for name, value in (("public", public), ("public_stage", public_stage)):
        if name in body and not isinstance(value, bool):
            raise http_error(400, f"bad_{name}", f"{name} must be true or false")
    before = _recording(request, lesson_id)
    if public_stage and not (public if public is not None else before.get("public")):
        raise http_error(
            409,
            "recording_not_public",
            "the stage recording can be made public only with the recording itself",
        )
    info = request.app[LIBRARY].set_public(lesson_id, public, public_stage)
    if info is None:
        raise http_error(404, "no_such_recording", f"lesson {lesson_id!r} has no recording")
    if info["public"] != before.get("public"):
        action = AuditAction.RECORDING_PUBLIC if info["public"] else AuditAction.RECORDING_PRIVATE
        audit(request, action, lesson_id)
    if info["public_stage"] != before.get("public_stage"):
        stage_action = (
            AuditAction.RECORDING_STAGE_PUBLIC
            if info["public_stage"]
            else AuditAction.RECORDING_STAGE_PRIVATE
        )
        audit(request, stage_action, lesson_id)
    logger.info(
        "lesson %s: recording public=%s, stage public=%s",
        lesson_id,
        info["public"],
        info["public_stage"],
    )
    return json_response(entry(request, lesson, info, None))


async def delete_recording(request: web.Request) -> web.Response:
    require_teacher(request)
    lesson_id = request.match_info["lesson_id"]
    try:
        deleted = await request.app[LIBRARY].delete(lesson_id)
    except RecordingBusyError as exc:
        raise http_error(409, "recording_busy", str(exc)) from exc
    if not deleted:
        raise http_error(404, "no_such_recording", f"lesson {lesson_id!r} has no recording")
    audit(request, AuditAction.RECORDING_DELETED, lesson_id)
    return json_response({"deleted": lesson_id})


async def replay_link(request: web.Request) -> web.Response:
    """A link to the recording the teacher can share: the library page with a replay token."""
    lesson_id = request.match_info["lesson_id"]
    _require_owner(request, lesson_id)
    _lesson(request, lesson_id)
    _recording(request, lesson_id)
    authority = request.app[AUTHORITY]
    token = authority.issue(lesson_id, Role.REPLAY)
    expires_at = authority.verify(token).expires_at
    base = str(request.url.origin())
    return json_response(
        {
            "url": f"{base}/recordings?lesson={lesson_id}&token={token}",
            "token": token,
            "expires_at": expires_at,
        },
        status=201,
    )


def _is_stage_file(request: web.Request, lesson_id: str, name: str) -> bool:
    """Whether ``name`` is the recording's stage file while that is not public."""
    info = _recording(request, lesson_id)
    stage = info.get("stage")
    return bool(stage) and not info.get("public_stage") and stage["url"].rsplit("/", 1)[-1] == name


async def recording_file(request: web.Request) -> web.StreamResponse:
    lesson_id = request.match_info["lesson_id"]
    name = request.match_info["name"]
    who = _access(request, lesson_id)
    if who == "public" and _is_stage_file(request, lesson_id, name):
        raise http_error(
            403,
            "stage_not_public",
            "the stage recording (classrooms on stage) is not public: a replay link is needed",
        )
    path = request.app[LIBRARY].file(lesson_id, name)
    if path is None:
        raise http_error(404, "no_such_file", "this recording has no such file")
    # range requests (206) are what let a player seek
    return RangeFileResponse(path, headers={"Cache-Control": "private, no-cache"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/recordings", list_recordings)
    app.router.add_get("/api/recordings/{lesson_id}", get_recording)
    app.router.add_patch("/api/recordings/{lesson_id}", update_recording)
    app.router.add_delete("/api/recordings/{lesson_id}", delete_recording)
    app.router.add_post("/api/recordings/{lesson_id}/link", replay_link)
    app.router.add_get("/recordings/{lesson_id}/{name}", recording_file)
