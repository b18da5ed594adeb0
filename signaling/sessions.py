"""The WHIP/WHEP sessions of one live lesson: which peer a Location URL names, and who is in
the lesson."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from media.peer import Peer

from .contracts import CourseLink, Role


@dataclass
class Session:
    id: str
    lesson_id: str
    role: Role
    kind: str  # "whip" or "whep"
    name: str
    peer: Peer
    client: str | None = None  # the id a classroom page keeps, to be known again on return
    created_at: float = field(default_factory=time.time)
    # ICE and DTLS have connected: only then is a classroom counted in the lesson (a session
    # that never connects is closed after the connect timeout)
    connected: bool = False
    # the course link a classroom's token was handed out on, if any
    course_link: CourseLink | None = None


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

    def of_kind(self, kind: str | None = None) -> list[Session]:
        return [s for s in self._by_id.values() if kind is None or s.kind == kind]

    def classrooms(self) -> int:
        """The classrooms in the lesson: those whose WHEP session has connected."""
        return sum(1 for s in self.of_kind("whep") if s.role is Role.CLASSROOM and s.connected)

    def classroom(self, name: str) -> Session | None:
        """The connected WHEP session of the classroom called ``name``, if it is in the
        lesson."""
        return next(
            (
                s
                for s in self.of_kind("whep")
                if s.role is Role.CLASSROOM and s.name == name and s.connected
            ),
            None,
        )

    def named(self, name: str) -> list[Session]:
        """Every session of the classroom called ``name`` (watching, its feed), connected
        or not."""
        return [s for s in self._by_id.values() if s.role is Role.CLASSROOM and s.name == name]

    def is_classroom(self, name: str, client: str | None) -> bool:
        """Whether ``client`` is the classroom called ``name`` (the one watching as it)."""
        session = self.classroom(name)
        return session is not None and client is not None and session.client == client

    def sources(self) -> list[str]:
        """What the teacher publishes (camera, courseware) over connected sessions, sorted."""
        return sorted(
            {s.name for s in self.of_kind("whip") if s.role is Role.ORIGIN and s.connected}
        )

    def feeds(self) -> set[str]:
        """The classrooms that send their return feed (connected)."""
        return {s.name for s in self.of_kind("whip") if s.role is Role.CLASSROOM and s.connected}

    def __len__(self) -> int:
        return len(self._by_id)
