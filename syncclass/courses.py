"""Courses, their standing links and their timetables, in the lesson store's database: a
course's lessons are rows of the lessons table with the course and a time."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from signaling.contracts import Clash, ClashError, Course, CourseLink, Lesson, LessonState

from .store import LESSON_COLUMNS, SqliteLessonStore

MAX_LESSONS_PER_COURSE = 1000  # a timetable of five years of daily lessons; bounds every list
_ID_ATTEMPTS = 5
_COURSE_COLUMNS = "id, title, owner, teacher, max_classrooms, record, classroom_replays, created_at"
_CHANGEABLE = {"title", "teacher", "max_classrooms", "record", "classroom_replays"}


class SqliteCourses:
    """`signaling.contracts.CourseStore` beside the lessons."""

    def __init__(self, store: SqliteLessonStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._db, self._lock = store.database()
        self._clock = clock

    # courses

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
        """The course with its links, and with lessons at ``times`` if given: all of it or
        nothing (ClashError, ValueError as `schedule`)."""
        now = self._clock()
        with self._lock:
            for _ in range(_ID_ATTEMPTS):
                course_id = secrets.token_urlsafe(6)
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        f"INSERT INTO courses ({_COURSE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            course_id,
                            title,
                            owner,
                            teacher,
                            max_classrooms,
                            int(record),
                            int(classroom_replays),
                            now,
                        ),
                    )
                    for position, classroom in enumerate(("", *classrooms)):
                        self._db.execute(
                            "INSERT INTO course_links (course_id, classroom, position) "
                            "VALUES (?, ?, ?)",
                            (course_id, classroom, position),
                        )
                    if times:
                        course = self._get(course_id)
                        assert course is not None
                        self._add_lessons(course, times, force, now)
                except sqlite3.IntegrityError:
                    self._db.execute("ROLLBACK")
                    continue  # 48 random bits collided: draw again
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                course = self._get(course_id)
                assert course is not None
                return course
        raise RuntimeError("could not allocate a unique course id")

    def get(self, course_id: str) -> Course | None:
        with self._lock:
            return self._get(course_id)

    def _get(self, course_id: str) -> Course | None:
        row = self._db.execute(
            f"SELECT {_COURSE_COLUMNS} FROM courses WHERE id = ?", (course_id,)
        ).fetchone()
        return None if row is None else self._course(row)

    def _course(self, row: tuple[Any, ...]) -> Course:
        links = tuple(
            CourseLink(row[0], classroom, generation, bool(revoked))
            for classroom, generation, revoked in self._db.execute(
                "SELECT classroom, generation, revoked FROM course_links WHERE course_id = ? "
                "ORDER BY position",
                (row[0],),
            )
        )
        course_id, title, owner, teacher, max_classrooms, record, replays, created_at = row
        return Course(
            id=course_id,
            title=title,
            owner=owner,
            teacher=teacher,
            classrooms=tuple(link.classroom for link in links if link.classroom),
            max_classrooms=max_classrooms,
            record=bool(record),
            classroom_replays=bool(replays),
            created_at=created_at,
            links=links,
        )

    def update(self, course_id: str, **fields: Any) -> Course:
        unknown = set(fields) - _CHANGEABLE
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
        with self._lock:
            if fields:
                assignments = ", ".join(f"{name} = ?" for name in fields)
                values = [int(v) if isinstance(v, bool) else v for v in fields.values()]
                self._db.execute(
                    f"UPDATE courses SET {assignments} WHERE id = ?", (*values, course_id)
                )
            course = self._get(course_id)
        if course is None:
            raise KeyError(course_id)
        return course

    # links

    def replace_link(self, course_id: str, classroom: str) -> Course:
        return self._link_change(course_id, classroom, "generation = generation + 1, revoked = 0")

    def revoke_link(self, course_id: str, classroom: str) -> Course:
        return self._link_change(course_id, classroom, "generation = generation + 1, revoked = 1")

    def _link_change(self, course_id: str, classroom: str, change: str) -> Course:
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE course_links SET {change} WHERE course_id = ? AND classroom = ?",
                (course_id, classroom),
            )
            if cursor.rowcount == 0:
                raise KeyError(classroom)
            course = self._get(course_id)
        assert course is not None
        return course

    def stands(self, link: CourseLink) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT generation, revoked FROM course_links "
                "WHERE course_id = ? AND classroom = ?",
                (link.course_id, link.classroom),
            ).fetchone()
        return row is not None and row[0] == link.generation and not row[1]

    # the timetable

    def schedule(
        self, course: Course, times: list[tuple[float, float]], force: bool = False
    ) -> tuple[list[Lesson], list[Clash]]:
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                made, clashes = self._add_lessons(course, times, force, now)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            lessons = [self._lesson(lesson_id) for lesson_id in made]
        return lessons, clashes

    def _add_lessons(
        self, course: Course, times: list[tuple[float, float]], force: bool, now: float
    ) -> tuple[list[str], list[Clash]]:
        """Inside a transaction: the new lessons' ids, and the clashes found."""
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM lessons WHERE course_id = ?", (course.id,)
        ).fetchone()
        if count + len(times) > MAX_LESSONS_PER_COURSE:
            raise ValueError(
                f"a course has at most {MAX_LESSONS_PER_COURSE} lessons ({count} already)"
            )
        clashes = [
            clash
            for start, length in times
            for clash in self._clashes(course, start, start + length)
        ]
        if clashes and not force:
            raise ClashError(clashes)
        made = [self._insert(course, start, length, now) for start, length in sorted(times)]
        return made, clashes

    def _insert(self, course: Course, start: float, length: float, now: float) -> str:
        for _ in range(_ID_ATTEMPTS):
            lesson_id = secrets.token_urlsafe(8)
            try:
                self._db.execute(
                    "INSERT INTO lessons (id, title, state, max_classrooms, record, created_at, "
                    "teacher, owner, course_id, starts_at, length_s) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        lesson_id,
                        course.title,
                        LessonState.SCHEDULED.value,
                        course.max_classrooms,
                        int(course.record),
                        now,
                        course.teacher,
                        course.owner,
                        course.id,
                        start,
                        length,
                    ),
                )
            except sqlite3.IntegrityError:
                continue
            return lesson_id
        raise RuntimeError("could not allocate a unique lesson id")

    def _clashes(self, course: Course, start: float, end: float) -> list[Clash]:
        """Lessons not ended at the same time as [start, end): the same teacher's, or another
        course's for one of the same receiving classrooms."""
        rows = self._db.execute(
            "SELECT l.id, l.course_id, l.title, l.starts_at, l.starts_at + l.length_s, l.owner, "
            "  (SELECT MIN(classroom) FROM course_links k WHERE k.course_id = l.course_id "
            "   AND k.classroom != '' AND k.classroom IN "
            "   (SELECT classroom FROM course_links WHERE course_id = ? AND classroom != '')) "
            "FROM lessons l "
            "WHERE l.starts_at IS NOT NULL AND l.state != ? "
            "AND l.starts_at < ? AND l.starts_at + l.length_s > ? "
            "LIMIT 50",
            (course.id, LessonState.ENDED.value, end, start),
        ).fetchall()
        clashes = []
        for lesson_id, course_id, title, starts_at, ends_at, owner, shared in rows:
            if owner == course.owner:
                reason = "teacher"
            elif shared is not None:
                reason = f"classroom:{shared}"
            else:
                continue
            clashes.append(Clash(lesson_id, course_id, title, starts_at, ends_at, reason))
        return clashes

    def _lesson(self, lesson_id: str) -> Lesson:
        row = self._db.execute(
            f"SELECT {LESSON_COLUMNS} FROM lessons WHERE id = ?", (lesson_id,)
        ).fetchone()
        return self._store.row_to_lesson(row)

    def _lessons(self, where: str, params: tuple[Any, ...], limit: int) -> list[Lesson]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {LESSON_COLUMNS} FROM lessons WHERE {where} "
                "ORDER BY starts_at, rowid LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [self._store.row_to_lesson(row) for row in rows]

    def lessons(self, course_id: str) -> list[Lesson]:
        return self._lessons("course_id = ?", (course_id,), MAX_LESSONS_PER_COURSE)

    def cancel(self, lesson_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM lessons WHERE id = ? AND course_id IS NOT NULL AND state = ? "
                "AND started_at IS NULL",
                (lesson_id, LessonState.SCHEDULED.value),
            )
        return cursor.rowcount > 0

    def timetable(self, since: float, until: float, owner: str | None = None) -> list[Lesson]:
        where = "starts_at IS NOT NULL AND starts_at < ? AND starts_at + length_s > ?"
        params: tuple[Any, ...] = (until, since)
        if owner is not None:
            where += " AND owner = ?"
            params += (owner,)
        return self._lessons(where, params, MAX_LESSONS_PER_COURSE)

    def overdue(self, before: float) -> list[Lesson]:
        # written as the partial index lessons_open_timetabled is, so that it is used
        return self._lessons(
            "state != 'ended' AND starts_at IS NOT NULL AND starts_at < ? "
            "AND starts_at + length_s < ?",
            (before, before),
            100,
        )

    def list(self, owner: str | None = None) -> list[Course]:
        where, params = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COURSE_COLUMNS} FROM courses {where} "
                "ORDER BY created_at DESC, rowid DESC",
                params,
            ).fetchall()
            return [self._course(row) for row in rows]
