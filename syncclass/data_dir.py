"""The data directory checked before the server (or an admin command) uses it: that it can be
written, and that its database was not lost while the lessons' recordings and keys remain.

A zero-length or missing ``syncclass.db`` would otherwise be taken for a first start: the
server would come up with no lessons and no accounts, and every recording on disk would be
orphaned. Refusing with one plain line lets the operator restore the database instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .store import DATABASE_FILE
from .tokens import SECRET_FILE


class DataDirError(Exception):
    """The data directory cannot be used as it is; the message says why, in one line."""


def check_data_dir(data_dir: Path, recordings_dir: Path | None = None) -> None:
    """Make ``data_dir`` if it is missing; raise ``DataDirError`` if it cannot be written, or
    if its database is empty or missing while it holds an earlier server's data (the token
    secret, or recordings)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise DataDirError(
            f"the data directory {data_dir} cannot be written ({exc.strerror or exc}); "
            "choose another with --data-dir or make it writable"
        ) from None
    database = data_dir / DATABASE_FILE
    if _holds_data(database):
        return
    earlier = _earlier_data(data_dir, recordings_dir or data_dir / "recordings")
    if earlier:
        state = "empty" if database.exists() else "missing"
        raise DataDirError(
            f"{database} is {state}, but {data_dir} holds {earlier} of an earlier server: "
            "restore the database from a backup (or move the directory away to start afresh)"
        )


def _holds_data(database: Path) -> bool:
    wal = database.with_name(database.name + "-wal")
    return any(path.is_file() and path.stat().st_size > 0 for path in (database, wal))


def _earlier_data(data_dir: Path, recordings_dir: Path) -> str:
    """What of an earlier server's data the directory holds ("" for nothing)."""
    found = []
    if (data_dir / SECRET_FILE).is_file():
        found.append("the token secret")
    try:
        if recordings_dir.is_dir() and any(recordings_dir.iterdir()):
            found.append("recordings")
    except OSError:
        pass
    return " and ".join(found)
