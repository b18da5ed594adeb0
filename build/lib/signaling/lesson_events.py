"""The lesson events hub: who listens to each lesson, and what they are told when it changes.

Whoever changes a lesson (a session added or removed, a state change) calls ``publish``; the
hub sends every listener of that lesson one fresh snapshot, however many changes came at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, web

from .contracts import LessonStore
from .sessions import Sessions

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0


class LessonEvents:
    """Owns the event sockets of every lesson; closing a lesson closes its sockets."""

    def __init__(self, store: LessonStore, sessions: Sessions) -> None:
        self._store = store
        self._sessions = sessions
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._dirty: set[str] = set()
        self._flush: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.closed = False

    def snapshot(self, lesson_id: str) -> dict[str, Any] | None:
        """The lesson as a listener sees it: state, classrooms connected, sources published."""
        lesson = self._store.get(lesson_id)
        if lesson is None:
            return None
        sources = {s.name for s in self._sessions.of_lesson(lesson_id, "whip")}
        return {
            "type": "lesson",
            "title": lesson.title,
            "state": lesson.state.value,
            "classrooms": self._sessions.classrooms(lesson_id),
            "max_classrooms": lesson.max_classrooms,
            "sources": sorted(sources),
        }

    def listeners(self, lesson_id: str) -> int:
        return len(self._sockets.get(lesson_id, ()))

    def add(self, lesson_id: str, socket: web.WebSocketResponse) -> bool:
        """Register a listener; False once the hub is closed (the socket should be closed)."""
        if self.closed:
            return False
        self._sockets.setdefault(lesson_id, set()).add(socket)
        return True

    def discard(self, lesson_id: str, socket: web.WebSocketResponse) -> None:
        sockets = self._sockets.get(lesson_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[lesson_id]

    def publish(self, lesson_id: str) -> None:
        """Something about the lesson changed: tell its listeners soon (coalesced)."""
        if self.closed or lesson_id not in self._sockets:
            return
        self._dirty.add(lesson_id)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._send_dirty())

    def send(self, lesson_id: str, message: dict[str, Any]) -> None:
        """Tell the lesson's listeners something beside its snapshot (its recording stopped,
        say); dropped when nobody listens."""
        sockets = list(self._sockets.get(lesson_id, ()))
        if self.closed or not sockets:
            return
        task = asyncio.get_running_loop().create_task(self._send(sockets, message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_dirty(self) -> None:
        while self._dirty:
            lesson_id = self._dirty.pop()
            snapshot = self.snapshot(lesson_id)
            if snapshot is not None:
                await self._send(list(self._sockets.get(lesson_id, ())), snapshot)

    async def _send(self, sockets: list[web.WebSocketResponse], message: dict[str, Any]) -> None:
        text = json.dumps(message)
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
        sockets = list(self._sockets.pop(lesson_id, ()))
        self._dirty.discard(lesson_id)
        snapshot = self.snapshot(lesson_id)
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
