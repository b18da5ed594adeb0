"""Catching up over HTTP: a live lesson from a given time, as it was recorded, then on as it
is recorded (``GET /api/lessons/{id}/catch-up/{source}``), and what there is to catch up on
(``GET /api/lessons/{id}/catch-up``).

The stream is the recording's own file, WebM (VP8, Opus) or fragmented MP4 (H.264), from
the keyframe at or before the time asked for: its header, the fragments recorded so far, and
each new one as it completes (chunked transfer; never transcoded). A classroom that joined
late or lost its link rewinds with it, and one where no WebRTC path works watches the lesson
a few seconds behind over it.

Only the lesson's classroom and origin tokens open it (Bearer or ``?token=``, as a media
element cannot send headers), and only while the lesson is live: after its end the
recording's own rules apply (``/recordings``). An open stream is checked again every second:
it stops when the lesson ends, when its token is revoked or replaced, and when the teacher
removes the classroom reading it. Every stream is bounded in time and bytes, and the readers
of a lesson and of one client address are counted.

The range asked for is one of time. A ``Range`` header is ignored, as RFC 9110 lets a server
do (§14.2): the stream is made as it is asked for and grows, so it has no length to count
bytes in, and ``Accept-Ranges: none`` says so (a finished lesson's file, under
``/recordings``, answers byte ranges).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from .auth import credential_of, fixed_name, grant_of
from .classrooms import classroom_name, valid_client
from .contracts import Grant, LessonState, Role
from .errors import http_error, query_number
from .json_answers import json_response
from .keys import LESSONS, STORE
from .rate_limits import client_of
from .recording_port import LIVE_RECORDINGS, LiveRecording

logger = logging.getLogger(__name__)

# the sources a classroom sees live; the stage (pupils) is not offered
SOURCES = ("camera", "courseware")
MAX_DURATION_S = 4 * 3600.0  # longer than any lesson: a longer range is a mistake
MAX_STREAM_S = 4 * 3600.0  # one response lasts at most this long
MAX_STREAM_BYTES = 4 << 30
WRITE_TIMEOUT_S = 30.0  # a reader that takes nothing for this long is let go
RECHECK_S = 1.0  # how often an open stream's right to go on is checked
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="syncclass"'}


@dataclass
class CatchUpLimits:
    per_lesson: int = 200  # concurrent streams of one lesson
    per_address: int = 16  # concurrent streams of one client address (a school's NAT)
    _lessons: Counter[str] = field(default_factory=Counter)
    _addresses: Counter[str] = field(default_factory=Counter)

    def admit(self, lesson_id: str, address: str) -> None:
        if self._lessons[lesson_id] >= self.per_lesson:
            raise http_error(
                429,
                "too_many_readers",
                f"this lesson already has {self.per_lesson} catch-up streams; try again soon",
                {"Retry-After": "10"},
            )
        if self._addresses[address] >= self.per_address:
            raise http_error(
                429,
                "too_many_readers",
                f"this address already holds {self.per_address} catch-up streams",
                {"Retry-After": "10"},
            )
        self._lessons[lesson_id] += 1
        self._addresses[address] += 1

    def release(self, lesson_id: str, address: str) -> None:
        for counter, key in ((self._lessons, lesson_id), (self._addresses, address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]


CATCH_UP_LIMITS = web.AppKey("catch_up_limits", CatchUpLimits)


def _authorize(request: web.Request, lesson_id: str) -> Grant:
    """A classroom or origin token of this lesson, while it is not over (410 after)."""
    token = credential_of(request)
    if token is None:
        raise http_error(
            401, "unauthorized", "the lesson's classroom or origin token is needed", _CHALLENGE
        )
    return grant_of(request, token, lesson_id, {Role.CLASSROOM, Role.ORIGIN})


def _live_lesson(request: web.Request, lesson_id: str) -> None:
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        raise http_error(404, "no_such_lesson", f"there is no lesson {lesson_id!r}")
    if lesson.state is LessonState.ENDED:
        raise http_error(410, "lesson_ended", "the lesson has ended: watch its recording")
    if lesson.state is not LessonState.LIVE:
        raise http_error(409, "lesson_not_live", "the lesson has not started")
    if not lesson.record:
        raise http_error(404, "not_recorded", "this lesson is not recorded")


async def _source(request: web.Request, lesson_id: str, source: str) -> LiveRecording:
    recordings = request.app.get(LIVE_RECORDINGS)
    live = None if recordings is None else await recordings.live_source(lesson_id, source)
    if live is None or live.starts_at is None:
        raise http_error(
            404,
            "nothing_recorded_yet",
            f"there is no {source} recorded in this lesson yet",
            {"Retry-After": "2"},
        )
    return live


def _describe(lesson_id: str, source: str, live: LiveRecording) -> dict[str, object]:
    return {
        "url": f"/api/lessons/{lesson_id}/catch-up/{source}",
        "content_type": live.content_type,
        "codecs": live.codecs,
        "origin": live.origin,
        "starts_at": live.starts_at,
        "recorded_until": live.recorded_until,
    }


async def catch_up_info(request: web.Request) -> web.Response:
    """What there is to catch up on: each source recorded so far, from when to when."""
    lesson_id = request.match_info["lesson_id"]
    _authorize(request, lesson_id)
    _live_lesson(request, lesson_id)
    recordings = request.app.get(LIVE_RECORDINGS)
    sources = {}
    for source in SOURCES:
        live = None if recordings is None else await recordings.live_source(lesson_id, source)
        if live is not None and live.starts_at is not None:
            sources[source] = _describe(lesson_id, source, live)
    return json_response({"now": time.time(), "sources": sources})


async def catch_up_stream(request: web.Request) -> web.StreamResponse:
    """The lesson from ``from`` (Unix seconds) or ``offset`` (seconds after the recording's
    start), for ``duration`` seconds or on until the lesson ends. A classroom that watches
    this way because no WebRTC path reaches it gives its ``name`` and ``client`` (as to
    WHEP): it is present in the lesson while the stream lasts (its hand counts, its events
    socket may act, the attendance keeps it). A classroom rewinding beside its WebRTC view
    gives its ``client`` alone: the stream then stops if the teacher removes it."""
    lesson_id = request.match_info["lesson_id"]
    source = request.match_info["source"]
    grant = _authorize(request, lesson_id)
    name = request.query.get("name")
    client = request.query.get("client") or None
    if name is not None:
        if grant.role is not Role.CLASSROOM:
            raise http_error(400, "bad_name", "only a classroom watches under a name")
        name = fixed_name(grant) or classroom_name(name)
        if client is not None and not valid_client(client):
            raise http_error(400, "bad_client", "client must be 8 to 64 letters, digits, - or _")
    if source not in SOURCES:
        raise http_error(404, "no_such_source", f"catch-up is offered for {', '.join(SOURCES)}")
    at = query_number(request, "from", "Unix seconds")
    offset = query_number(request, "offset", "seconds")
    duration = query_number(request, "duration", "seconds")
    if at is None and offset is None:
        raise http_error(400, "missing_from", "give from (Unix seconds) or offset (seconds)")
    if at is not None and offset is not None:
        raise http_error(400, "both_from_and_offset", "give from or offset, not both")
    if offset is not None and offset < 0:
        raise http_error(400, "bad_offset", "offset is counted from the start: 0 or more")
    if duration is not None and not 0 < duration <= MAX_DURATION_S:
        raise http_error(
            400, "bad_duration", f"duration must be more than 0 and at most {MAX_DURATION_S:.0f} s"
        )
    _live_lesson(request, lesson_id)
    live = await _source(request, lesson_id, source)
    starts_at = live.starts_at
    assert starts_at is not None
    now = time.time()
    if at is None:
        assert offset is not None
        at = starts_at + offset
    bounds = {"starts_at": starts_at, "now": now}
    if at < starts_at:
        raise http_error(400, "before_start", "the recording starts later than that", extra=bounds)
    if at > now:
        raise http_error(400, "after_now", "that time has not come yet", extra=bounds)
    start = live.start_for(at)
    if start is None:
        raise http_error(404, "nothing_recorded_yet", "nothing to start from yet")
    position, keyframe_at = start

    limits = request.app[CATCH_UP_LIMITS]
    address = client_of(request)
    limits.admit(lesson_id, address)
    held = request.app[LESSONS].get(lesson_id)
    # whose stream it is, for the teacher's 移出: the name given, or the classroom whose
    # WebRTC session this page holds
    reader = name
    if reader is None and client is not None and held is not None and valid_client(client):
        reader = held.classroom_of(client)
    lesson = held if name is not None else None
    token = credential_of(request)
    assert token is not None

    def refusal() -> str | None:
        try:
            _authorize(request, lesson_id)
            _live_lesson(request, lesson_id)
        except web.HTTPException as exc:
            return f"{exc.status} {exc.text}"
        current = request.app[LESSONS].get(lesson_id)
        if reader is not None and current is not None and current.removed(reader):
            return "removed"
        return None

    try:
        if lesson is not None and name is not None:
            lesson.watching_over_http(name, client)
        try:
            return await _stream(request, live, position, keyframe_at, at, duration, refusal)
        finally:
            if lesson is not None and name is not None:
                lesson.stopped_watching_over_http(name, client)
    finally:
        limits.release(lesson_id, address)


async def _stream(
    request: web.Request,
    live: LiveRecording,
    position: int,
    keyframe_at: float,
    at: float,
    duration: float | None,
    refusal: Callable[[], str | None],
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": live.content_type,
            "Cache-Control": "no-store",
            "Accept-Ranges": "none",
            "X-Content-Type-Options": "nosniff",
            # where the stream's time 0 is, and where it starts: a player seeks to what it
            # asked for (at - origin), the keyframe before it being where decoding begins
            "X-Catch-Up-Origin": f"{live.origin:.3f}",
            "X-Catch-Up-Start": f"{keyframe_at:.3f}",
            "X-Catch-Up-Codecs": live.codecs,
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    until = None if duration is None else at + duration
    sent = 0
    chunks = live.chunks(position, until)
    watch: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(MAX_STREAM_S) as deadline:
            watch = asyncio.create_task(_watch(refusal, deadline))
            async for chunk in chunks:
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await response.write(chunk)
                sent += len(chunk)
                if sent >= MAX_STREAM_BYTES:
                    break
    except (TimeoutError, ConnectionResetError) as exc:
        logger.info("catch-up stream ended early: %s", type(exc).__name__)
    finally:
        if watch is not None:
            watch.cancel()
        await chunks.aclose()  # type: ignore[attr-defined]
    try:
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response


async def _watch(refusal: Callable[[], str | None], deadline: asyncio.Timeout) -> None:
    """End the stream (its deadline, now) once it may no longer go on: the lesson ended, the
    token was revoked or replaced, the teacher removed the classroom."""
    while True:
        await asyncio.sleep(RECHECK_S)
        why = refusal()
        if why is not None:
            logger.info("catch-up stream stopped: %s", why)
            deadline.reschedule(asyncio.get_running_loop().time())
            return


def add_routes(app: web.Application, per_address: int = CatchUpLimits.per_address) -> None:
    app[CATCH_UP_LIMITS] = CatchUpLimits(per_address=per_address)
    app.router.add_get("/api/lessons/{lesson_id}/catch-up", catch_up_info)
    app.router.add_get("/api/lessons/{lesson_id}/catch-up/{source}", catch_up_stream)
