"""`signaling.contracts.LessonJournal` in the lesson store's SQLite database: attendance,
hands and stage, quality samples. Rows older than the retention period are deleted."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

from .store import SqliteLessonStore

logger = logging.getLogger(__name__)

RETENTION_CHECK_S = 3600.0
_QUALITY_FIELDS = (
    "grade",
    "loss",
    "jitter_ms",
    "rtt_ms",
    "bitrate_kbps",
    "freezes",
    "link_state",
    "estimate_kbps",
    "path",
)
_TABLES = {
    "attendance": "joined_at",
    "classroom_events": "at",
    "quality_samples": "at",
    "chat_messages": "at",
}


class SqliteLessonJournal:
    def __init__(self, store: SqliteLessonStore) -> None:
        self._db, self._lock = store.database()

    def joined(self, lesson_id: str, classroom: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO attendance (lesson_id, classroom, joined_at) VALUES (?, ?, ?)",
                (lesson_id, classroom, at),
            )

    def left(self, lesson_id: str, classroom: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE attendance SET left_at = ? WHERE rowid = ("
                " SELECT rowid FROM attendance WHERE lesson_id = ? AND classroom = ?"
                " AND left_at IS NULL ORDER BY joined_at DESC LIMIT 1)",
                (at, lesson_id, classroom),
            )

    def event(self, lesson_id: str, classroom: str, kind: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO classroom_events (lesson_id, classroom, kind, at) VALUES (?, ?, ?, ?)",
                (lesson_id, classroom, kind, at),
            )

    def chat(self, lesson_id: str, sender: str, text: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO chat_messages (lesson_id, sender, text, at) VALUES (?, ?, ?, ?)",
                (lesson_id, sender, text, at),
            )

    def chat_messages(self, lesson_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT sender, text, at FROM chat_messages WHERE lesson_id = ? ORDER BY at, rowid",
                (lesson_id,),
            ).fetchall()
        return [{"from": sender, "text": text, "at": at} for sender, text, at in rows]

    def quality(self, lesson_id: str, at: float, samples: dict[str, dict[str, Any]]) -> None:
        rows = [
            (lesson_id, name, at, *(sample.get(f) for f in _QUALITY_FIELDS))
            for name, sample in samples.items()
        ]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO quality_samples (lesson_id, classroom, at, "
                    + ", ".join(_QUALITY_FIELDS)
                    + ") VALUES (?, ?, ?"
                    + ", ?" * len(_QUALITY_FIELDS)
                    + ")",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def attendance(self, lesson_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT classroom, joined_at, left_at FROM attendance WHERE lesson_id = ?"
                " ORDER BY joined_at, rowid",
                (lesson_id,),
            ).fetchall()
        return [{"classroom": c, "joined_at": j, "left_at": left} for c, j, left in rows]

    def events(self, lesson_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT classroom, kind, at FROM classroom_events WHERE lesson_id = ?"
                " ORDER BY at, rowid",
                (lesson_id,),
            ).fetchall()
        return [{"classroom": c, "kind": k, "at": at} for c, k, at in rows]

    def quality_samples(self, lesson_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT classroom, at, " + ", ".join(_QUALITY_FIELDS) + " FROM quality_samples"
                " WHERE lesson_id = ? ORDER BY at, rowid",
                (lesson_id,),
            ).fetchall()
        return [dict(zip(("classroom", "at", *_QUALITY_FIELDS), row, strict=True)) for row in rows]

    def close_open_visits(self) -> int:
        """At start-up: visits still open were cut by a stop or a crash; they end at the last
        moment the classroom was seen (its last quality sample), else when they began."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE attendance SET left_at = max(joined_at, coalesce(("
                " SELECT max(q.at) FROM quality_samples q WHERE q.lesson_id ="
                " attendance.lesson_id AND q.classroom = attendance.classroom"
                " AND q.at >= attendance.joined_at), joined_at))"
                " WHERE left_at IS NULL"
            )
        return cursor.rowcount

    def forget_before(self, cutoff: float) -> int:
        """Delete what is older than ``cutoff`` (the retention period); returns rows deleted."""
        deleted = 0
        with self._lock:
            for table, column in _TABLES.items():
                deleted += self._db.execute(
                    f"DELETE FROM {table} WHERE {column} < ?", (cutoff,)
                ).rowcount
        return deleted

    def apply_retention(self, days: float | None) -> None:
        if days is None:
            return
        deleted = self.forget_before(time.time() - days * 86400)
        if deleted:
            logger.info("attendance and quality older than %g days: %d rows deleted", days, deleted)

    async def keep_retention(self, days: float | None) -> None:
        """Apply the retention period now and then every ``RETENTION_CHECK_S`` (a server may
        run for months)."""
        if days is None:
            return
        while True:
            try:
                self.apply_retention(days)
            except sqlite3.Error:
                logger.exception("deleting old attendance and quality records failed")
            await asyncio.sleep(RETENTION_CHECK_S)
