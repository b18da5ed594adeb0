"""The live lessons of this server: each one's ``LiveLesson``, made when somebody first comes
to it, and the things they share (the SFU, the event sockets' hub, the recording hooks)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from media.network import Network, NetworkConfig
from media.router import Router
from media.sfu import Sfu
from media.traffic import TrafficTotals

from .contracts import Lesson, LessonJournal, LessonState, LessonStore
from .errors import http_error
from .events_hub import EventsHub, Participant
from .live_lesson import LiveLesson
from .recording_port import NO_RECORDING, RecordingHooks

logger = logging.getLogger(__name__)


class LiveLessons:
    """Owns every live lesson; ``close`` (server shutdown) closes them all."""

    def __init__(
        self,
        store: LessonStore,
        journal: LessonJournal,
        network: NetworkConfig,
        max_on_stage: int = 1,
        connect_timeout_s: float = 15.0,
    ) -> None:
        self._store = store
        self._journal = journal
        self._sfu = Sfu(network)
        self._lessons: dict[str, LiveLesson] = {}
        self.connect_timeout_s = connect_timeout_s
        self.events = EventsHub(store, self.get, max_on_stage)
        # what a lesson's recording is told; the application wires the recorder in
        self.recording: RecordingHooks = NO_RECORDING

    def get(self, lesson_id: str) -> LiveLesson | None:
        """The lesson if somebody came to it since it went live (or since the server started)."""
        return self._lessons.get(lesson_id)

    def open(self, lesson_id: str) -> LiveLesson:
        """The lesson, made now if nobody came to it yet; 410 once it has ended."""
        live = self._lessons.get(lesson_id)
        if live is not None:
            return live
        lesson = self._store.get(lesson_id)
        if lesson is None or lesson.state is LessonState.ENDED:
            raise http_error(410, "lesson_ended", "this lesson has ended")
        return self._make(lesson_id)

    def _make(self, lesson_id: str) -> LiveLesson:
        live = self._lessons[lesson_id] = LiveLesson(
            lesson_id,
            self._sfu,
            self._store,
            self._journal,
            self.events,
            self.recording,
            self._forget,
            self.connect_timeout_s,
        )
        return live

    def _forget(self, live: LiveLesson) -> None:
        if self._lessons.get(live.id) is live:
            del self._lessons[live.id]

    def all(self) -> list[LiveLesson]:
        return list(self._lessons.values())

    @property
    def max_on_stage(self) -> int:
        return self.events.max_on_stage

    def tell(
        self,
        lesson_id: str,
        message: dict[str, Any],
        to: Callable[[Participant], bool] | None = None,
    ) -> None:
        """Tell the lesson's event sockets (those ``to`` accepts, else all) something beside
        its snapshot: a chat message, a hand, the classrooms' quality, the recording's state."""
        self.events.send(lesson_id, message, to)

    async def end(self, lesson_id: str) -> None:
        """The lesson has ended (the store says so): close it, even one nobody came to (its
        recording and event sockets are still told)."""
        live = self._lessons.get(lesson_id) or self._make(lesson_id)
        await live.close()

    async def pull(self, lesson: Lesson) -> None:
        """Pull the lesson's camera from its ``source`` (as the store has it now), or stop."""
        if lesson.state is LessonState.ENDED:
            return
        live = self._lessons.get(lesson.id)
        if live is None and lesson.source is None:
            return
        await (live or self._make(lesson.id)).pull(lesson.source)

    async def resume_pulls(self) -> None:
        """At start: every lesson not ended with a source is pulled again."""
        for lesson in self._store.list():
            if lesson.source is not None and lesson.state is not LessonState.ENDED:
                await self.pull(lesson)

    def recording_info(self, lesson_id: str) -> dict[str, Any] | None:
        """The lesson's recording as the API shows it, or None if it has none."""
        return self.recording.recording_info(lesson_id)

    # what the operator's views read

    @property
    def network(self) -> Network:
        return self._sfu.network

    def routers(self) -> list[Router]:
        return list(self._sfu.routers.values())

    def sessions(self) -> int:
        return sum(len(live.sessions) for live in self._lessons.values())

    def traffic(self) -> TrafficTotals:
        """Everything the server has received and sent since it started."""
        return self._sfu.traffic()

    async def close(self) -> None:
        """Server shutdown: close every event socket, then every lesson's media (the lessons
        stay live in the store), then the media ports."""
        await self.events.close()
        lessons = self.all()
        if lessons:
            logger.info("closing %d lesson(s)", len(lessons))
        for live in lessons:
            await live.close()
        await self._sfu.close()
