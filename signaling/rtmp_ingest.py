"""Who may push a lesson's camera over RTMP: the stream key is the lesson's teacher (origin)
token, checked as WHIP checks it, before any media is read."""

from __future__ import annotations

import logging

from media.rtmp_server import PushRefused, PushTarget

from .contracts import Authority, LessonState, LessonStore, Role, TokenError
from .live_lessons import LiveLessons

logger = logging.getLogger(__name__)

RTMP_APP = "live"  # rtmp://HOST:PORT/live, the stream key apart


class RtmpIngest:
    def __init__(self, store: LessonStore, authority: Authority, lessons: LiveLessons) -> None:
        self._store = store
        self._authority = authority
        self._lessons = lessons

    async def authorize(self, app: str, key: str, address: str) -> PushTarget:
        """The source an encoder at ``address`` pushes to with ``key``; PushRefused (with the
        reason in words that hold no key) otherwise."""
        if app.strip("/") != RTMP_APP:
            raise PushRefused(f"publish to rtmp://…/{RTMP_APP}, not to {app[:40]!r}")
        try:
            grant = self._authority.verify(key)
        except TokenError:
            raise PushRefused(
                "the stream key is not a lesson's teacher token (wrong, tampered or expired)"
            ) from None
        if grant.role is not Role.ORIGIN:
            raise PushRefused("only the lesson's teacher token may publish, not a classroom's")
        lesson = self._store.get(grant.lesson_id)
        if lesson is None:
            raise PushRefused("there is no such lesson")
        if lesson.state is LessonState.ENDED:
            raise PushRefused(f"lesson {lesson.id} has ended")
        if grant.generation != lesson.origin_generation:
            raise PushRefused("the teacher link was replaced: use the new stream key")
        if lesson.source is not None:
            raise PushRefused(f"lesson {lesson.id}'s camera is pulled from its source_url")
        live = self._lessons.open(lesson.id)
        if "camera" in live.sessions.sources():
            raise PushRefused(f"lesson {lesson.id}'s camera is published over WHIP")
        logger.info("lesson %s: the camera is pushed over RTMP from %s", lesson.id, address)
        return await live.push()
