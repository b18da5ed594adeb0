"""What participants say on the lesson's event socket: hands, stage, chat, quality stats.

``handle`` takes one parsed message from one participant and returns the reply for that
socket (None when there is nothing to say back); everything else it causes goes out through
the events hub. See docs/interaction.md for the protocol.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .classrooms import PATHS, RESERVED
from .events_hub import Participant
from .keys import JOURNAL, LESSONS, STORE
from .live_lesson import LiveLesson
from .stage import STAGE

logger = logging.getLogger(__name__)

MAX_CHAT_CHARS = 500
# what a classroom page may report from getStats(), with the largest believable value
# What the teacher's page says of its uplink, per source: its browser's estimate of what the
# school's uplink carries, what it sends, the picture's size, and whether the estimate holds
# the picture back.
UPLINK_FIELDS = {
    "available_kbps": 1e6,
    "sent_kbps": 1e6,
    "width": 1e4,
    "height": 1e4,
}
UPLINK_SOURCES = ("camera", "courseware")

STATS_FIELDS = {
    "bitrate_kbps": 1e6,
    "loss": 1.0,
    "jitter_ms": 1e5,
    "rtt_ms": 1e5,
    "freezes": 1e6,
    "fps": 1e3,
}


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": code, "message": message}


def _forbidden(what: str) -> dict[str, Any]:
    return error("forbidden", f"only the teacher may {what}")


def _classroom_of(message: dict[str, Any]) -> str | dict[str, Any]:
    name = message.get("classroom")
    if not isinstance(name, str) or not name:
        return error("bad_message", 'this message needs "classroom": the classroom\'s name')
    return name


def _not_joined(live: LiveLesson | None, who: Participant) -> dict[str, Any] | None:
    """Why a classroom's socket may not act now (None: it may). The classroom link is shared,
    so a name proves nothing by itself: the socket must come from the browser that watches
    the lesson as that classroom (the same client id as its WHEP session)."""
    if who.name is None:
        return error("no_name", "open the event socket with your classroom's name (?name=)")
    if live is None or not live.watches(who.name, who.client):
        return error(
            "not_joined",
            f"{who.name[:64]!r} is not watching this lesson from here (?client=); join first",
        )
    return None


def _to_classroom(live: LiveLesson | None, name: str) -> Callable[[Participant], bool]:
    """Whom a message for the classroom ``name`` (and for the teacher) goes to."""
    session = live.sessions.classroom(name) if live else None
    client = session.client if session is not None else None
    return lambda p: p.is_teacher or (p.name == name and client is not None and p.client == client)


def handle(
    app: web.Application, lesson_id: str, who: Participant, message: dict[str, Any]
) -> dict[str, Any] | None:
    kind = message["type"]
    if kind == "ping":
        return {"type": "pong"}
    live = app[LESSONS].get(lesson_id)
    if not who.is_teacher and kind in ("hand", "chat", "stats", "catch_up"):
        refusal = _not_joined(live, who)
        if refusal is not None:
            return refusal
    if kind == "hand":
        return _hand(app, lesson_id, live, who, message)
    if kind == "stage":
        return _stage(app, lesson_id, live, who, message)
    if kind == "chat":
        return _chat(app, lesson_id, live, who, message)
    if kind == "stats":
        return _stats(app, lesson_id, live, who, message)
    if kind == "remove":
        return _remove(app, lesson_id, live, who, message)
    if kind == "uplink":
        return _uplink(live, who, message)
    if kind == "catch_up":
        return _catch_up(live, who, message)
    return error("unknown_type", f"unknown message type {kind[:40]!r}")


def _hand(
    app: web.Application,
    lesson_id: str,
    live: LiveLesson | None,
    who: Participant,
    message: dict[str, Any],
) -> dict[str, Any] | None:
    raised = message.get("raised", True)
    if not isinstance(raised, bool):
        return error("bad_message", '"raised" must be true or false')
    if who.is_teacher:
        if raised:
            return error("bad_message", "the teacher may lower hands, not raise them")
        name = _classroom_of(message)
        if isinstance(name, dict):
            return name
    else:
        if "classroom" in message and message["classroom"] != who.name:
            return _forbidden("lower another classroom's hand")
        assert who.name is not None  # _not_joined let it through
        name = who.name
    classroom = live.room.get(name) if live else None
    if live is None or classroom is None or not classroom.present:
        return error("no_such_classroom", f"no classroom named {name[:64]!r} is in this lesson")
    if live.room.set_hand(name, raised):
        note = {"type": "hand", "classroom": name, "raised": raised, "at": time.time()}
        app[LESSONS].tell(lesson_id, note, _to_classroom(live, name))
        live.changed()
        logger.info("lesson %s: %s %s its hand", lesson_id, name, "raised" if raised else "lowered")
    return None


def _stage(
    app: web.Application,
    lesson_id: str,
    live: LiveLesson | None,
    who: Participant,
    message: dict[str, Any],
) -> dict[str, Any] | None:
    if not who.is_teacher:
        return _forbidden("call classrooms on stage")
    on = message.get("on", True)
    if not isinstance(on, bool):
        return error("bad_message", '"on" must be true or false')
    name = _classroom_of(message)
    if isinstance(name, dict):
        return name
    if live is None:
        if on:
            return error("no_such_classroom", f"no classroom named {name[:64]!r} is in this lesson")
        return None
    room = live.room
    if on and name not in room.on_stage:
        classroom = room.get(name)
        if classroom is None or not classroom.present:
            return error("no_such_classroom", f"no classroom named {name[:64]!r} is in this lesson")
        if name not in live.sessions.feeds():
            return error("no_feed", f"{name[:64]!r} does not send its camera (no return feed)")
        limit = min(app[LESSONS].max_on_stage, len(STAGE))
        if len(room.on_stage) >= limit:
            return error("stage_full", f"at most {limit} classroom(s) may be on stage at once")
    if room.set_on_stage(name, on):
        live.apply_stage()
        live.changed()
        logger.info("lesson %s: %s %s stage", lesson_id, name, "on" if on else "off")
    return None


def _remove(
    app: web.Application,
    lesson_id: str,
    live: LiveLesson | None,
    who: Participant,
    message: dict[str, Any],
) -> dict[str, Any] | None:
    """The teacher removes a classroom (移出): its sessions close, and its name may not join
    again until the join link is rotated."""
    if not who.is_teacher:
        return _forbidden("remove classrooms")
    name = _classroom_of(message)
    if isinstance(name, dict):
        return name
    if live is None:
        return error("no_such_classroom", f"no classroom named {name[:64]!r} is in this lesson")
    note = {"type": "removed", "classroom": name, "at": time.time()}
    app[LESSONS].tell(lesson_id, note, _to_classroom(live, name))
    live.remove_classroom(name)
    return None


def _catch_up(
    live: LiveLesson | None, who: Participant, message: dict[str, Any]
) -> dict[str, Any] | None:
    """A classroom plays the lesson's recording (``watching``: true) or is back on the live
    picture (false): the server holds its live video back meanwhile."""
    watching = message.get("watching")
    if who.is_teacher:
        return error("forbidden", "only a classroom catches up")
    if not isinstance(watching, bool):
        return error("bad_message", 'catch_up needs "watching": true or false')
    assert live is not None and who.name is not None  # _not_joined let it through
    live.rewinding(who.name, watching)
    return None


def _chat(
    app: web.Application,
    lesson_id: str,
    live: LiveLesson | None,
    who: Participant,
    message: dict[str, Any],
) -> dict[str, Any] | None:
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return error("bad_message", '"text" must be a non-empty string')
    if len(text) > MAX_CHAT_CHARS:
        return error("chat_too_long", f"a message holds at most {MAX_CHAT_CHARS} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from an escaped JSON string
        return error("bad_message", '"text" must be valid Unicode text')
    text = "".join(ch for ch in text.strip() if ch >= " " or ch == "\n")
    sender = RESERVED if who.is_teacher else who.name
    assert sender is not None
    now = time.time()
    role = "teacher" if who.is_teacher else "classroom"
    note = {"type": "chat", "from": sender, "role": role, "text": text, "at": now}
    lesson = app[STORE].get(lesson_id)
    if lesson is not None and lesson.keep_chat:
        app[JOURNAL].chat(lesson_id, sender, text, now)
    if who.is_teacher:
        app[LESSONS].tell(lesson_id, note)
    else:
        app[LESSONS].tell(lesson_id, note, _to_classroom(live, sender))
    return None


def _stats(
    app: web.Application,
    lesson_id: str,
    live: LiveLesson | None,
    who: Participant,
    message: dict[str, Any],
) -> dict[str, Any] | None:
    if who.is_teacher or who.name is None:
        return error("bad_message", "stats come from a named classroom")
    path = message.get("path")
    if path is not None and path not in PATHS:
        return error("bad_message", f'"path" must be one of {", ".join(PATHS)}')
    stats: dict[str, float] = {}
    for field, limit in STATS_FIELDS.items():
        value = message.get(field)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= limit
        ):
            return error("bad_message", f'"{field}" must be a number from 0 to {limit:g}')
        stats[field] = float(value)
    classroom = live.room.get(who.name) if live else None
    if classroom is not None and classroom.present:
        classroom.client_stats = stats
        classroom.client_stats_at = time.time()
        if path is not None:
            classroom.path = path
    return None


def _uplink(
    live: LiveLesson | None, who: Participant, message: dict[str, Any]
) -> dict[str, Any] | None:
    if not who.is_teacher:
        return _forbidden("report the uplink")
    source = message.get("source")
    if source not in UPLINK_SOURCES:
        return error("bad_message", '"source" must be "camera" or "courseware"')
    report: dict[str, Any] = {}
    for field, limit in UPLINK_FIELDS.items():
        value = message.get(field)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= limit
        ):
            return error("bad_message", f'"{field}" must be a number from 0 to {limit:g}')
        report[field] = round(float(value), 1)
    limited = message.get("limited", False)
    if not isinstance(limited, bool):
        return error("bad_message", '"limited" must be true or false')
    report["limited"] = limited
    if live is not None:
        report["at"] = time.time()
        live.uplinks[source] = report
    return None
