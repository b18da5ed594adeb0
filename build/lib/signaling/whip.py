"""WHIP ingest and WHEP playback: an SDP offer in, an answer and a session URL out."""

from __future__ import annotations

import logging
import re

from aiohttp import web

from media.offer import MAX_OFFER_BYTES, OfferError
from media.peer import NegotiationError, Peer
from media.publisher import Publisher
from media.subscriber import Subscriber

from .auth import grant_for
from .contracts import Lesson, LessonState, Role
from .errors import http_error
from .hooks import hooks_of
from .keys import EVENTS, SESSIONS, SFU, STORE
from .sessions import Session, Sessions

logger = logging.getLogger(__name__)

SOURCES = ("camera", "courseware")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


def _lesson(request: web.Request, lesson_id: str) -> Lesson:
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        raise http_error(404, "no_such_lesson", f"there is no lesson {lesson_id!r}")
    if lesson.state is LessonState.ENDED:
        raise http_error(410, "lesson_ended", "this lesson has ended")
    return lesson


async def _offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise http_error(
            415, "unsupported_media_type", "the offer must be sent as Content-Type: application/sdp"
        )
    if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
        raise http_error(413, "offer_too_large", f"the offer exceeds {MAX_OFFER_BYTES} bytes")
    body = await request.content.read(MAX_OFFER_BYTES + 1)
    if len(body) > MAX_OFFER_BYTES:
        raise http_error(413, "offer_too_large", f"the offer exceeds {MAX_OFFER_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise http_error(400, "malformed_sdp", "the offer is not UTF-8 text") from exc


async def _negotiate(
    request: web.Request,
    lesson: Lesson,
    peer: Peer,
    offer: str,
    kind: str,
    role: Role,
    max_classrooms: int | None = None,
) -> web.Response:
    try:
        answer = await peer.negotiate(offer)
    except OfferError as exc:
        await peer.close()
        raise http_error(400, "malformed_sdp", str(exc)) from exc
    except NegotiationError as exc:
        await peer.close()
        raise http_error(406, exc.reason, str(exc)) from exc
    except Exception:
        await peer.close()
        logger.exception("lesson %s: negotiation of %s failed", lesson.id, peer.id)
        raise http_error(
            500, "negotiation_failed", "the server could not answer this offer"
        ) from None
    if peer.closed:  # the lesson ended while we were negotiating
        raise http_error(410, "lesson_ended", "this lesson has ended")
    sessions, events = request.app[SESSIONS], request.app[EVENTS]
    if max_classrooms is not None and sessions.classrooms(lesson.id) >= max_classrooms:
        await peer.close()  # others filled the lesson while this one negotiated
        raise http_error(409, "lesson_full", f"this lesson already has {max_classrooms} classrooms")
    session = Session(peer.id, lesson.id, role, kind, peer.label, peer)
    sessions.add(session)
    events.publish(lesson.id)

    def forget(_: Peer) -> None:
        _forget(sessions, session)
        events.publish(lesson.id)

    peer.on_close(forget)
    location = f"/{kind}/{lesson.id}/{session.id}"
    logger.info(
        "lesson %s: %s %s joined (%s, session %s)",
        lesson.id,
        role.value,
        peer.label,
        kind,
        session.id,
    )
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": location},
    )


def _forget(sessions: Sessions, session: Session) -> None:
    if sessions.remove(session.id) is not None:
        logger.info(
            "lesson %s: %s %s left (%s, session %s)",
            session.lesson_id,
            session.role.value,
            session.name,
            session.kind,
            session.id,
        )


async def whip_post(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    grant_for(request, lesson_id, {Role.ORIGIN})
    lesson = _lesson(request, lesson_id)
    source = request.query.get("source", "camera")
    if source not in SOURCES:
        raise http_error(
            400, "bad_source", f"source must be one of {', '.join(SOURCES)}, not {source[:40]!r}"
        )
    offer = await _offer(request)
    lesson = _lesson(request, lesson_id)  # again: it may have ended while the offer came in
    sfu = request.app[SFU]
    peer = Publisher(Sessions.new_id(), sfu.router(lesson_id), sfu.network, source, source)
    response = await _negotiate(request, lesson, peer, offer, "whip", Role.ORIGIN)
    store = request.app[STORE]
    latest = store.get(lesson_id)
    if latest is not None and latest.state is LessonState.SCHEDULED:
        store.set_state(lesson_id, LessonState.LIVE)
        request.app[EVENTS].publish(lesson_id)
        logger.info("lesson %s is live", lesson_id)
    current = store.get(lesson_id)
    if current is not None and current.state is LessonState.LIVE:
        hooks_of(request.app).on_live(current)  # every publication: a recording resumes too
    return response


async def whep_post(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    grant = grant_for(request, lesson_id, {Role.CLASSROOM, Role.ORIGIN})
    lesson = _lesson(request, lesson_id)
    name = request.query.get("name", "").strip() or (
        "teacher" if grant.role is Role.ORIGIN else "classroom"
    )
    if not _NAME.match(name):
        raise http_error(400, "bad_name", "name must be 1 to 64 printable characters")
    sessions = request.app[SESSIONS]
    if grant.role is Role.CLASSROOM and sessions.classrooms(lesson_id) >= lesson.max_classrooms:
        raise http_error(
            409, "lesson_full", f"this lesson already has {lesson.max_classrooms} classrooms"
        )
    offer = await _offer(request)
    lesson = _lesson(request, lesson_id)  # again: it may have ended while the offer came in
    sfu = request.app[SFU]
    peer = Subscriber(Sessions.new_id(), sfu.router(lesson_id), sfu.network, name)
    limit = lesson.max_classrooms if grant.role is Role.CLASSROOM else None
    return await _negotiate(request, lesson, peer, offer, "whep", grant.role, limit)


async def session_delete(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    kind = request.path.split("/", 2)[1]
    # a classroom may leave; only the origin may stop a publication
    grant_for(
        request, lesson_id, {Role.ORIGIN} if kind == "whip" else {Role.CLASSROOM, Role.ORIGIN}
    )
    session = request.app[SESSIONS].get(request.match_info["session_id"])
    if session is None or session.lesson_id != lesson_id or session.kind != kind:
        raise http_error(404, "no_such_session", "this session does not exist (any more)")
    await session.peer.close()
    return web.json_response({"deleted": session.id})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whip/{lesson_id}", whip_post)
    app.router.add_post("/whep/{lesson_id}", whep_post)
    app.router.add_delete("/whip/{lesson_id}/{session_id}", session_delete)
    app.router.add_delete("/whep/{lesson_id}/{session_id}", session_delete)
