"""SqliteLessonStore: CRUD, state timestamps and persistence across reopening."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.contracts import Lesson, LessonState, LessonStore
from signaling.source_url import SourceUrl
from syncclass.secret_box import SecretBox
from syncclass.store import SCHEMA_VERSION, SqliteLessonStore


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "syncclass.db"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[SqliteLessonStore]:
    s = SqliteLessonStore(db_path, clock=clock)
    yield s
    s.close()


def test_satisfies_protocol(store: SqliteLessonStore) -> None:
    as_protocol: LessonStore = store
    assert as_protocol is store


def test_create_returns_scheduled_lesson(store: SqliteLessonStore, clock: FakeClock) -> None:
    lesson = store.create("Algebra", 12, True)
    assert lesson == Lesson(
        id=lesson.id,
        title="Algebra",
        state=LessonState.SCHEDULED,
        max_classrooms=12,
        record=True,
        created_at=clock.now,
    )
    assert lesson.id and all(c.isalnum() or c in "-_" for c in lesson.id)


def test_ids_are_unique(store: SqliteLessonStore) -> None:
    ids = {store.create(f"t{i}", 1, False).id for i in range(50)}
    assert len(ids) == 50


def test_get(store: SqliteLessonStore) -> None:
    lesson = store.create("Biology", 3, False)
    assert store.get(lesson.id) == lesson
    assert store.get("nope") is None


def test_list_newest_first(store: SqliteLessonStore, clock: FakeClock) -> None:
    assert store.list() == []
    first = store.create("first", 1, False)
    clock.now += 10
    second = store.create("second", 1, False)
    # Same timestamp: creation order still decides.
    third = store.create("third", 1, False)
    assert [lesson.id for lesson in store.list()] == [third.id, second.id, first.id]


def test_going_live_records_start_once(store: SqliteLessonStore, clock: FakeClock) -> None:
    lesson = store.create("Chemistry", 5, False)
    clock.now += 60
    live = store.set_state(lesson.id, LessonState.LIVE)
    assert live.state is LessonState.LIVE
    assert live.started_at == clock.now
    assert live.ended_at is None

    clock.now += 60
    again = store.set_state(lesson.id, LessonState.LIVE)
    assert again.started_at == live.started_at


def test_ending_records_end(store: SqliteLessonStore, clock: FakeClock) -> None:
    lesson = store.create("Drama", 5, False)
    started = clock.now = clock.now + 5
    store.set_state(lesson.id, LessonState.LIVE)
    ended_at = clock.now = clock.now + 3600
    ended = store.set_state(lesson.id, LessonState.ENDED)
    assert ended.state is LessonState.ENDED
    assert ended.started_at == started
    assert ended.ended_at == ended_at
    assert store.get(lesson.id) == ended

    # Repeating the end (e.g. a retried request) keeps the original time.
    clock.now += 100
    assert store.set_state(lesson.id, LessonState.ENDED).ended_at == ended_at


def test_ending_unstarted_lesson(store: SqliteLessonStore) -> None:
    lesson = store.create("Cancelled", 5, False)
    ended = store.set_state(lesson.id, LessonState.ENDED)
    assert ended.started_at is None
    assert ended.ended_at is not None


def test_resuming_clears_end(store: SqliteLessonStore, clock: FakeClock) -> None:
    lesson = store.create("Resumed", 5, False)
    started = store.set_state(lesson.id, LessonState.LIVE).started_at
    clock.now += 10
    store.set_state(lesson.id, LessonState.ENDED)
    clock.now += 10
    resumed = store.set_state(lesson.id, LessonState.LIVE)
    assert resumed.started_at == started
    assert resumed.ended_at is None


def test_set_state_unknown_id(store: SqliteLessonStore) -> None:
    with pytest.raises(KeyError):
        store.set_state("missing", LessonState.LIVE)


def test_survives_reopening(db_path: Path, clock: FakeClock) -> None:
    store = SqliteLessonStore(db_path, clock=clock)
    a = store.create("kept", 4, True)
    b = store.set_state(store.create("live", 2, False).id, LessonState.LIVE)
    store.close()

    reopened = SqliteLessonStore(db_path, clock=clock)
    try:
        assert reopened.get(a.id) == a
        assert reopened.get(b.id) == b
        assert {lesson.id for lesson in reopened.list()} == {a.id, b.id}
    finally:
        reopened.close()


def test_uses_wal_and_records_schema_version(store: SqliteLessonStore, db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert SCHEMA_VERSION >= 1
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()


def test_refuses_newer_schema(db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteLessonStore(db_path)


def test_titles_are_stored_verbatim(store: SqliteLessonStore) -> None:
    title = "Robert'); DROP TABLE lessons;-- ✓"
    lesson = store.create(title, 1, False)
    assert store.get(lesson.id) == lesson
    assert store.get(lesson.id).title == title  # type: ignore[union-attr]


def test_creates_missing_data_dir(tmp_path: Path) -> None:
    store = SqliteLessonStore(tmp_path / "fresh" / "syncclass.db")
    try:
        assert store.list() == []
    finally:
        store.close()


def test_a_source_password_is_kept_sealed(db_path: Path) -> None:
    url = "rtsp://cam:s3cr%40t-w0rd@10.1.2.3:554/Streaming/Channels/101"
    box = SecretBox(b"k" * 32)
    store = SqliteLessonStore(db_path, secrets_box=box)
    lesson = store.create("Maths", 30, True)
    kept = store.set_source(lesson.id, SourceUrl(url))
    assert kept.source is not None and kept.source.reveal() == url
    assert "s3cr" not in repr(kept)  # a lesson in a log line shows the password masked
    store.close()
    # on disk: the URL without its password, the password sealed
    with sqlite3.connect(db_path) as db:
        plain, sealed = db.execute("SELECT source_url, source_secret FROM lessons").fetchone()
    assert plain == "rtsp://cam@10.1.2.3:554/Streaming/Channels/101"
    assert b"s3cr" not in sealed
    reopened = SqliteLessonStore(db_path, secrets_box=SecretBox(b"k" * 32))
    again = reopened.get(lesson.id)
    assert again is not None and again.source is not None and again.source.reveal() == url
    assert reopened.set_source(lesson.id, None).source is None
    reopened.close()
    # another server's key opens nothing: the source is kept without a password
    other = SqliteLessonStore(db_path, secrets_box=SecretBox(b"o" * 32))
    other.set_source(lesson.id, SourceUrl(url))
    other.close()
    wrong = SqliteLessonStore(db_path, secrets_box=box)
    seen = wrong.get(lesson.id)
    assert seen is not None and seen.source is not None and seen.source.password is None
    wrong.close()
