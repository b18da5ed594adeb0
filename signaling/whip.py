"""WHIP ingest and WHEP playback: an SDP offer in, an answer and a session URL out."""

from __future__ import annotations

import logging
import secrets
from urllib.parse import quote, urlencode

from aiohttp import web

from media.offer import MAX_OFFER_BYTES, OfferError, describe_offer
from media.peer import NegotiationError, Peer

from .auth import fixed_name, grant_for
from .classrooms import FEED_PREFIX, classroom_name, feed_source, valid_client, valid_name
from .cluster import before_join
from .contracts import Grant, Lesson, LessonState, Role
from .cors import preflight
from .errors import http_error, read_body
from .json_answers import json_response
from .keys import LESSONS, STORE, TURN
from .live_lesson import LiveLesson
from .sessions import Session
from .stage import SLOTS

logger = logging.getLogger(__name__)

SOURCES = ("camera", "courseware")
FEED = "feed"  # ?source=feed: a classroom's return feed

# The media sections each endpoint can use, by kind: more are refused before a peer is made.
# A publisher (the teacher's camera or courseware, OBS, FFmpeg, a classroom's return feed)
# sends one picture and one sound. A watcher receives the stage's slots; one data channel
# section is let through for WHEP players that open one (the classroom page does not).
PUBLISH_SECTIONS = {"audio": 1, "video": 1}
WATCH_SECTIONS = {"video": len(SLOTS["video"]), "audio": len(SLOTS["audio"]), "application": 1}
FEED_WATCH_SECTIONS = {"audio": 1, "video": 1, "application": 1}


def _lesson(request: web.Request, lesson_id: str) -> Lesson:
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        raise http_error(404, "no_such_lesson", f"there is no lesson {lesson_id!r}")
    if lesson.state is LessonState.ENDED:
        raise http_error(410, "lesson_ended", "this lesson has ended")
    return lesson


async def read_offer(request: web.Request, sections: dict[str, int]) -> str:
    if request.content_type != "application/sdp":
        raise http_error(
            415, "unsupported_media_type", "the offer must be sent as Content-Type: application/sdp"
        )
    body = await read_body(request, MAX_OFFER_BYTES, "offer_too_large", "the offer")
    try:
        offer = body.decode("utf-8")
        describe_offer(offer, sections)  # before a peer (keys, sockets) is made for it
    except UnicodeDecodeError as exc:
        raise http_error(400, "malformed_sdp", "the offer is not UTF-8 text") from exc
    except OfferError as exc:
        raise http_error(400, exc.code, str(exc)) from exc
    return offer


def ice_server_links(request: web.Request, grant: Grant) -> list[str]:
    """The ``Link`` headers (RFC 9725) of the configured TURN servers, with a credential that
    expires with ``grant``'s token; none without TURN servers."""
    turn = request.app.get(TURN)
    return [] if turn is None else turn.for_grant(grant).link_headers()


async def _negotiate(
    request: web.Request,
    grant: Grant,
    live: LiveLesson,
    peer: Peer,
    offer: str,
    kind: str,
    max_classrooms: int | None = None,
    client: str | None = None,
) -> web.Response:
    try:
        answer = await peer.negotiate(offer)
    except OfferError as exc:
        await peer.close()
        raise http_error(400, exc.code, str(exc)) from exc
    except NegotiationError as exc:
        await peer.close()
        raise http_error(406, exc.reason, str(exc)) from exc
    except Exception:
        await peer.close()
        logger.exception("lesson %s: negotiation of %s failed", live.id, peer.id)
        raise http_error(
            500, "negotiation_failed", "the server could not answer this offer"
        ) from None
    session = await live.admit(peer, grant.role, kind, max_classrooms, client)
    session.course_link = grant.course_link  # closed at once if that link is revoked
    response = web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": _session_url(live.id, session)},
    )
    for link in ice_server_links(request, grant):
        response.headers.add("Link", link)
    return response


