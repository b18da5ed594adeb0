"""The live WHIP/WHEP sessions: which peer a Location URL names, and who is in a lesson."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from media.peer import Peer

from .contracts import Role


@dataclass
class Session:
    id: str
    lesson_id: str
    role: Role
    kind: str  # "whip" or "whep"
    name: str
    peer: Peer
    created_at: float = field(default_factory=time.time)


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    def add(self, session: Session) -> None:
        self._by_id[session.id] = session

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def remove(self, session_id: str) -> Session | None:
        return self._by_id.pop(session_id, None)

    def of_lesson(self, lesson_id: str, kind: str | None = None) -> list[Session]:
        return [
            s
            for s in self._by_id.values()
            if s.lesson_id == lesson_id and (kind is None or s.kind == kind)
        ]

    def classrooms(self, lesson_id: str) -> int:
        return sum(1 for s in self.of_lesson(lesson_id, "whep") if s.role is Role.CLASSROOM)

    def __len__(self) -> int:
        return len(self._by_id)
