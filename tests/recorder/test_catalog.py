"""The recordings table: what the recorder keeps survives a restart, and a database from
before recordings existed is brought forward with its lessons intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from recorder.catalog import Recording, RecordingCatalog, RecordingState
from syncclass.store import SCHEMA_VERSION, SqliteLessonStore, SqliteRecordingCatalog


def test_recordings_are_kept_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "syncclass.db"
    store = SqliteLessonStore(path)
    lesson = store.create("Algebra", 30, True, "王老师")
    catalog: RecordingCatalog = SqliteRecordingCatalog(store)
    recording = Recording(
        lesson.id,
        RecordingState.READY,
        started_at=10.0,
        ended_at=50.0,
        duration_s=40.0,
        size_bytes=1234,
        public=True,
        details={"main": "camera.webm", "files": [{"name": "camera.webm"}]},
    )
    catalog.put(recording)
    catalog.put(Recording("other", RecordingState.RECORDING, started_at=20.0))
    store.close()

    store = SqliteLessonStore(path)
    catalog = SqliteRecordingCatalog(store)
    assert catalog.get(lesson.id) == recording
    assert [r.lesson_id for r in catalog.list()] == ["other", lesson.id]  # newest first
    assert store.get(lesson.id).teacher == "王老师"  # type: ignore[union-attr]
    catalog.delete("other")
    assert catalog.get("other") is None
    store.close()


def test_a_database_from_before_recordings_is_brought_forward(tmp_path: Path) -> None:
    path = tmp_path / "syncclass.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE lessons (id TEXT PRIMARY KEY, title TEXT NOT NULL, state TEXT NOT NULL,"
        " max_classrooms INTEGER NOT NULL, record INTEGER NOT NULL, created_at REAL NOT NULL,"
        " started_at REAL, ended_at REAL)"
    )
    db.execute("CREATE INDEX lessons_created_at ON lessons (created_at)")
    db.execute("INSERT INTO lessons VALUES ('old', 'Old lesson', 'ended', 30, 1, 1.0, 2.0, 3.0)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    store = SqliteLessonStore(path)
    old = store.get("old")
    assert old is not None and old.title == "Old lesson" and old.teacher == ""
    assert SqliteRecordingCatalog(store).list() == []
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
