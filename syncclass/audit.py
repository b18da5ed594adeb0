"""The audit log: who created, ended, re-linked or deleted what, and when, kept in SQLite."""

from __future__ import annotations

import time
from collections.abc import Callable

from signaling.contracts import AuditEntry

from .store import SqliteLessonStore

MAX_DETAIL = 500


class SqliteAuditLog:
    """`signaling.contracts.AuditLog` in the lesson store's database; append-only."""

    def __init__(self, store: SqliteLessonStore, *, clock: Callable[[], float] = time.time) -> None:
        self._db, self._lock = store.database()
        self._clock = clock

    def record(
        self, actor: str, action: str, lesson_id: str | None = None, detail: str = ""
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO audit (at, actor, action, lesson_id, detail) VALUES (?, ?, ?, ?, ?)",
                (self._clock(), actor, action, lesson_id, detail[:MAX_DETAIL]),
            )

    def entries(self, lesson_id: str | None = None, limit: int = 1000) -> list[AuditEntry]:
        where, params = ("WHERE lesson_id = ?", (lesson_id,)) if lesson_id is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                "SELECT at, actor, action, lesson_id, detail FROM audit "
                f"{where} ORDER BY id DESC LIMIT ?",
                (*params, max(0, int(limit))),
            ).fetchall()
        return [AuditEntry(*row) for row in reversed(rows)]
