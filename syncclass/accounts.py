"""Teacher accounts and the admin key: who may create and manage lessons.

Account keys are kept only as SHA-256 hashes (a key is 32 random bytes, so a plain hash is
enough: there is nothing to guess), looked up on every request so that a removed account's
key stops working at once, even when the removal came from the command line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Callable

from signaling.contracts import ADMIN, Account, AccountExistsError

from .store import SqliteLessonStore

BUILT_IN = "teacher"  # the account of the configured teacher key (--teacher-key, teacher.key)
KEY_BYTES = 32
MAX_KEY_CHARS = 512  # far above a real key; hostile input is not hashed at any length
_NAME = re.compile(r"[\w.-]{1,64}")
_RESERVED = frozenset({BUILT_IN, ADMIN})


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def check_name(name: object) -> str:
    """The account name, or ValueError saying what is wrong with it."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError("a teacher's name is 1 to 64 letters, digits, '.', '-' or '_' (no spaces)")
    if name.casefold() in _RESERVED:
        raise ValueError(f"{name!r} is reserved")
    return name


class SqliteAccounts:
    """`signaling.contracts.Accounts` in the lesson store's database."""

    def __init__(
        self,
        store: SqliteLessonStore,
        teacher_key: str | None = None,
        admin_key: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db, self._lock = store.database()
        self._teacher = _digest(teacher_key) if teacher_key else None
        self._admin = _digest(admin_key) if admin_key else None
        self._clock = clock

    def authenticate(self, key: str) -> Account | None:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
            return None
        digest = _digest(key)
        # compare_digest everywhere: how long a check takes says nothing about the key
        if self._admin is not None and hmac.compare_digest(digest, self._admin):
            return Account(ADMIN, admin=True)
        if self._teacher is not None and hmac.compare_digest(digest, self._teacher):
            return Account(BUILT_IN, built_in=True)
        with self._lock:
            row = self._db.execute(
                "SELECT name, key_hash, created_at FROM accounts WHERE key_hash = ?", (digest,)
            ).fetchone()
        if row is None or not hmac.compare_digest(bytes(row[1]), digest):
            return None
        return Account(row[0], created_at=row[2])

    def add(self, name: str) -> str:
        name = check_name(name)
        key = secrets.token_urlsafe(KEY_BYTES)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO accounts (name, key_hash, created_at) VALUES (?, ?, ?)",
                    (name, _digest(key), self._clock()),
                )
            except sqlite3.IntegrityError:
                raise AccountExistsError(f"there is already a teacher called {name!r}") from None
        return key

    def list(self) -> list[Account]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, created_at FROM accounts ORDER BY created_at, name"
            ).fetchall()
        return [Account(BUILT_IN, built_in=True)] + [
            Account(name, created_at=created_at) for name, created_at in rows
        ]

    def remove(self, name: str) -> bool:
        if name == BUILT_IN:
            raise ValueError(
                "the built-in teacher account is the teacher key (--teacher-key or "
                "teacher.key in the data directory); change that key to retire it"
            )
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute("DELETE FROM accounts WHERE name = ?", (name,))
                # its lessons pass to the admin: an account added later under the same name
                # is somebody else, and must not inherit them (nor their reports, recordings)
                if cursor.rowcount:
                    self._db.execute("UPDATE lessons SET owner = ? WHERE owner = ?", (ADMIN, name))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return cursor.rowcount > 0
