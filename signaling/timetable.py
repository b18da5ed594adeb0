"""A timetable request read and checked: one lesson on a date, or a weekly one over a term with
exceptions (holidays), turned into start times and lengths in the server's time zone.

Wall-clock times are the zone's: "10:00" on a date is 10:00 there, whatever the offset that
day; a time the zone skips (a DST gap) is refused, one it repeats is the earlier. The work is
bounded before any of it is done: a term spans at most a year and gives at most
``MAX_LESSONS_PER_REQUEST`` lessons.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

MAX_LESSONS_PER_REQUEST = 200  # a busy term: five lessons a week for forty weeks
MAX_TERM_DAYS = 366
MAX_EXCEPTIONS = 100
MIN_LENGTH_S = 10
MAX_LENGTH_S = 8 * 3600
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}))?")
_FIELDS = {"date", "weekly", "from", "until", "time", "minutes", "seconds", "except", "force"}


class TimetableError(Exception):
    """A timetable request that cannot be carried out (HTTP 400, ``code`` says why)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Schedule:
    """What a request asks for: lessons at ``times`` (start, length in seconds)."""

    times: list[tuple[float, float]]
    force: bool  # schedule them even where they clash


def read_schedule(body: dict[str, Any], zone: ZoneInfo, now: float) -> Schedule:
    """The lessons ``body`` asks for; TimetableError for anything impossible or too large."""
    unknown = set(body) - _FIELDS
    if unknown:
        raise TimetableError("unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise TimetableError("bad_force", "force must be true or false")
    clock = _time(body.get("time"))
    length = _length(body)
    today = dt.datetime.fromtimestamp(now, zone).date()
    if ("date" in body) == ("weekly" in body):
        raise TimetableError(
            "bad_schedule", 'give either "date" (one lesson) or "weekly" (a term of them)'
        )
    if "date" in body:
        for field in ("from", "until", "except"):
            if field in body:
                raise TimetableError("bad_schedule", f'"{field}" belongs to a weekly schedule')
        start = _at(_date(body["date"], "date"), clock, zone)
        if start + length <= now:
            raise TimetableError("in_the_past", "this lesson would be over before it is made")
        return Schedule([(start, length)], force)
    days = _weekdays(body["weekly"])
    first, last = _date(body.get("from"), "from"), _date(body.get("until"), "until")
    if last < first:
        raise TimetableError("bad_term", '"until" is before "from"')
    if (last - first).days >= MAX_TERM_DAYS:
        raise TimetableError(
            "term_too_long", f"a term spans at most {MAX_TERM_DAYS} days: schedule it in parts"
        )
    if first < today:
        raise TimetableError("in_the_past", f'"from" ({first}) is before today ({today})')
    holidays = _exceptions(body.get("except", []), first, last)
    times: list[tuple[float, float]] = []
    day = first
    while day <= last:
        if day.weekday() in days and not any(low <= day <= high for low, high in holidays):
            start = _at(day, clock, zone)
            if start + length > now:  # today's lesson already over is left out
                times.append((start, length))
                if len(times) > MAX_LESSONS_PER_REQUEST:
                    raise TimetableError(
                        "too_many_lessons",
                        f"at most {MAX_LESSONS_PER_REQUEST} lessons at once: schedule the "
                        "term in parts",
                    )
        day += dt.timedelta(days=1)
    if not times:
        raise TimetableError("no_lessons", "this schedule gives no lesson")
    return Schedule(times, force)


def _date(value: object, field: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise TimetableError("bad_date", f'"{field}" must be a date as YYYY-MM-DD')
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise TimetableError("bad_date", f"{value} is not a date on the calendar") from None
    if day.year < 2000:
        raise TimetableError("bad_date", f"{value} is too long ago")
    return day


def _time(value: object) -> dt.time:
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise TimetableError("bad_time", '"time" must be a time of day as HH:MM (or HH:MM:SS)')
    hour, minute, second = (int(part or 0) for part in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise TimetableError("bad_time", f"{value} is not a time of day")
    return dt.time(hour, minute, second)


def _length(body: dict[str, Any]) -> float:
    if ("minutes" in body) == ("seconds" in body):
        raise TimetableError("bad_length", 'give the length as "minutes" (or "seconds")')
    field = "minutes" if "minutes" in body else "seconds"
    value = body[field]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TimetableError("bad_length", f'"{field}" must be a whole number')
    seconds = value * 60 if field == "minutes" else value
    if not MIN_LENGTH_S <= seconds <= MAX_LENGTH_S:
        raise TimetableError(
            "bad_length",
            f"a lesson lasts from {MIN_LENGTH_S} seconds to {MAX_LENGTH_S // 3600} hours",
        )
    return float(seconds)


def _weekdays(value: object) -> set[int]:
    if (
        not isinstance(value, list)
        or not value
        or len(value) > 7
        or not all(isinstance(day, str) and day.lower() in WEEKDAYS for day in value)
    ):
        raise TimetableError(
            "bad_weekly", f'"weekly" must list days of the week ({", ".join(WEEKDAYS)})'
        )
    return {WEEKDAYS.index(day.lower()) for day in value}


def _exceptions(value: object, first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
    """The holidays: dates, or ``{"from": ..., "until": ...}`` ranges (both days included),
    inside the term and not overlapping one another."""
    if not isinstance(value, list) or len(value) > MAX_EXCEPTIONS:
        raise TimetableError(
            "bad_except", f'"except" must be a list of at most {MAX_EXCEPTIONS} dates or ranges'
        )
    ranges: list[tuple[dt.date, dt.date]] = []
    for item in value:
        if isinstance(item, str):
            low = high = _date(item, "except")
        elif isinstance(item, dict) and set(item) == {"from", "until"}:
            low, high = _date(item["from"], "except"), _date(item["until"], "except")
            if high < low:
                raise TimetableError(
                    "bad_except", f"the holiday {low}–{high} ends before it begins"
                )
        else:
            raise TimetableError(
                "bad_except", 'each exception is a date or {"from": date, "until": date}'
            )
        if low < first or high > last:
            raise TimetableError(
                "bad_except", f"the exception {low}–{high} is outside the term {first}–{last}"
            )
        ranges.append((low, high))
    ranges.sort()
    for (low_a, high_a), (low_b, high_b) in zip(ranges, ranges[1:], strict=False):
        if low_b <= high_a:
            raise TimetableError(
                "overlapping_exceptions",
                f"the exceptions {low_a}–{high_a} and {low_b}–{high_b} overlap: give each day once",
            )
    return ranges


def _at(day: dt.date, clock: dt.time, zone: ZoneInfo) -> float:
    """``clock`` on ``day`` in ``zone`` as Unix seconds; a time the zone skips is refused."""
    local = dt.datetime.combine(day, clock).replace(tzinfo=zone, fold=0)
    instant = local.timestamp()
    back = dt.datetime.fromtimestamp(instant, zone)
    if back.replace(tzinfo=None) != local.replace(tzinfo=None):
        raise TimetableError(
            "no_such_time", f"{day} {clock:%H:%M} does not exist in {zone.key} (clocks go forward)"
        )
    return instant


def local_zone() -> ZoneInfo:
    """The server's own time zone: ``TZ``, else the system's (/etc/timezone, /etc/localtime),
    else UTC."""
    import os
    from pathlib import Path

    name = os.environ.get("TZ", "").lstrip(":")
    candidates = [name] if name else []
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for candidate in candidates:
        try:
            return ZoneInfo(candidate)
        except (ValueError, KeyError, OSError):
            continue
    return ZoneInfo("UTC")
