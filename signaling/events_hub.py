"""The lesson events hub: who listens to each lesson, and what they are told when it changes.

Whoever changes a lesson (a session added or removed, a state change, a hand, the stage) calls
``publish``; the hub sends every listener of that lesson one fresh snapshot, however many
changes came at once. The teacher's snapshot holds the roster of classrooms; a classroom's
holds what concerns itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSCloseCode, web

from .classrooms import Room
from .contracts import LessonStore, Role
from .json_answers import dumps
from .sessions import Sessions

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Participant:
    """Who holds an event socket: the teacher (origin), or a classroom by its name (None for a
    classroom page that did not say its name: it may watch, not take part) and the client id
    its page keeps (what proves it is the classroom watching under that name)."""

    role: Role
    name: str | None = None
    client: str | None = None

    @property
    def is_teacher(self) -> bool:
        return self.role is Role.ORIGIN


TEACHER = Participant(Role.ORIGIN)


class LiveView(Protocol):
    """What the hub reads of a live lesson (``signaling.live_lesson.LiveLesson``)."""

    @property
    def sessions(self) -> Sessions: ...

    @property
    def room(self) -> Room: ...

    def sources(self) -> list[str]: ...

    def pulled(self) -> dict[str, Any] | None: ...


class EventsHub:
    """Owns the event sockets of every lesson; closing a lesson closes its sockets."""

    def __init__(
        self,
        store: LessonStore,
        live: Callable[[str], LiveView | None],
        max_on_stage: int = 1,
    ) -> None:
        self._store = store
        self._live = live
        self.max_on_stage = max_on_stage
        self._sockets: dict[str, dict[web.WebSocketResponse, Participant]] = {}
        self._dirty: set[str] = set()
        self._flush: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.closed = False

    def snapshot(self, lesson_id: str, participant: Participant = TEACHER) -> dict[str, Any] | None:
        """The lesson as ``participant`` sees it: state, classrooms connected, sources
        published, hands, stage; the teacher also gets the roster."""
        base = self._snapshot(lesson_id)
        return None if base is None else self._for(lesson_id, base, participant)

    def _snapshot(self, lesson_id: str) -> dict[str, Any] | None:
        lesson = self._store.get(lesson_id)
        if lesson is None:
            return None
        live = self._live(lesson_id)
        return {
            "type": "lesson",
            "title": lesson.title,
            "state": lesson.state.value,
            "classrooms": live.sessions.classrooms() if live else 0,
            "max_classrooms": lesson.max_classrooms,
            "sources": live.sources() if live else [],
            "camera_source": live.pulled() if live else None,
            "max_on_stage": self.max_on_stage,
            "on_stage": list(live.room.on_stage) if live else [],
            "hands": [
                {"classroom": c.name, "raised_at": c.hand_raised_at}
                for c in (live.room.hands() if live else [])
            ],
        }

    def _for(
        self, lesson_id: str, base: dict[str, Any], participant: Participant
    ) -> dict[str, Any]:
        live = self._live(lesson_id)
        if participant.is_teacher:
            if live is None:
                return {**base, "roster": []}
            room, feeds = live.room, live.sessions.feeds()
            roster = [
                {
                    "name": c.name,
                    "joined_at": c.joined_at,
                    "feed": c.name in feeds,
                    "hand_raised_at": c.hand_raised_at,
                    "on_stage": c.name in room.on_stage,
                    "reconnects": c.reconnects,
                    "quality": c.quality.as_json() if c.quality else None,
                }
                for c in sorted(room.present(), key=lambda c: c.joined_at)
            ]
            return {**base, "roster": roster}
        if participant.name is None:
            return base
        classroom = live.room.get(participant.name) if live else None
        you = {
            "name": participant.name,
            "hand_raised": classroom is not None and classroom.hand_raised_at is not None,
            "on_stage": live is not None and participant.name in live.room.on_stage,
        }
        return {**base, "you": you}

    def listeners(self, lesson_id: str) -> int:
        return len(self._sockets.get(lesson_id, ()))

    def add(
        self, lesson_id: str, socket: web.WebSocketResponse, participant: Participant = TEACHER
    ) -> bool:
        """Register a listener; False once the hub is closed (the socket should be closed)."""
        if self.closed:
            return False
        self._sockets.setdefault(lesson_id, {})[socket] = participant
        return True

    def discard(self, lesson_id: str, socket: web.WebSocketResponse) -> None:
        sockets = self._sockets.get(lesson_id)
        if sockets is not None:
            sockets.pop(socket, None)
            if not sockets:
                del self._sockets[lesson_id]

    def publish(self, lesson_id: str) -> None:
        """Something about the lesson changed: tell its listeners soon (coalesced)."""
        if self.closed or lesson_id not in self._sockets:
            return
        self._dirty.add(lesson_id)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._send_dirty())

    def send(
        self,
        lesson_id: str,
        message: dict[str, Any],
        to: Callable[[Participant], bool] | None = None,
    ) -> None:
        """Tell the lesson's listeners (those ``to`` accepts, else all) something beside its
        snapshot (its recording stopped, a chat message); dropped when nobody listens."""
        sockets = [
            socket
            for socket, participant in self._sockets.get(lesson_id, {}).items()
            if to is None or to(participant)
        ]
        if self.closed or not sockets:
            return
        task = asyncio.get_running_loop().create_task(self._send(sockets, message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_dirty(self) -> None:
        while self._dirty:
            lesson_id = self._dirty.pop()
            base = self._snapshot(lesson_id)
            if base is None:
                continue
            await asyncio.gather(
                *(
                    self._send_one(socket, dumps(self._for(lesson_id, base, participant)))
                    for socket, participant in list(self._sockets.get(lesson_id, {}).items())
                )
            )

    async def _send(self, sockets: list[web.WebSocketResponse], message: dict[str, Any]) -> None:
        text = dumps(message)
        await asyncio.gather(*(self._send_one(socket, text) for socket in sockets))

    @staticmethod
    async def _send_one(socket: web.WebSocketResponse, text: str) -> None:
        if socket.closed:
            return
        try:
            await asyncio.wait_for(socket.send_str(text), SEND_TIMEOUT_S)
        except (ConnectionError, RuntimeError, TimeoutError):
            # a listener that cannot take a message is gone; its handler cleans up
            await socket.close(code=WSCloseCode.GOING_AWAY)

    async def end(self, lesson_id: str) -> None:
        """The lesson has ended: tell its listeners, then close their sockets."""
        sockets = list(self._sockets.pop(lesson_id, {}))
        self._dirty.discard(lesson_id)
        snapshot = self._snapshot(lesson_id)
        if snapshot is not None:
            await self._send(sockets, snapshot)
        await self._send(sockets, {"type": "ended"})
        for socket in sockets:
            await socket.close(code=WSCloseCode.OK, message=b"lesson ended")

    async def close(self) -> None:
        """Server shutdown: close every socket of every lesson."""
        self.closed = True
        if self._flush is not None:
            self._flush.cancel()
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        sockets = [s for group in self._sockets.values() for s in group]
        self._sockets.clear()
        self._dirty.clear()
        if sockets:
            logger.info("closing %d lesson event socket(s)", len(sockets))
        for socket in sockets:
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
