"""Lessons and their recordings kept in a single SQLite file so they survive a restart."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder.catalog import Recording, RecordingState
from signaling.contracts import Lesson, LessonState
from signaling.source_url import SourceUrl, SourceUrlError

from .secret_box import SecretBox, SecretBoxError

logger = logging.getLogger(__name__)

DATABASE_FILE = "syncclass.db"  # in the data directory

# Each entry upgrades the schema from version N to N + 1; append, never edit, so existing
# databases can be brought forward with PRAGMA user_version as the bookmark.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE lessons (
            id             TEXT PRIMARY KEY,
            title          TEXT NOT NULL,
            state          TEXT NOT NULL,
            max_classrooms INTEGER NOT NULL,
            record         INTEGER NOT NULL,
            created_at     REAL NOT NULL,
            started_at     REAL,
            ended_at       REAL
        )
        """,
        "CREATE INDEX lessons_created_at ON lessons (created_at)",
    ),
    (
        "ALTER TABLE lessons ADD COLUMN teacher TEXT NOT NULL DEFAULT ''",
        """
        CREATE TABLE recordings (
            lesson_id  TEXT PRIMARY KEY REFERENCES lessons (id),
            state      TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at   REAL,
            duration_s REAL,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            public     INTEGER NOT NULL DEFAULT 0,
            details    TEXT NOT NULL DEFAULT '{}',
            error      TEXT
        )
        """,
    ),
    (
        """
        CREATE TABLE attendance (
            lesson_id TEXT NOT NULL,
            classroom TEXT NOT NULL,
            joined_at REAL NOT NULL,
            left_at   REAL
        )
        """,
        "CREATE INDEX attendance_lesson ON attendance (lesson_id, joined_at)",
        """
        CREATE TABLE classroom_events (
            lesson_id TEXT NOT NULL,
            classroom TEXT NOT NULL,
            kind      TEXT NOT NULL,
            at        REAL NOT NULL
        )
        """,
        "CREATE INDEX classroom_events_lesson ON classroom_events (lesson_id, at)",
        """
        CREATE TABLE quality_samples (
            lesson_id    TEXT NOT NULL,
            classroom    TEXT NOT NULL,
            at           REAL NOT NULL,
            grade        TEXT NOT NULL,
            loss         REAL NOT NULL,
            jitter_ms    REAL NOT NULL,
            rtt_ms       REAL,
            bitrate_kbps REAL NOT NULL,
            freezes      INTEGER NOT NULL
        )
        """,
        "CREATE INDEX quality_samples_lesson ON quality_samples (lesson_id, at)",
    ),
    (
        # lessons made before accounts existed were made with the one teacher key, whose
        # account is the built-in "teacher"
        "ALTER TABLE lessons ADD COLUMN owner TEXT NOT NULL DEFAULT 'teacher'",
        "ALTER TABLE lessons ADD COLUMN link_generation INTEGER NOT NULL DEFAULT 0",
        """
        CREATE TABLE accounts (
            name       TEXT PRIMARY KEY,
            key_hash   BLOB NOT NULL UNIQUE,
            created_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE audit (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            at        REAL NOT NULL,
            actor     TEXT NOT NULL,
            action    TEXT NOT NULL,
            lesson_id TEXT,
            detail    TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX audit_lesson ON audit (lesson_id, id)",
    ),
    (
        "ALTER TABLE lessons ADD COLUMN keep_chat INTEGER NOT NULL DEFAULT 0",
        """
        CREATE TABLE chat_messages (
            lesson_id TEXT NOT NULL,
            sender    TEXT NOT NULL,
            text      TEXT NOT NULL,
            at        REAL NOT NULL
        )
        """,
        "CREATE INDEX chat_messages_lesson ON chat_messages (lesson_id, at)",
    ),
    ("ALTER TABLE lessons ADD COLUMN origin_generation INTEGER NOT NULL DEFAULT 0",),
    ("ALTER TABLE recordings ADD COLUMN public_stage INTEGER NOT NULL DEFAULT 0",),
    (
        # what each classroom was sent (full, audio_only) and its link's estimate
        "ALTER TABLE quality_samples ADD COLUMN link_state TEXT",
        "ALTER TABLE quality_samples ADD COLUMN estimate_kbps REAL",
    ),
    # the path each classroom's media took: udp, tcp or relay (直连 UDP / 直连 TCP / 中继)
    ("ALTER TABLE quality_samples ADD COLUMN path TEXT",),
    (
        # a camera the lesson's camera source is pulled from: its URL without the password,
        # and the password sealed with the server's key (syncclass.secret_box)
        "ALTER TABLE lessons ADD COLUMN source_url TEXT",
        "ALTER TABLE lessons ADD COLUMN source_secret BLOB",
    ),
    (
        # courses: a term of lessons with standing classroom links; a lesson may be one of
        # their sessions, at a time the timetable gives (one-off lessons have none of it)
        "ALTER TABLE lessons ADD COLUMN course_id TEXT",
        "ALTER TABLE lessons ADD COLUMN starts_at REAL",
        "ALTER TABLE lessons ADD COLUMN length_s REAL",
        "CREATE INDEX lessons_course ON lessons (course_id, starts_at)",
        "CREATE INDEX lessons_starts_at ON lessons (starts_at)",
        # what the timetable's clock reads every few seconds: timetabled lessons not ended
        "CREATE INDEX lessons_open_timetabled ON lessons (starts_at) "
        "WHERE state != 'ended' AND starts_at IS NOT NULL",
        """
        CREATE TABLE courses (
            id                TEXT PRIMARY KEY,
            title             TEXT NOT NULL,
            owner             TEXT NOT NULL,
            teacher           TEXT NOT NULL DEFAULT '',
            max_classrooms    INTEGER NOT NULL,
            record            INTEGER NOT NULL,
            classroom_replays INTEGER NOT NULL DEFAULT 0,
            created_at        REAL NOT NULL
        )
        """,
        "CREATE INDEX courses_owner ON courses (owner, created_at)",
        # one row per standing link: classroom '' is the course's shared classroom link
        """
        CREATE TABLE course_links (
            course_id  TEXT NOT NULL REFERENCES courses (id),
            classroom  TEXT NOT NULL,
            generation INTEGER NOT NULL DEFAULT 0,
            revoked    INTEGER NOT NULL DEFAULT 0,
            position   INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (course_id, classroom)
        )
        """,
        "CREATE INDEX course_links_classroom ON course_links (classroom)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_INSERT_COLUMNS = (
    "id, title, state, max_classrooms, record, created_at, started_at, ended_at, teacher, "
    "owner, link_generation, keep_chat, origin_generation"
)
_COLUMNS = _INSERT_COLUMNS + ", course_id, starts_at, length_s, source_url, source_secret"
LESSON_COLUMNS = _COLUMNS  # what `SqliteLessonStore.row_to_lesson` reads
_ID_ATTEMPTS = 5


class DamagedDatabaseError(Exception):
    """The database file is not a database, or fails SQLite's integrity check."""


def _check_integrity(db: sqlite3.Connection, path: Path) -> None:
    """SQLite's quick check (a pass over every page, without the index cross-checks of the
    full one): a damaged file is refused at start, not found out by a failing lesson."""
    try:
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchmany(3)]
    except sqlite3.DatabaseError as exc:
        raise DamagedDatabaseError(f"{path} is damaged ({exc}): restore it from a backup") from None
    if problems != ["ok"]:
        raise DamagedDatabaseError(
            f"{path} is damaged ({'; '.join(problems)}): restore it from a backup"
        )


