"""Upgrading a database made before courses: every lesson, link, account, recording and record
of a lesson is still there after, and an upgrade that fails midway leaves the file as it was."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from signaling.contracts import LessonState
from syncclass import store as store_module
from syncclass.accounts import SqliteAccounts
from syncclass.audit import SqliteAuditLog
from syncclass.courses import SqliteCourses
from syncclass.journal import SqliteLessonJournal
from syncclass.store import SCHEMA_VERSION, SqliteLessonStore, SqliteRecordingCatalog

RECORDED = Path(__file__).parent / "data" / "schema-v10.sql"
_HEADER = RECORDED.read_text(encoding="utf-8")
WANG_KEY = re.search(r"Teacher wang's key: (\S+)", _HEADER).group(1)  # type: ignore[union-attr]
ENDED, SCHEDULED = re.search(r"lessons: (\S+) \(.*?\), (\S+) ", _HEADER).groups()  # type: ignore[union-attr]


def _old_database(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript(RECORDED.read_text(encoding="utf-8"))
    db.close()
    return path


def _contents(path: Path) -> tuple[int, list[str]]:
    db = sqlite3.connect(path)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        return version, list(db.iterdump())
    finally:
        db.close()


def test_a_database_from_before_courses_keeps_everything(tmp_path: Path) -> None:
    path = _old_database(tmp_path / "syncclass.db")
    assert _contents(path)[0] == 10 < SCHEMA_VERSION
    store = SqliteLessonStore(path)
    try:
        assert _contents(path)[0] == SCHEMA_VERSION
        ended, scheduled = store.get(ENDED), store.get(SCHEDULED)
        assert ended is not None and scheduled is not None
        assert (ended.title, ended.teacher, ended.owner) == ("三年级数学 · 分数", "王老师", "wang")
        assert ended.state is LessonState.ENDED and ended.keep_chat and ended.max_classrooms == 20
        assert ended.started_at is not None and ended.ended_at is not None
        assert scheduled.state is LessonState.SCHEDULED and scheduled.link_generation == 1
        assert scheduled.course_id is None and scheduled.starts_at is None  # one-off lessons
        assert [lesson.id for lesson in store.list()] == [SCHEDULED, ENDED]
        recording = SqliteRecordingCatalog(store).get(ENDED)
        assert recording is not None and recording.public and recording.size_bytes == 123456
        accounts = SqliteAccounts(store, "teacher-key-0123456789", "admin-key-0123456789")
        account = accounts.authenticate(WANG_KEY)
        assert account is not None and account.name == "wang"
        journal = SqliteLessonJournal(store)
        assert [visit["classroom"] for visit in journal.attendance(ENDED)] == ["石门小学"]
        assert [message["text"] for message in journal.chat_messages(ENDED)] == ["老师好"]
        assert [entry.lesson_id for entry in SqliteAuditLog(store).entries()] == [ENDED]
        # and the new tables work beside them
        courses = SqliteCourses(store)
        course = courses.create("数学", "wang", "", ("石门小学",), 30, True, False)
        lessons, _ = courses.schedule(course, [(2_000_000_000.0, 2400.0)])
        assert store.get(lessons[0].id) is not None and len(store.list()) == 3
    finally:
        store.close()
    # opened again: nothing more to do
    SqliteLessonStore(path).close()


def test_an_upgrade_that_fails_midway_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _old_database(tmp_path / "syncclass.db")
    before = _contents(path)
    # every real step runs, then one more that fails, as a crash or a full disk would
    broken = (*store_module._MIGRATIONS, ("SELECT no_such_column FROM lessons",))
    monkeypatch.setattr(store_module, "_MIGRATIONS", broken)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(broken))
    with pytest.raises(sqlite3.OperationalError):
        SqliteLessonStore(path)
    assert _contents(path) == before  # not one step of it kept
    monkeypatch.undo()
    store = SqliteLessonStore(path)  # the good upgrade then goes through
    try:
        assert store.get(ENDED) is not None and _contents(path)[0] == SCHEMA_VERSION
    finally:
        store.close()
