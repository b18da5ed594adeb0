"""What a lesson leaves behind and what the operator watches: attendance (JSON and CSV), the
lesson report, and the wall of live lessons."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter, defaultdict
from typing import Any

from aiohttp import web

from .auth import may_manage, require_teacher, teacher_or_grant
from .classrooms import PATHS
from .contracts import Lesson, LessonState, Role
from .errors import http_error
from .json_answers import json_response
from .keys import JOURNAL, LESSONS, STORE
from .lessons_api import lesson_json


def _lesson_for_teacher(request: web.Request) -> Lesson:
    lesson_id = request.match_info["lesson_id"]
    # the report is read after the lesson, from the teacher's page and its origin token
    teacher_or_grant(request, lesson_id, {Role.ORIGIN}, after_end={Role.ORIGIN})
    lesson = request.app[STORE].get(lesson_id)
    if lesson is None:
        raise http_error(404, "no_such_lesson", f"there is no lesson {lesson_id!r}")
    return lesson


def attendance(request: web.Request, lesson: Lesson) -> list[dict[str, Any]]:
    """One row per classroom: first arrival, last departure (None while present), time
    present, visits."""
    end = lesson.ended_at or time.time()
    visits: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    for visit in request.app[JOURNAL].attendance(lesson.id):
        visits[visit["classroom"]].append((visit["joined_at"], visit["left_at"]))
    rows = []
    for name, spans in visits.items():
        still_here = any(left is None for _, left in spans)
        rows.append(
            {
                "name": name,
                "joined_at": min(joined for joined, _ in spans),
                "left_at": None if still_here else max(left or 0.0 for _, left in spans),
                "present_s": round(
                    sum(
                        max(0.0, (end if left is None else left) - joined) for joined, left in spans
                    ),
                    1,
                ),
                "visits": len(spans),
            }
        )
    return sorted(rows, key=lambda r: r["joined_at"])


async def attendance_json(request: web.Request) -> web.Response:
    lesson = _lesson_for_teacher(request)
    return json_response({"lesson_id": lesson.id, "classrooms": attendance(request, lesson)})


def _cell(text: str) -> str:
    """A cell a spreadsheet shows as text: a classroom may be named "=HYPERLINK(...)", and
    spreadsheet programs run what starts like a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _iso(at: float | None) -> str:
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


async def attendance_csv(request: web.Request) -> web.Response:
    lesson = _lesson_for_teacher(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["classroom", "joined", "left", "present_minutes", "visits"])
    for row in attendance(request, lesson):
        writer.writerow(
            [
                _cell(row["name"]),
                _iso(row["joined_at"]),
                _iso(row["left_at"]),
                f"{row['present_s'] / 60:.1f}",
                row["visits"],
            ]
        )
    return web.Response(
        # a byte-order mark, so that spreadsheet programs read the classroom names as UTF-8
        body=("\ufeff" + out.getvalue()).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="attendance-{lesson.id}.csv"'},
    )


def _interaction(events: list[dict[str, Any]], end: float) -> list[dict[str, Any]]:
    """Hands raised and time on stage per classroom."""
    hands: Counter[str] = Counter()
    on_stage_s: dict[str, float] = defaultdict(float)
    since: dict[str, float] = {}
    for event in events:
        name, kind, at = event["classroom"], event["kind"], event["at"]
        if kind == "hand_raised":
            hands[name] += 1
        elif kind == "stage_on":
            since.setdefault(name, at)
        elif kind == "stage_off" and name in since:
            on_stage_s[name] += at - since.pop(name)
    for name, at in since.items():
        on_stage_s[name] += end - at
    names = sorted(set(hands) | set(on_stage_s))
    return [
        {"name": n, "hands_raised": hands[n], "on_stage_s": round(on_stage_s[n], 1)} for n in names
    ]


SAMPLE_S = 10.0  # signaling.quality journals a sample per classroom this often


def _link_time(
    quality: dict[str, list[dict[str, Any]]], field: str = "link_state"
) -> dict[str, dict[str, float]]:
    """Each classroom's time per link state (full, reduced, audio_only), or per path (udp,
    tcp, relay) with ``field="path"``: each sample stands for the time until the next one, a
    sampling interval at most (the classroom may have left)."""
    times: dict[str, dict[str, float]] = {}
    for name, samples in quality.items():
        spent: dict[str, float] = defaultdict(float)
        for sample, after in zip(samples, [*samples[1:], None], strict=True):
            state = sample.get(field)
            if state is None:
                continue
            span = SAMPLE_S if after is None else min(after["at"] - sample["at"], SAMPLE_S)
            spent[state] += span
        if spent:
            times[name] = {state: round(seconds, 1) for state, seconds in spent.items()}
    return times


async def report(request: web.Request) -> web.Response:
    lesson = _lesson_for_teacher(request)
    journal = request.app[JOURNAL]
    end = lesson.ended_at or time.time()
    quality: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in journal.quality_samples(lesson.id):
        quality[sample.pop("classroom")].append(sample)
    events = journal.events(lesson.id)
    return json_response(
        {
            "lesson": lesson_json(request, lesson, with_links=False),
            "attendance": attendance(request, lesson),
            "quality": quality,
            "link_time": _link_time(quality),
            # how each classroom's media reached it: 直连 UDP / 直连 TCP / 中继, over time
            "path_time": _link_time(quality, "path"),
            "interaction": _interaction(events, end),
            "events": events,
            "chat": journal.chat_messages(lesson.id),  # kept only when the lesson asked
            "recording": request.app[LESSONS].recording_info(lesson.id),
            "generated_at": time.time(),
        }
    )


async def live(request: web.Request) -> web.Response:
    """Every live lesson as the operator's wall shows it (a teacher's own; the admin's all)."""
    account = require_teacher(request)
    live_lessons = request.app[LESSONS]
    lessons = []
    for lesson in request.app[STORE].list():
        if lesson.state is not LessonState.LIVE or not may_manage(account, lesson):
            continue
        live = live_lessons.get(lesson.id)
        present = live.room.present() if live else []
        grades = Counter(c.quality.grade for c in present if c.quality)
        lessons.append(
            {
                "id": lesson.id,
                "title": lesson.title,
                "teacher": lesson.teacher,
                "started_at": lesson.started_at,
                "classrooms": live.sessions.classrooms() if live else 0,
                "max_classrooms": lesson.max_classrooms,
                "sources": live.sources() if live else [],
                "on_stage": list(live.room.on_stage) if live else [],
                "hands": len(live.room.hands()) if live else 0,
                "quality": {g: grades.get(g, 0) for g in ("good", "fair", "poor")},
                # classrooms whose link carries sound only now
                "audio_only": sum(
                    1 for c in present if c.quality and c.quality.link_state == "audio_only"
                ),
                # ... and those fed lower layers than the teacher's best, to fit their link
                "reduced": sum(
                    1 for c in present if c.quality and c.quality.link_state == "reduced"
                ),
                # classrooms by the path their media takes (直连 UDP / 直连 TCP / 中继)
                "paths": {p: sum(1 for c in present if c.path == p) for p in PATHS},
                "recording": live_lessons.recording_info(lesson.id),
            }
        )
    return json_response({"lessons": lessons, "at": time.time()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/lessons/{lesson_id}/attendance", attendance_json)
    app.router.add_get("/api/lessons/{lesson_id}/attendance.csv", attendance_csv)
    app.router.add_get("/api/lessons/{lesson_id}/report", report)
    app.router.add_get("/api/live", live)
