"""A course's timetable as an iCalendar feed (RFC 5545), for the calendars schools already use.

Times are given in the server's time zone with its VTIMEZONE where the zone keeps one offset
over the feed (China, UTC, most of Asia); in a zone with daylight saving they are given in
UTC, which every calendar converts to its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Event:
    uid: str
    starts_at: float
    ends_at: float
    summary: str
    description: str = ""
    url: str = ""
    cancelled: bool = False


def _escape(text: str) -> str:
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _fold(line: str) -> str:
    """Lines of at most 75 octets, continued with a leading space (never inside a character)."""
    out: list[str] = []
    part = ""
    for char in line:
        if len((part + char).encode()) > (75 if not out else 74):
            out.append(part)
            part = ""
        part += char
    out.append(part)
    return "\r\n ".join(out)


def _offset(delta: dt.timedelta | None) -> str:
    seconds = int((delta or dt.timedelta()).total_seconds())
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}{seconds // 60 % 60:02d}"


def _fixed_offset(zone: ZoneInfo, instants: Iterable[float]) -> dt.timedelta | None:
    """The zone's one offset over ``instants`` (and around them), or None if it changes."""
    offsets = set()
    for instant in instants:
        for shift in (0.0, -183 * 86400.0, 183 * 86400.0):
            offsets.add(dt.datetime.fromtimestamp(instant + shift, zone).utcoffset())
    return offsets.pop() if len(offsets) == 1 else None


def calendar(name: str, zone: ZoneInfo, events: list[Event], now: float) -> str:
    """The feed as text (CRLF lines)."""
    fixed = _fixed_offset(zone, [event.starts_at for event in events] or [now])
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//syncclass//timetable//ZH",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_escape(name)}",
        f"X-WR-TIMEZONE:{zone.key}",
    ]
    if fixed is not None:
        lines += [
            "BEGIN:VTIMEZONE",
            f"TZID:{zone.key}",
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            f"TZOFFSETFROM:{_offset(fixed)}",
            f"TZOFFSETTO:{_offset(fixed)}",
            f"TZNAME:{dt.datetime.fromtimestamp(now, zone).tzname() or zone.key}",
            "END:STANDARD",
            "END:VTIMEZONE",
        ]

    def when(prop: str, instant: float) -> str:
        if fixed is None:
            return f"{prop}:{dt.datetime.fromtimestamp(instant, dt.UTC):%Y%m%dT%H%M%SZ}"
        return f"{prop};TZID={zone.key}:{dt.datetime.fromtimestamp(instant, zone):%Y%m%dT%H%M%S}"

    stamp = f"{dt.datetime.fromtimestamp(now, dt.UTC):%Y%m%dT%H%M%SZ}"
    for event in events:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{event.uid}",
            f"DTSTAMP:{stamp}",
            when("DTSTART", event.starts_at),
            when("DTEND", event.ends_at),
            f"SUMMARY:{_escape(event.summary)}",
        ]
        if event.description:
            lines.append(f"DESCRIPTION:{_escape(event.description)}")
        if event.url:
            lines.append(f"URL:{event.url}")
        lines.append("STATUS:CANCELLED" if event.cancelled else "STATUS:CONFIRMED")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)
