"""What the HTTP layer needs from the application: lessons and credentials.

The application (``syncclass``) implements these protocols; signaling only sees them, so the
arrows keep pointing down (syncclass → signaling → media).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from .source_url import SourceUrl


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
    owner: str = ""  # the account that created it and may manage it
    # bumped when the teacher replaces the classroom link: older classroom tokens stop working
    link_generation: int = 0
    keep_chat: bool = False  # chat is relayed, not stored, unless the lesson asks for it
    # bumped when the teacher replaces their own (origin) link: older origin tokens stop working
    origin_generation: int = 0
    # the camera the lesson's camera source is pulled from (RTSP), if any; masked in repr
    source: SourceUrl | None = None
    # a session of a course: the course, and when the timetable has it (Unix seconds, its
    # length in seconds); a one-off lesson has none of them
    course_id: str | None = None
    starts_at: float | None = None
    length_s: float | None = None

    @property
    def ends_at(self) -> float | None:
        """When the timetable has the lesson end (None for a one-off lesson)."""
        if self.starts_at is None or self.length_s is None:
            return None
        return self.starts_at + self.length_s


@dataclass(frozen=True)
class CourseLink:
    """One standing classroom link of a course: the shared one (``classroom`` empty) or one
    receiving classroom's (its name fixed by the link)."""

    course_id: str
    classroom: str = ""
    # bumped when the link is replaced or revoked: tokens of an older generation stop working
    generation: int = 0
    revoked: bool = False


@dataclass(frozen=True)
class Course:
    """A term of lessons: the same teacher and receiving classrooms, meeting by a timetable."""

    id: str
    title: str
    owner: str  # the teacher's account, who manages it and whose lessons may clash
    teacher: str  # the teacher's name as pages show it; may be empty
    classrooms: tuple[str, ...]  # the receiving classrooms it is for, by name
    max_classrooms: int
    record: bool
    # classrooms holding a course link may watch the course's replays
    classroom_replays: bool
    created_at: float
    links: tuple[CourseLink, ...] = ()

    def link(self, classroom: str) -> CourseLink | None:
        return next((link for link in self.links if link.classroom == classroom), None)


@dataclass(frozen=True)
class Clash:
    """A lesson already in the timetable at the same time as one asked for."""

    lesson_id: str
    course_id: str
    title: str
    starts_at: float
    ends_at: float
    reason: str  # "teacher" or "classroom:<name>"


class ClashError(Exception):
    """Lessons asked for overlap lessons already in the timetable (HTTP 409)."""

    def __init__(self, clashes: list[Clash]) -> None:
        super().__init__(f"{len(clashes)} clash(es)")
        self.clashes = clashes


@dataclass(frozen=True)
class Grant:
    """What a verified token allows: one role in one lesson."""

    lesson_id: str
    role: Role
    expires_at: float
    # the lesson's link generation when the token was issued: for an origin token, the origin
    # link's; for a classroom token, the classroom link's
    generation: int = 0
    # a classroom token handed out on a course link: that link (it must still stand)
    course_link: CourseLink | None = None


class TokenError(Exception):
    """A token that is missing, malformed, tampered with or expired (HTTP 401)."""


class LessonStore(Protocol):
    def create(
        self,
        title: str,
        max_classrooms: int,
        record: bool,
        teacher: str = "",
        owner: str = "",
        keep_chat: bool = False,
        *,
        lesson_id: str | None = None,
    ) -> Lesson: ...

    def get(self, lesson_id: str) -> Lesson | None: ...

    def list(self) -> list[Lesson]: ...

    def set_state(self, lesson_id: str, state: LessonState) -> Lesson: ...

    def set_source(self, lesson_id: str, source: SourceUrl | None) -> Lesson:
        """Pull the lesson's camera from ``source`` (None: stop); KeyError if no such lesson."""
        ...

    def rotate_link(self, lesson_id: str) -> Lesson:
        """Bump the lesson's link generation (KeyError if there is no such lesson)."""
        ...

    def rotate_origin_link(self, lesson_id: str) -> Lesson:
        """Bump the lesson's origin link generation (KeyError if there is no such lesson)."""
        ...