def _session_url(lesson_id: str, session: Session) -> str:
    """The URL a session is left at. A classroom's carries who opened it (its name and
    client id): all classrooms share one token, so the token alone cannot tell them apart."""
    url = f"/{session.kind}/{lesson_id}/{session.id}"
    if session.role is Role.CLASSROOM:
        owner = {"name": session.name}
        if session.client is not None:
            owner["client"] = session.client
        # a name read from undecodable bytes holds surrogate escapes: give back those bytes
        url += "?" + urlencode(owner, quote_via=quote, errors="surrogateescape")
    return url


def _opened_by(request: web.Request, role: Role, session: Session) -> bool:
    """Whether the caller may end ``session``: the teacher ends any; a classroom only one it
    opened itself (a classroom's session, under its name and client id, as in its URL)."""
    if role is Role.ORIGIN:
        return True
    return (
        session.role is Role.CLASSROOM
        and request.query.get("name") == session.name
        and request.query.get("client") == session.client
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


async def whip_post(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    source = request.query.get("source", "camera")
    if source == FEED:
        return await _feed_post(request, lesson_id)
    grant = grant_for(request, lesson_id, {Role.ORIGIN})
    _lesson(request, lesson_id)
    if source not in SOURCES:
        raise http_error(
            400,
            "bad_source",
            f"source must be one of {', '.join((*SOURCES, FEED))}, not {source[:40]!r}",
        )
    pulled_from = _lesson(request, lesson_id).source
    if pulled_from is not None and pulled_from.kind == "whep":
        raise http_error(
            409,
            "lesson_relayed",
            "this lesson is relayed from a lesson on another server (its source_url): "
            "publish there, or clear source_url first (PATCH)",
        )
    if source == "camera" and pulled_from is not None:
        raise http_error(
            409,
            "camera_pulled",
            "this lesson's camera is pulled from its source_url: clear it first (PATCH)",
        )
    pushed = request.app[LESSONS].get(lesson_id)
    if source == "camera" and pushed is not None and pushed.pushing():
        raise http_error(409, "camera_pushed", "an encoder pushes this lesson's camera over RTMP")
    offer = await read_offer(request, PUBLISH_SECTIONS)
    _lesson(request, lesson_id)  # again: it may have ended while the offer came in
    live = request.app[LESSONS].open(lesson_id)
    peer = live.new_publisher(source, source)
    response = await _negotiate(request, grant, live, peer, offer, "whip")
    live.went_live()
    return response


async def _feed_post(request: web.Request, lesson_id: str) -> web.Response:
    """A classroom publishes its return feed (camera and microphone) for the teacher."""
    grant = grant_for(request, lesson_id, {Role.CLASSROOM})
    _lesson(request, lesson_id)
    name = fixed_name(grant) or classroom_name(request.query.get("name"))
    client = _client(request)
    # all classrooms share one link: the feed must come from the browser that watches as
    # this classroom, or any classroom could show its camera in another's name
    live = request.app[LESSONS].get(lesson_id)
    if live is None or not live.sessions.is_classroom(name, client):
        raise http_error(
            409,
            "not_joined",
            f"no classroom named {name!r} watches this lesson from here (?client=); "
            "join first, then send the feed",
        )
    offer = await read_offer(request, PUBLISH_SECTIONS)
    _lesson(request, lesson_id)
    live = request.app[LESSONS].open(lesson_id)
    peer = live.new_publisher(feed_source(name), name)
    return await _negotiate(request, grant, live, peer, offer, "whip", client=client)


async def whep_post(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    if request.query.get("source") is None:
        # with a lesson directory: a classroom is sent to the server that should carry it,
        # or its lesson relayed here from its home
        await before_join(request, lesson_id, request.query.get("name"))
    grant = grant_for(request, lesson_id, {Role.CLASSROOM, Role.ORIGIN})
    lesson = _lesson(request, lesson_id)
    source = request.query.get("source")
    if source is not None:
        return await _feed_watch(request, lesson, source, grant)
    client = _client(request)
    if grant.role is Role.CLASSROOM:
        # a receiving classroom's own course link fixes its name, so its attendance counts
        name = fixed_name(grant) or classroom_name(request.query.get("name") or _unnamed())
        live = request.app[LESSONS].get(lesson_id)
        if live is not None:
            live.check_removed(name)
            replaced = live.returning(name, client)
            live.check_room(replaced, lesson.max_classrooms)
        excluded = feed_source(name)  # on stage, it does not get its own feed back
    else:
        name, excluded = "teacher", None
    offer = await read_offer(request, WATCH_SECTIONS)
    lesson = _lesson(request, lesson_id)  # again: it may have ended while the offer came in
    live = request.app[LESSONS].open(lesson_id)
    peer = live.new_subscriber(name, SLOTS, excluded)
    limit = lesson.max_classrooms if grant.role is Role.CLASSROOM else None
    return await _negotiate(request, grant, live, peer, offer, "whep", limit, client)


async def _feed_watch(
    request: web.Request, lesson: Lesson, source: str, grant: Grant
) -> web.Response:
    """The teacher watches one classroom's return feed; feeds go to the teacher only."""
    if grant.role is not Role.ORIGIN:
        raise http_error(403, "wrong_role", "return feeds go to the teacher only")
    if not source.startswith(FEED_PREFIX) or not valid_name(source[len(FEED_PREFIX) :]):
        raise http_error(
            400, "bad_source", f"source must be feed:<classroom name>, not {source[:40]!r}"
        )
    offer = await read_offer(request, FEED_WATCH_SECTIONS)
    _lesson(request, lesson.id)
    live = request.app[LESSONS].open(lesson.id)
    peer = live.new_subscriber(
        f"teacher watching {source}", {"video": (source,), "audio": (source,)}
    )
    return await _negotiate(request, grant, live, peer, offer, "whep")


async def endpoint_options(request: web.Request) -> web.Response:
    """``OPTIONS`` on a WHIP/WHEP endpoint: what it accepts, to anyone (a CORS preflight
    carries no credential); with a token of the lesson, also the ICE servers and their
    credentials as ``Link`` headers (RFC 9725 §4.4), so a client may gather relay candidates
    before it makes its offer."""
    response = preflight(request, {"POST"})
    if "Authorization" not in request.headers:
        return response
    lesson_id = request.match_info["lesson_id"]
    kind = request.path.split("/", 2)[1]
    # WHIP: the teacher's sources, or a classroom's return feed; WHEP: either watches
    grant = grant_for(request, lesson_id, {Role.ORIGIN, Role.CLASSROOM})
    _lesson(request, lesson_id)
    for link in ice_server_links(request, grant):
        response.headers.add("Link", link)
    logger.debug("lesson %s: %s ICE servers asked for", lesson_id, kind)
    return response


async def session_delete(request: web.Request) -> web.Response:
    lesson_id = request.match_info["lesson_id"]
    kind = request.path.split("/", 2)[1]
    grant = grant_for(request, lesson_id, {Role.CLASSROOM, Role.ORIGIN})
    live = request.app[LESSONS].get(lesson_id)
    session = live.sessions.get(request.match_info["session_id"]) if live else None
    if session is None or session.kind != kind:
        raise http_error(404, "no_such_session", "this session does not exist (any more)")
    if not _opened_by(request, grant.role, session):
        # a classroom may leave and stop its own return feed, not another classroom's
        # session nor the teacher's
        raise http_error(
            403,
            "not_your_session",
            "a session may be ended only by whoever opened it, or by the teacher",
        )
    await session.peer.close()
    return json_response({"deleted": session.id})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/whip/{lesson_id}", whip_post)
    app.router.add_post("/whep/{lesson_id}", whep_post)
    app.router.add_route("OPTIONS", "/whip/{lesson_id}", endpoint_options)
    app.router.add_route("OPTIONS", "/whep/{lesson_id}", endpoint_options)
    app.router.add_delete("/whip/{lesson_id}/{session_id}", session_delete)
    app.router.add_delete("/whep/{lesson_id}/{session_id}", session_delete)
