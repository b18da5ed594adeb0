"""The operator's commands on a data directory: teacher accounts (``syncclass teacher add |
list | remove``) and the audit log (``syncclass audit``).

They open the SQLite database directly, so they work whether the server runs or not; a
running server sees an added or removed account at its next request.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from signaling.contracts import ADMIN, AccountExistsError, AuditAction

from .accounts import SqliteAccounts
from .audit import SqliteAuditLog
from .config import ENV_PREFIX
from .data_dir import DataDirError, check_data_dir
from .store import DATABASE_FILE, DamagedDatabaseError, SqliteLessonStore

COMMANDS = ("teacher", "audit")
_DATA_DIR_ENV = ENV_PREFIX + "DATA_DIR"


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help=f"the server's data directory (env {_DATA_DIR_ENV}; default ./data)",
    )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    teacher = commands.add_parser("teacher", help="add, list or remove teacher accounts")
    actions = teacher.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create an account and print its key (shown only once)")
    add.add_argument("name", help="1 to 64 letters, digits, '.', '-' or '_'")
    _data_dir_option(add)
    _data_dir_option(actions.add_parser("list", help="list the accounts"))
    remove = actions.add_parser("remove", help="remove an account: its key stops working at once")
    remove.add_argument("name")
    _data_dir_option(remove)

    audit = commands.add_parser("audit", help="print the audit log, oldest first")
    audit.add_argument("--lesson", metavar="ID", help="only the entries of this lesson")
    audit.add_argument(
        "--limit", metavar="N", type=int, default=100, help="the newest N entries (default 100)"
    )
    _data_dir_option(audit)


def _open(args: argparse.Namespace, environ: Mapping[str, str]) -> SqliteLessonStore:
    data_dir = Path(args.data_dir or environ.get(_DATA_DIR_ENV) or "./data").expanduser()
    check_data_dir(data_dir)
    return SqliteLessonStore(data_dir / DATABASE_FILE)


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Carry out a parsed ``teacher`` or ``audit`` command; the exit status."""
    try:
        store = _open(args, environ)
    except (DataDirError, DamagedDatabaseError) as exc:
        print(f"syncclass: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "audit":
            return _audit(store, args)
        return _teacher(store, args)
    finally:
        store.close()


def _teacher(store: SqliteLessonStore, args: argparse.Namespace) -> int:
    accounts = SqliteAccounts(store)
    audit = SqliteAuditLog(store)
    if args.action == "add":
        try:
            key = accounts.add(args.name)
        except (ValueError, AccountExistsError) as exc:
            print(f"syncclass: {exc}", file=sys.stderr)
            return 1
        audit.record(ADMIN, AuditAction.TEACHER_ADDED, None, f"{args.name} (from the command line)")
        print(f"syncclass: teacher {args.name!r} added; their key, shown only this once:")
        print(key)
        return 0
    if args.action == "remove":
        try:
            removed = accounts.remove(args.name)
        except ValueError as exc:
            print(f"syncclass: {exc}", file=sys.stderr)
            return 1
        if not removed:
            print(f"syncclass: there is no teacher account {args.name!r}", file=sys.stderr)
            return 1
        audit.record(
            ADMIN, AuditAction.TEACHER_REMOVED, None, f"{args.name} (from the command line)"
        )
        print(f"syncclass: teacher {args.name!r} removed; their key no longer works")
        return 0
    for account in accounts.list():
        note = (
            "built in: the teacher key"
            if account.built_in
            else f"added {_when(account.created_at)}"
        )
        print(f"{account.name}\t{note}")
    return 0


def _audit(store: SqliteLessonStore, args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("syncclass: --limit must be at least 1", file=sys.stderr)
        return 2
    for entry in SqliteAuditLog(store).entries(args.lesson, args.limit):
        print(
            "\t".join(
                (_when(entry.at), entry.actor, entry.action, entry.lesson_id or "-", entry.detail)
            )
        )
    return 0