class Authority(Protocol):
    """Lesson tokens; who holds an account key is `Accounts`' business."""

    def issue(
        self,
        lesson_id: str,
        role: Role,
        generation: int = 0,
        *,
        not_after: float | None = None,
        lasting_until: float | None = None,
    ) -> str: ...

    def verify(self, token: str) -> Grant:
        """Return the grant of a well-signed, unexpired token; raise TokenError otherwise."""
        ...

    def issue_for_link(self, lesson_id: str, generation: int, link: CourseLink) -> str:
        """A classroom token for ``lesson_id`` handed out on a course ``link``: it works only
        while that link stands."""
        ...

    def course_link(self, link: CourseLink) -> str:
        """The standing token of a course link (it never expires; replacing or revoking the
        link bumps its generation, which retires it)."""
        ...

    def verify_course_link(self, token: str) -> CourseLink:
        """The link a well-signed course link token names (TokenError otherwise); whether it
        still stands is the course store's to say."""
        ...


class LessonJournal(Protocol):
    """What lasts of a lesson's classrooms: attendance, hands and stage, quality over time.

    Classrooms are names; nothing else about them is kept."""

    def joined(self, lesson_id: str, classroom: str, at: float) -> None: ...

    def left(self, lesson_id: str, classroom: str, at: float) -> None: ...

    def event(self, lesson_id: str, classroom: str, kind: str, at: float) -> None:
        """``kind``: hand_raised, hand_lowered, stage_on, stage_off."""
        ...

    def chat(self, lesson_id: str, sender: str, text: str, at: float) -> None:
        """A chat message of a lesson that keeps its chat."""
        ...

    def chat_messages(self, lesson_id: str) -> list[dict[str, Any]]: ...

    def quality(self, lesson_id: str, at: float, samples: dict[str, dict[str, Any]]) -> None:
        """One quality sample per classroom (by name), all taken at ``at``."""
        ...

    def attendance(self, lesson_id: str) -> list[dict[str, Any]]:
        """One row per visit: classroom, joined_at, left_at (None while present)."""
        ...

    def events(self, lesson_id: str) -> list[dict[str, Any]]: ...

    def quality_samples(self, lesson_id: str) -> list[dict[str, Any]]: ...


ADMIN = "admin"  # the account name of the admin key, in the audit log too


@dataclass(frozen=True)
class Account:
    """Who holds a key: a teacher account, or the admin (``admin`` true)."""

    name: str
    admin: bool = False
    built_in: bool = False  # the configured teacher key's account; cannot be removed
    created_at: float | None = None


class AccountExistsError(Exception):
    """A teacher account of that name already exists (HTTP 409)."""


class Accounts(Protocol):
    def authenticate(self, key: str) -> Account | None:
        """The account whose key this is, or None; a removed account's key is None at once."""
        ...

    def add(self, name: str) -> str:
        """Create a teacher account and return its key (kept only as a hash, so shown once);
        ValueError for an unusable name, AccountExistsError for a taken one."""
        ...

    def list(self) -> list[Account]:
        """The teacher accounts, the built-in one first."""
        ...

    def remove(self, name: str) -> bool:
        """Delete a teacher account; False if there is none. ValueError for the built-in one."""
        ...


