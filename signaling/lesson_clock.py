"""The timetable's clock: a timetabled lesson that nobody teaches (no source of the teacher is
published) ends by itself a while after its timetabled end, so that a classroom left on its
course link goes back to waiting for the next one. A lesson running late is left alone while
the teacher publishes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from .contracts import AuditAction, LessonState
from .keys import AUDIT, COURSES, LESSONS, STORE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimetableTimes:
    """How the timetable meets the clock."""

    zone: str  # the IANA time zone timetables are given in (the server's unless configured)
    join_early_s: float = 300.0  # a lesson is open to its classrooms this long before it starts
    end_grace_s: float = 900.0  # a lesson nobody teaches ends this long after its end

    @property
    def tick_s(self) -> float:
        return min(30.0, max(0.5, self.end_grace_s / 4))


TIMES = web.AppKey("timetable_times", TimetableTimes)


async def end_overdue(app: web.Application, now: float | None = None) -> list[str]:
    """End every timetabled lesson past its end and grace that nobody teaches; their ids."""
    now = time.time() if now is None else now
    lessons = app[LESSONS]
    ended = []
    for lesson in app[COURSES].overdue(now - app[TIMES].end_grace_s):
        live = lessons.get(lesson.id)
        if live is not None and live.sources():
            continue  # the teacher is still teaching: running late is theirs to decide
        app[STORE].set_state(lesson.id, LessonState.ENDED)
        await lessons.end(lesson.id)
        app[AUDIT].record("timetable", AuditAction.LESSON_ENDED_BY_TIMETABLE, lesson.id)
        logger.info("lesson %s ended by the timetable (nobody taught it)", lesson.id)
        ended.append(lesson.id)
    return ended


async def keep_time(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: the clock runs while the server does."""

    async def run() -> None:
        while True:
            await asyncio.sleep(app[TIMES].tick_s)
            try:
                await end_overdue(app)
            except Exception:  # the next tick tries again
                logger.exception("the timetable's clock failed")

    task = asyncio.get_running_loop().create_task(run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