class _Connection(sqlite3.Connection):
    """A connection that, when a write finds the disk full, asks ``on_full`` to make room
    (the data directory's reserve) and tries the statement once more."""

    on_full: Callable[[], bool] | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        in_transaction = self.in_transaction
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc) or self.on_full is None or not self.on_full():
                raise
            if in_transaction:  # SQLite rolled the whole transaction back: the caller retries
                raise
            return super().execute(sql, parameters)


class SqliteLessonStore:
    """`LessonStore` on one SQLite connection in WAL mode."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        on_full: Callable[[], bool] | None = None,
        secrets_box: SecretBox | None = None,
    ) -> None:
        self._clock = clock
        self._box = secrets_box  # seals source passwords; without it none can be kept
        # The server may call in from executor threads; one connection guarded by a lock keeps
        # SQLite's single-writer rule trivially satisfied.
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, factory=_Connection
        )
        self._db.on_full = on_full
        try:
            _check_integrity(self._db, path)
            self._db.execute("PRAGMA journal_mode=WAL")
            # Writes are small and a few per second at most (lessons, accounts and audit, a
            # classroom joining or leaving, a hand, a batch of quality samples every 10 s), so
            # keep the default synchronous=FULL: what the teacher was told happened survives
            # even power loss, for a WAL fsync of a few milliseconds on the event loop.
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {version} is newer than this server "
                f"understands ({SCHEMA_VERSION}); refusing to touch it"
            )
        if version == SCHEMA_VERSION:
            return
        # every step in one transaction: an upgrade that fails anywhere (a full disk, a crash,
        # a bad statement) leaves the database as it was, at its old version, for this
        # server's predecessor or a retry
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target - 1]:
                    self._db.execute(statement)
                # PRAGMA does not accept bound parameters; target is our own integer.
                self._db.execute(f"PRAGMA user_version = {int(target)}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        if version:
            logger.info("database upgraded from schema %d to %d", version, SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
    ) -> Lesson:
        """A new lesson; ``lesson_id``: under this id (an edge relaying another server's
        lesson keeps its id), KeyError if it is taken."""
        now = self._clock()
        given = lesson_id
        with self._lock:
            for _ in range(1 if given is not None else _ID_ATTEMPTS):
                lesson_id = given if given is not None else secrets.token_urlsafe(8)
                try:
                    self._db.execute(
                        f"INSERT INTO lessons ({_INSERT_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, 0, ?, 0)",
                        (
                            lesson_id,
                            title,
                            LessonState.SCHEDULED.value,
                            max_classrooms,
                            int(record),
                            now,
                            teacher,
                            owner,
                            int(keep_chat),
                        ),
                    )
                except sqlite3.IntegrityError:
                    if given is not None:
                        raise KeyError(given) from None
                    continue  # 64 random bits collided; astronomically rare, just redraw
                return Lesson(
                    id=lesson_id,
                    title=title,
                    state=LessonState.SCHEDULED,
                    max_classrooms=max_classrooms,
                    record=bool(record),
                    created_at=now,
                    teacher=teacher,
                    owner=owner,
                    keep_chat=keep_chat,
                )
        raise RuntimeError("could not allocate a unique lesson id")

    def get(self, lesson_id: str) -> Lesson | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM lessons WHERE id = ?", (lesson_id,)
            ).fetchone()
        return None if row is None else self._to_lesson(row)

    def list(self) -> list[Lesson]:
        with self._lock:
            rows = self._db.execute(
                # rowid breaks ties between lessons created within the same clock tick.
                f"SELECT {_COLUMNS} FROM lessons ORDER BY created_at DESC, rowid DESC"
            ).fetchall()
        return [self._to_lesson(row) for row in rows]

    def set_source(self, lesson_id: str, source: SourceUrl | None) -> Lesson:
        """Pull the lesson's camera from ``source`` (None: from nobody); the password is kept
        sealed (ValueError without a secret box to seal it)."""
        sealed = None
        if source is not None and source.password is not None:
            if self._box is None:
                raise ValueError("this store keeps no passwords (no secret box)")
            sealed = self._box.seal(source.password, lesson_id)
        url = None if source is None else source.without_password
        with self._lock:
            cursor = self._db.execute(
                "UPDATE lessons SET source_url = ?, source_secret = ? WHERE id = ?",
                (url, sealed, lesson_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(lesson_id)
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM lessons WHERE id = ?", (lesson_id,)
            ).fetchone()
        return self._to_lesson(row)

    def set_state(self, lesson_id: str, state: LessonState) -> Lesson:
        state = LessonState(state)
        now = self._clock()
        if state is LessonState.LIVE:
            # started_at marks the first time the lesson went live; a resumed lesson is no
            # longer ended, so its old end time would be a lie.
            update = "state = ?, started_at = COALESCE(started_at, ?), ended_at = NULL"
            params: tuple[object, ...] = (state.value, now)
        elif state is LessonState.ENDED:
            # Ending twice keeps the original end time so retries are harmless.
            update = "state = ?, ended_at = COALESCE(ended_at, ?)"
            params = (state.value, now)
        else:
            update = "state = ?"
            params = (state.value,)
        with self._lock:
            # UPDATE ... RETURNING would need SQLite 3.35, newer than some distributions ship;
            # the lock makes the separate read consistent with the write.
            cursor = self._db.execute(
                f"UPDATE lessons SET {update} WHERE id = ?", (*params, lesson_id)
            )
            if cursor.rowcount == 0:
                raise KeyError(lesson_id)
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM lessons WHERE id = ?", (lesson_id,)
            ).fetchone()
        return self._to_lesson(row)

    def rotate_link(self, lesson_id: str) -> Lesson:
        return self._bump(lesson_id, "link_generation")

    def rotate_origin_link(self, lesson_id: str) -> Lesson:
        return self._bump(lesson_id, "origin_generation")

    def _bump(self, lesson_id: str, column: str) -> Lesson:
        assert column in ("link_generation", "origin_generation")
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE lessons SET {column} = {column} + 1 WHERE id = ?", (lesson_id,)
            )
            if cursor.rowcount == 0:
                raise KeyError(lesson_id)
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM lessons WHERE id = ?", (lesson_id,)
            ).fetchone()
        return self._to_lesson(row)

    def database(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """The connection and the lock that guards it, for the other tables in this file."""
        return self._db, self._lock

    def row_to_lesson(self, row: tuple[Any, ...]) -> Lesson:
        """A lesson from a row of ``LESSON_COLUMNS`` (for the other tables of this file)."""
        return self._to_lesson(row)

    def _to_lesson(self, row: tuple[Any, ...]) -> Lesson:
        lesson = _to_lesson(row[:-5])
        course_id, starts_at, length_s, url, sealed = row[-5:]
        if course_id is not None or starts_at is not None:
            lesson = dataclasses.replace(
                lesson, course_id=course_id, starts_at=starts_at, length_s=length_s
            )
        if url is None:
            return lesson
        password = None
        if sealed is not None:
            try:
                password = None if self._box is None else self._box.open(sealed, lesson.id)
            except SecretBoxError:
                logger.warning("lesson %s: its camera's password cannot be opened", lesson.id)
        try:
            source = SourceUrl.stored(url, password)
        except SourceUrlError:
            logger.warning("lesson %s: its kept source URL is not valid", lesson.id)
            return lesson
        return dataclasses.replace(lesson, source=source)


def _to_lesson(row: tuple[Any, ...]) -> Lesson:
    (
        lesson_id,
        title,
        state,
        max_classrooms,
        record,
        created_at,
        started_at,
        ended_at,
        teacher,
        owner,
        link_generation,
        keep_chat,
        origin_generation,
    ) = row
    return Lesson(
        id=lesson_id,
        title=title,
        state=LessonState(state),
        max_classrooms=max_classrooms,
        record=bool(record),
        created_at=created_at,
        started_at=started_at,
        ended_at=ended_at,
        teacher=teacher,
        owner=owner,
        link_generation=link_generation,
        keep_chat=bool(keep_chat),
        origin_generation=origin_generation,
    )


class SqliteRecordingCatalog:
    """`recorder.catalog.RecordingCatalog` in the lesson store's database."""

    _COLUMNS = (
        "lesson_id, state, started_at, ended_at, duration_s, size_bytes, public, details, error, "
        "public_stage"
    )

    def __init__(self, store: SqliteLessonStore) -> None:
        self._db = store._db
        self._lock = store._lock

    def get(self, lesson_id: str) -> Recording | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM recordings WHERE lesson_id = ?", (lesson_id,)
            ).fetchone()
        return None if row is None else _to_recording(row)

    def list(self) -> list[Recording]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM recordings ORDER BY started_at DESC"
            ).fetchall()
        return [_to_recording(row) for row in rows]

    def put(self, recording: Recording) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO recordings ({self._COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    recording.lesson_id,
                    recording.state.value,
                    recording.started_at,
                    recording.ended_at,
                    recording.duration_s,
                    recording.size_bytes,
                    int(recording.public),
                    json.dumps(recording.details),
                    recording.error,
                    int(recording.public_stage),
                ),
            )

    def delete(self, lesson_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM recordings WHERE lesson_id = ?", (lesson_id,))


def _to_recording(row: tuple[Any, ...]) -> Recording:
    (
        lesson_id,
        state,
        started_at,
        ended_at,
        duration_s,
        size_bytes,
        public,
        details,
        error,
        public_stage,
    ) = row
    return Recording(
        lesson_id=lesson_id,
        state=RecordingState(state),
        started_at=started_at,
        ended_at=ended_at,
        duration_s=duration_s,
        size_bytes=size_bytes,
        public=bool(public),
        public_stage=bool(public_stage),
        details=json.loads(details),
        error=error,
    )
