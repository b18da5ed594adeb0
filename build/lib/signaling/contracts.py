"""What the HTTP layer needs from the application: lessons and credentials.

The application (``syncclass``) implements these protocols; signaling only sees them, so the
arrows keep pointing down (syncclass → signaling → media).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class LessonState(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class Role(enum.StrEnum):
    ORIGIN = "origin"  # the teacher's side: may publish
    CLASSROOM = "classroom"  # a receiving classroom: may only receive
    REPLAY = "replay"  # a shared replay link: may only watch the lesson's recording


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    state: LessonState
    max_classrooms: int
    record: bool
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    teacher: str = ""  # who teaches it, as the library shows it; may be empty


@dataclass(frozen=True)
class Grant:
    """What a verified token allows: one role in one lesson."""

    lesson_id: str
    role: Role
    expires_at: float


class TokenError(Exception):
    """A token that is missing, malformed, tampered with or expired (HTTP 401)."""


class LessonStore(Protocol):
    def create(
        self, title: str, max_classrooms: int, record: bool, teacher: str = ""
    ) -> Lesson: ...

    def get(self, lesson_id: str) -> Lesson | None: ...

    def list(self) -> list[Lesson]: ...

    def set_state(self, lesson_id: str, state: LessonState) -> Lesson: ...


class Authority(Protocol):
    def is_teacher_key(self, key: str) -> bool: ...

    def issue(self, lesson_id: str, role: Role) -> str: ...

    def verify(self, token: str) -> Grant:
        """Return the grant of a well-signed, unexpired token; raise TokenError otherwise."""
        ...
