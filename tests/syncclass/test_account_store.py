"""Accounts, link generations and the audit log in SQLite, and link generations in tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from signaling.contracts import AccountExistsError, Accounts, AuditLog, Role, TokenError
from syncclass.accounts import SqliteAccounts
from syncclass.audit import SqliteAuditLog
from syncclass.store import _MIGRATIONS, SqliteLessonStore
from syncclass.tokens import TokenAuthority

TEACHER_KEY = "the-built-in-teacher-key"
ADMIN_KEY = "the-admin-key-of-this-server"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteLessonStore]:
    s = SqliteLessonStore(tmp_path / "syncclass.db")
    yield s
    s.close()


@pytest.fixture
def accounts(store: SqliteLessonStore) -> SqliteAccounts:
    return SqliteAccounts(store, TEACHER_KEY, ADMIN_KEY)


def test_protocols(accounts: SqliteAccounts, store: SqliteLessonStore) -> None:
    as_accounts: Accounts = accounts
    as_audit: AuditLog = SqliteAuditLog(store)
    assert as_accounts is accounts and as_audit is not None


def test_keys_name_their_accounts(accounts: SqliteAccounts) -> None:
    admin = accounts.authenticate(ADMIN_KEY)
    assert admin is not None and admin.admin and admin.name == "admin"
    teacher = accounts.authenticate(TEACHER_KEY)
    assert teacher is not None and teacher.built_in and not teacher.admin
    key = accounts.add("wang")
    wang = accounts.authenticate(key)
    assert wang is not None and wang.name == "wang" and not wang.admin
    for wrong in ("", key[:-1], key + "x", key.upper(), "x" * 100_000, "\ud800", None):
        assert accounts.authenticate(wrong) is None  # type: ignore[arg-type]
    assert accounts.add("li") != key  # every key is new randomness


def test_names_are_checked_and_unique(accounts: SqliteAccounts) -> None:
    accounts.add("王老师")
    with pytest.raises(AccountExistsError):
        accounts.add("王老师")
    for bad in ("", " wang", "a b", "a/b", "admin", "Teacher", "x" * 65):
        with pytest.raises(ValueError):
            accounts.add(bad)
    assert [a.name for a in accounts.list()] == ["teacher", "王老师"]


def test_removal_is_at_once_and_the_built_in_account_stays(accounts: SqliteAccounts) -> None:
    key = accounts.add("wang")
    assert accounts.remove("wang") and accounts.authenticate(key) is None
    assert not accounts.remove("wang")
    with pytest.raises(ValueError, match="teacher key"):
        accounts.remove("teacher")


def test_only_the_hash_is_stored(accounts: SqliteAccounts, store: SqliteLessonStore) -> None:
    key = accounts.add("wang")
    db, _ = store.database()
    (stored,) = db.execute("SELECT key_hash FROM accounts").fetchone()
    assert hmac.compare_digest(stored, hashlib.sha256(key.encode()).digest())


def test_lessons_from_before_accounts_belong_to_the_built_in_teacher(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for statement in (*_MIGRATIONS[0], *_MIGRATIONS[1]):
            db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO lessons VALUES ('old', 'Old lesson', 'ended', 30, 1, 1.0, NULL, 2.0, '')"
        )
    db.close()
    store = SqliteLessonStore(path)
    try:
        lesson = store.get("old")
        assert lesson is not None
        assert (lesson.owner, lesson.link_generation) == ("teacher", 0)
    finally:
        store.close()


def test_replacing_the_link_counts_up_and_is_kept(tmp_path: Path) -> None:
    store = SqliteLessonStore(tmp_path / "syncclass.db")
    lesson = store.create("Maths", 30, True, owner="wang")
    assert (lesson.owner, lesson.link_generation) == ("wang", 0)
    assert store.rotate_link(lesson.id).link_generation == 1
    assert store.rotate_link(lesson.id).link_generation == 2
    with pytest.raises(KeyError):
        store.rotate_link("nope")
    store.close()
    again = SqliteLessonStore(tmp_path / "syncclass.db")
    kept = again.get(lesson.id)
    again.close()
    assert kept is not None and (kept.owner, kept.link_generation) == ("wang", 2)


def test_the_audit_log_keeps_order_and_filters(store: SqliteLessonStore) -> None:
    times = iter(range(100, 200))
    audit = SqliteAuditLog(store, clock=lambda: float(next(times)))
    audit.record("wang", "lesson_created", "a", "Maths")
    audit.record("admin", "teacher_added", None, "li")
    audit.record("origin token", "link_rotated", "a", "generation 1")
    audit.record("wang", "lesson_created", "b", "x" * 10_000)
    assert [(e.at, e.action, e.lesson_id) for e in audit.entries("a")] == [
        (100.0, "lesson_created", "a"),
        (102.0, "link_rotated", "a"),
    ]
    newest = audit.entries(limit=2)
    assert [e.actor for e in newest] == ["origin token", "wang"]
    assert len(newest[-1].detail) == 500


def _payload(token: str) -> dict[str, object]:
    part = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_tokens_carry_the_link_generation() -> None:
    authority = TokenAuthority(b"s" * 32)
    first = authority.issue("lesson", Role.CLASSROOM)
    assert "g" not in _payload(first) and authority.verify(first).generation == 0
    third = authority.issue("lesson", Role.CLASSROOM, 3)
    assert _payload(third)["g"] == 3 and authority.verify(third).generation == 3


@pytest.mark.parametrize("generation", [-1, 1.5, "2", True, None])
def test_a_signed_token_with_an_odd_generation_is_refused(generation: object) -> None:
    secret = b"s" * 32
    payload = {"l": "lesson", "r": "classroom", "e": 4_000_000_000, "n": "x", "g": generation}
    part = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    signature = hmac.new(secret, part.encode(), hashlib.sha256).digest()
    token = f"{part}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(TokenError):
        TokenAuthority(secret).verify(token)


def test_a_removed_accounts_lessons_pass_to_the_admin(
    accounts: SqliteAccounts, store: SqliteLessonStore
) -> None:
    accounts.add("wang")
    lesson = store.create("Maths", 30, True, owner="wang")
    assert accounts.remove("wang")
    accounts.add("wang")  # somebody else, later, under the same name
    kept = store.get(lesson.id)
    assert kept is not None and kept.owner == "admin"
