"""The operator's course commands on a data directory (``syncclass course add | list | show |
schedule | cancel | replace-link | revoke-link``): the same checks as ``/api/courses``.

They open the SQLite database directly, so they work whether the server runs or not. A link
revoked here is refused at the running server's next request; a classroom already connected
stays until it reconnects (revoking through the API lets it go at once).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from signaling.classrooms import valid_name
from signaling.contracts import ADMIN, AuditAction, ClashError, Course
from signaling.timetable import TimetableError, local_zone, read_schedule

from .audit import SqliteAuditLog
from .config import ENV_PREFIX
from .courses import SqliteCourses
from .data_dir import DataDirError, check_data_dir
from .store import DATABASE_FILE, DamagedDatabaseError, SqliteLessonStore
from .tokens import TokenAuthority, load_or_create_secret

COMMAND = "course"
_DATA_DIR_ENV = ENV_PREFIX + "DATA_DIR"
_ZONE_ENV = ENV_PREFIX + "TIMEZONE"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", metavar="DIR", default=None, help=f"the data directory (env {_DATA_DIR_ENV})"
    )
    parser.add_argument(
        "--timezone", metavar="ZONE", default=None, help=f"as serve's (env {_ZONE_ENV})"
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        default="http://127.0.0.1:8080",
        help="the server's address, for the links printed",
    )


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    course = commands.add_parser(COMMAND, help="courses, their links and their timetables")
    actions = course.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="make a course and print its links")
    add.add_argument("title")
    add.add_argument("--owner", required=True, help="the teacher's account")
    add.add_argument("--teacher", default="", help="the teacher's name as pages show it")
    add.add_argument(
        "--classroom", action="append", default=[], help="a receiving classroom (repeatable)"
    )
    add.add_argument("--max-classrooms", type=int, default=30)
    add.add_argument("--no-record", action="store_true")
    add.add_argument("--classroom-replays", action="store_true")
    _common(add)
    _common(actions.add_parser("list", help="list the courses"))
    show = actions.add_parser("show", help="a course's links and lessons")
    show.add_argument("course")
    _common(show)
    schedule = actions.add_parser("schedule", help="timetable lessons: one, or weekly")
    schedule.add_argument("course")
    schedule.add_argument("--date", help="one lesson on this date (YYYY-MM-DD)")
    schedule.add_argument("--weekly", help="days of the week: mon,wed")
    schedule.add_argument("--from", dest="first", help="the term's first day")
    schedule.add_argument("--until", help="the term's last day")
    schedule.add_argument(
        "--except", dest="holidays", action="append", default=[], help="DATE or DATE..DATE"
    )
    schedule.add_argument("--time", required=True, help="HH:MM")
    schedule.add_argument("--minutes", type=int, required=True)
    schedule.add_argument("--force", action="store_true", help="schedule even where it clashes")
    _common(schedule)
    cancel = actions.add_parser("cancel", help="take a lesson not begun out of the timetable")
    cancel.add_argument("course")
    cancel.add_argument("lesson")
    _common(cancel)
    for name, text in (("replace-link", "a new link"), ("revoke-link", "stop a link")):
        link = actions.add_parser(name, help=f"{text}: the shared one, or --classroom's")
        link.add_argument("course")
        link.add_argument("--classroom", default="")
        _common(link)


def _when(zone: ZoneInfo, at: float | None) -> str:
    return "-" if at is None else f"{dt.datetime.fromtimestamp(at, zone):%Y-%m-%d %a %H:%M}"


def _print_links(course: Course, authority: TokenAuthority, url: str) -> None:
    for link in course.links:
        name = link.classroom or "(shared)"
        if link.revoked:
            print(f"{name}\trevoked")
        else:
            token = authority.course_link(link)
            print(f"{name}\t{url}/courses/{course.id}/room?token={token}")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    data_dir = Path(args.data_dir or environ.get(_DATA_DIR_ENV) or "./data").expanduser()
    try:
        zone = ZoneInfo(args.timezone or environ.get(_ZONE_ENV) or local_zone().key)
    except (ValueError, KeyError, OSError):
        print(f"syncclass: {args.timezone!r} is not a time zone", file=sys.stderr)
        return 2
    try:
        check_data_dir(data_dir)
        store = SqliteLessonStore(data_dir / DATABASE_FILE)
    except (DataDirError, DamagedDatabaseError) as exc:
        print(f"syncclass: {exc}", file=sys.stderr)
        return 1
    try:
        authority = TokenAuthority(load_or_create_secret(data_dir))
        return _run(args, SqliteCourses(store), SqliteAuditLog(store), authority, zone)
    finally:
        store.close()


def _run(
    args: argparse.Namespace,
    courses: SqliteCourses,
    audit: SqliteAuditLog,
    authority: TokenAuthority,
    zone: ZoneInfo,
) -> int:
    url = args.url.rstrip("/")
    if args.action == "add":
        bad = [name for name in args.classroom if not valid_name(name.strip())]
        if bad or len(set(args.classroom)) != len(args.classroom):
            print(
                "syncclass: each --classroom is a distinct name of 1 to 64 characters",
                file=sys.stderr,
            )
            return 2
        course = courses.create(
            args.title,
            args.owner,
            args.teacher,
            tuple(name.strip() for name in args.classroom),
            args.max_classrooms,
            not args.no_record,
            args.classroom_replays,
        )
        audit.record(ADMIN, AuditAction.COURSE_CREATED, None, f"{course.id}: {course.title}")
        print(f"syncclass: course {course.id} made; its links:")
        _print_links(course, authority, url)
        return 0
    if args.action == "list":
        for course in courses.list():
            print(f"{course.id}\t{course.owner}\t{course.title}\t{', '.join(course.classrooms)}")
        return 0
    course_or_none = courses.get(args.course)
    if course_or_none is None:
        print(f"syncclass: there is no course {args.course!r}", file=sys.stderr)
        return 1
    course = course_or_none
    if args.action == "show":
        print(f"{course.title}\t{course.owner}\t{zone.key}")
        _print_links(course, authority, url)
        for n, lesson in enumerate(courses.lessons(course.id), 1):
            print(f"第 {n} 课\t{_when(zone, lesson.starts_at)}\t{lesson.state.value}\t{lesson.id}")
        return 0
    if args.action == "schedule":
        return _schedule(args, course, courses, audit, zone)
    if args.action == "cancel":
        lessons = {lesson.id for lesson in courses.lessons(course.id)}
        if args.lesson not in lessons or not courses.cancel(args.lesson):
            print("syncclass: no such lesson of the course not yet begun", file=sys.stderr)
            return 1
        audit.record(ADMIN, AuditAction.LESSON_CANCELLED, args.lesson, course.id)
        return 0
    if course.link(args.classroom) is None:
        print(f"syncclass: the course has no link for {args.classroom!r}", file=sys.stderr)
        return 1
    revoke = args.action == "revoke-link"
    course = (courses.revoke_link if revoke else courses.replace_link)(course.id, args.classroom)
    action = AuditAction.COURSE_LINK_REVOKED if revoke else AuditAction.COURSE_LINK_REPLACED
    audit.record(ADMIN, action, None, f"{course.id}: {args.classroom or 'shared'} link")
    _print_links(course, authority, url)
    return 0


def _schedule(
    args: argparse.Namespace,
    course: Course,
    courses: SqliteCourses,
    audit: SqliteAuditLog,
    zone: ZoneInfo,
) -> int:
    body: dict[str, Any] = {"time": args.time, "minutes": args.minutes, "force": args.force}
    if args.date:
        body["date"] = args.date
    if args.weekly:
        body.update(weekly=args.weekly.split(","), until=args.until)
        body["from"] = args.first
    if args.holidays:
        body["except"] = [
            {"from": part.split("..")[0], "until": part.split("..")[1]} if ".." in part else part
            for part in args.holidays
        ]
    try:
        schedule = read_schedule(body, zone, time.time())
        lessons, clashes = courses.schedule(course, schedule.times, schedule.force)
    except TimetableError as exc:
        print(f"syncclass: {exc} ({exc.code})", file=sys.stderr)
        return 2
    except ClashError as exc:
        for clash in exc.clashes:
            print(
                f"syncclass: clashes with {clash.title!r} at {_when(zone, clash.starts_at)} "
                f"({clash.reason}); --force to schedule it anyway",
                file=sys.stderr,
            )
        return 1
    except ValueError as exc:
        print(f"syncclass: {exc}", file=sys.stderr)
        return 2
    audit.record(ADMIN, AuditAction.LESSONS_SCHEDULED, None, f"{course.id}: {len(lessons)}")
    for clash in clashes:
        print(f"warning: clashes with {clash.title!r} at {_when(zone, clash.starts_at)}")
    for lesson in lessons:
        print(f"{_when(zone, lesson.starts_at)}\t{lesson.id}")
    return 0