class CourseStore(Protocol):
    """Courses, their standing links and their timetables, beside the lessons."""

    def create(
        self,
        title: str,
        owner: str,
        teacher: str,
        classrooms: tuple[str, ...],
        max_classrooms: int,
        record: bool,
        classroom_replays: bool,
        times: list[tuple[float, float]] | None = None,
        force: bool = False,
    ) -> Course:
        """The course with its links, and lessons at ``times`` if given: all of it or nothing
        (ClashError, ValueError as `schedule`)."""
        ...

    def get(self, course_id: str) -> Course | None: ...

    def update(self, course_id: str, **fields: Any) -> Course:
        """Change title, teacher, max_classrooms, record or classroom_replays (KeyError if
        there is no such course)."""
        ...

    def replace_link(self, course_id: str, classroom: str) -> Course:
        """A new token for the link (it stands again if revoked); KeyError for no such link."""
        ...

    def revoke_link(self, course_id: str, classroom: str) -> Course:
        """The link stops working at once; KeyError for no such link."""
        ...

    def stands(self, link: CourseLink) -> bool:
        """Whether ``link`` (as a token names it) is the current generation and not revoked."""
        ...

    def schedule(
        self, course: Course, times: list[tuple[float, float]], force: bool = False
    ) -> tuple[list[Lesson], list[Clash]]:
        """Lessons of ``course`` at ``times`` (start, length in seconds), all or none; the
        clashes found. ClashError unless ``force``; ValueError beyond the course's cap."""
        ...

    def lessons(self, course_id: str) -> list[Lesson]:
        """The course's lessons in timetable order (a lesson's number is its place + 1)."""
        ...

    def cancel(self, lesson_id: str) -> bool:
        """Take a lesson that has not begun out of the timetable; whether it was."""
        ...

    def timetable(self, since: float, until: float, owner: str | None = None) -> list[Lesson]:
        """The scheduled lessons starting in [since, until) (of ``owner``'s courses)."""
        ...

    def overdue(self, before: float) -> list[Lesson]:
        """Lessons not ended whose timetabled end is before ``before``."""
        ...

    def list(self, owner: str | None = None) -> list[Course]:
        """Every course (of ``owner`` if given), newest first."""
        ...


class AuditAction(enum.StrEnum):
    LESSON_CREATED = "lesson_created"
    LESSON_ENDED = "lesson_ended"
    LINK_ROTATED = "link_rotated"
    SOURCE_SET = "source_set"  # the camera a lesson pulls (masked), or none
    RECORDING_DELETED = "recording_deleted"
    RECORDING_PUBLIC = "recording_public"
    RECORDING_PRIVATE = "recording_private"
    RECORDING_STAGE_PUBLIC = "recording_stage_public"  # pupils on stage, seen by anyone
    RECORDING_STAGE_PRIVATE = "recording_stage_private"
    COURSE_CREATED = "course_created"
    COURSE_CHANGED = "course_changed"
    COURSE_LINK_REPLACED = "course_link_replaced"
    COURSE_LINK_REVOKED = "course_link_revoked"
    LESSONS_SCHEDULED = "lessons_scheduled"
    LESSON_CANCELLED = "lesson_cancelled"
    LESSON_ENDED_BY_TIMETABLE = "lesson_ended_by_timetable"
    TEACHER_ADDED = "teacher_added"
    TEACHER_REMOVED = "teacher_removed"


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str  # an account name, "admin", or the kind of lesson token used
    action: str
    lesson_id: str | None
    detail: str


class AuditLog(Protocol):
    def record(
        self, actor: str, action: str, lesson_id: str | None = None, detail: str = ""
    ) -> None: ...

    def entries(self, lesson_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        """The newest ``limit`` entries, oldest first (of one lesson if given)."""
        ...


@dataclass(frozen=True)
class ServerEntry:
    """One server of the lesson directory, as it last said of itself."""

    id: str
    url: str  # where classrooms and the other servers reach it (http(s)://host:port)
    region: str | None
    edge: bool  # takes classrooms of other servers' lessons
    load: int  # its live sessions


class DirectoryUnavailable(Exception):
    """The lesson directory cannot be read now (Redis down or unreachable)."""


class Directory(Protocol):
    """Where each lesson lives and how loaded each server is, shared by several servers."""

    @property
    def me(self) -> ServerEntry:
        """This server, as it registers itself (its load as of now)."""
        ...

    async def home_of(self, lesson_id: str) -> ServerEntry | None:
        """The server holding ``lesson_id`` as its origin, if it is registered and alive;
        DirectoryUnavailable if that cannot be read now."""
        ...

    async def servers(self) -> list[ServerEntry]:
        """Every server whose heartbeat has not expired (DirectoryUnavailable if unreadable)."""
        ...

    def changed(self) -> None:
        """Lessons were created or ended here: register them at once, not at the next beat."""
        ...
