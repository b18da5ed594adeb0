"""WHIP ingest and WHEP playback: an SDP offer in, an answer and a session URL out."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from media.offer import MAX_OFFER_BYTES, OfferError, describe_offer
from media.peer import NegotiationError, Peer

from .auth import grant_for
from .classrooms import FEED_PREFIX, classroom_name, feed_source, valid_client, valid_name
from .contracts import Lesson, LessonState, Role
from .errors import http_error, read_body
from .hooks import hooks_of
from .interaction import apply_stage, lesson_router
from .keys import CLASSROOMS, EVENTS, SESSIONS, STORE
from .sessions import Session, Sessions
from .stage import SLOTS

logger = logging.getLogger(__name__)

SOURCES = ("camera", "courseware")
FEED = "feed"  # ?source=feed: a classroom's return feed
RETRY_FULL_S = 5  # how soon a classroom turned away from a full lesson should ask again


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
    body = await read_body(request, MAX_OFFER_BYTES, "offer_too_large", "the offer")
    try:
        offer = body.decode("utf-8")
        describe_offer(offer)  # before a peer connection (keys, sockets) is made for it
    except UnicodeDecodeError as exc:
        raise http_error(400, "malformed_sdp", "the offer is not UTF-8 text") from exc
    except OfferError as exc:
        raise http_error(400, "malformed_sdp", str(exc)) from exc
    return offer


async def _negotiate(
    request: web.Request,
    lesson: Lesson,
    peer: Peer,
    offer: str,
    kind: str,
    role: Role,
    max_classrooms: int | None = None,
    client: str | None = None,
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
    attends = role is Role.CLASSROOM and kind == "whep"
    replaced = None
    if attends:
        try:  # again: others may have joined while this one negotiated
            replaced = _returning(sessions, lesson.id, peer.label, client)
            if max_classrooms is not None:
                _check_room(sessions, lesson.id, replaced, max_classrooms)
        except web.HTTPException:
            await peer.close()
            raise
    session = Session(peer.id, lesson.id, role, kind, peer.label, peer, client)
    sessions.add(session)
    classrooms = request.app[CLASSROOMS]
    if attends:
        classrooms.arrived(lesson.id, peer.label)
    events.publish(lesson.id)
    if replaced is not None:
        # the same classroom back after its network dropped: its old connection goes
        logger.info("lesson %s: %s is back, replacing session %s", lesson.id, peer.label, replaced)
        await replaced.peer.close()

    def forget(_: Peer) -> None:
        _forget(sessions, session)
        if attends and classrooms.departed(lesson.id, session.name):
            apply_stage(request.app, lesson.id)
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


def _returning(sessions: Sessions, lesson_id: str, name: str, client: str | None) -> Session | None:
    """The session this classroom still has in the lesson when it comes back after its
    network dropped (same name, same client id): it is to be replaced. Another classroom
    already using the name gets 409."""
    session = sessions.classroom(lesson_id, name)
    if session is None:
        return None
    if client is not None and session.client == client:
        return session
    raise http_error(409, "name_taken", f"a classroom named {name!r} is already in this lesson")


def _check_room(
    sessions: Sessions, lesson_id: str, replaced: Session | None, max_classrooms: int
) -> None:
    """409 with Retry-After when the lesson is full (a classroom coming back takes its own
    place)."""
    if sessions.classrooms(lesson_id) - (replaced is not None) >= max_classrooms:
        raise http_error(
            409,
            "lesson_full",
            f"this lesson already has {max_classrooms} classrooms",
            {"Retry-After": str(RETRY_FULL_S)},
        )


def _client(request: web.Request) -> str | None:
    """The id a classroom page keeps for itself, so that it is known again when it comes
    back after a network drop."""
    client = request.query.get("client")
    if client is None:
        return None
    if not valid_client(client):
        raise http_error(400, "bad_client", "client must be 8 to 64 letters, digits, - or _")
    return client


def _unnamed() -> str:
    """A name for a classroom that gave none (unique, so two of them never collide)."""
    return f"classroom {secrets.token_hex(3)}"


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
    source = request.query.get("source", "camera")
    if source == FEED:
        return await _feed_post(request, lesson_id)
    grant_for(request, lesson_id, {Role.ORIGIN})
    lesson = _lesson(request, lesson_id)
    if source not in SOURCES:
        raise http_error(
            400,
            "bad_source",
            f"source must be one of {', '.join((*SOURCES, FEED))}, not {source[:40]!r}",
        )
    offer = await _offer(request)
    lesson = _lesson(request, lesson_id)  # again: it may have ended while the offer came in
    peer = lesson_router(request.app, lesson_id).new_publisher(Sessions.new_id(), source, source)
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


async def _feed_post(request: web.Request, lesson_id: str) -> web.Response:
    """A classroom publishes its return feed (camera and microphone) for the teacher."""
    grant_for(request, lesson_id, {Role.CLASSROOM})
    _lesson(request, lesson_id)
    name = classroom_name(request.query.get("name"))
    client = _client(request)
    # all classrooms share one link: the feed must come from the browser that watches as
    # this classroom, or any classroom could show its camera in another's name
    if not request.app[SESSIONS].is_classroom(lesson_id, name, client):
        raise http_error(
            409,
            "not_joined",
            f"no classroom named {name!r} watches this lesson from here (?client=); "
            "join first, then send the feed",
        )
    offer = await _offer(request)
    lesson = _lesson(request, lesson_id)
    router = lesson_router(request.app, lesson_id)
    peer = router.new_publisher(Sessions.new_id(), feed_source(name), name)
    return await _negotiate(request, lesson, peer, offer, "whip", Role.CLASSROOM)


async def whep_post(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    grant = grant_for(request, lesson_id, {Role.CLASSROOM, Role.ORIGIN})
    lesson = _lesson(request, lesson_id)
    source = request.query.get("source")
    if source is not None:
        return await _feed_watch(request, lesson, source, grant.role)
    sessions = request.app[SESSIONS]
    client = _client(request)
    if grant.role is Role.CLASSROOM:
        name = classroom_name(request.query.get("name") or _unnamed())
        replaced = _returning(sessions, lesson_id, name, client)
        _check_room(sessions, lesson_id, replaced, lesson.max_classrooms)
        excluded = feed_source(name)  # on stage, it does not get its own feed back
    else:
        name, excluded = "teacher", None
    offer = await _offer(request)
    lesson = _lesson(request, lesson_id)  # again: it may have ended while the offer came in
    router = lesson_router(request.app, lesson_id)
    peer = router.new_subscriber(Sessions.new_id(), name, SLOTS, excluded_source=excluded)
    limit = lesson.max_classrooms if grant.role is Role.CLASSROOM else None
    return await _negotiate(request, lesson, peer, offer, "whep", grant.role, limit, client)


async def _feed_watch(
    request: web.Request, lesson: Lesson, source: str, role: Role
) -> web.Response:
    """The teacher watches one classroom's return feed; feeds go to the teacher only."""
    if role is not Role.ORIGIN:
        raise http_error(403, "wrong_role", "return feeds go to the teacher only")
    if not source.startswith(FEED_PREFIX) or not valid_name(source[len(FEED_PREFIX) :]):
        raise http_error(
            400, "bad_source", f"source must be feed:<classroom name>, not {source[:40]!r}"
        )
    offer = await _offer(request)
    lesson = _lesson(request, lesson.id)
    peer = lesson_router(request.app, lesson.id).new_subscriber(
        Sessions.new_id(), f"teacher watching {source}", {"video": (source,), "audio": (source,)}
    )
    return await _negotiate(request, lesson, peer, offer, "whep", Role.ORIGIN)


async def session_delete(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    kind = request.path.split("/", 2)[1]
    grant = grant_for(request, lesson_id, {Role.CLASSROOM, Role.ORIGIN})
    session = request.app[SESSIONS].get(request.match_info["session_id"])
    if session is None or session.lesson_id != lesson_id or session.kind != kind:
        raise http_error(404, "no_such_session", "this session does not exist (any more)")
    if kind == "whip" and session.role is Role.ORIGIN and grant.role is not Role.ORIGIN:
        # a classroom may leave and stop its own return feed, not the teacher's publication
        raise http_error(403, "wrong_role", "only the teacher may stop the teacher's publication")
    await session.peer.close()
    return web.json_response({"deleted": session.id})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whip/{lesson_id}", whip_post)
    app.router.add_post("/whep/{lesson_id}", whep_post)
    app.router.add_delete("/whip/{lesson_id}/{session_id}", session_delete)
    app.router.add_delete("/whep/{lesson_id}/{session_id}", session_delete)
