"""Reading a timetable request: wall-clock times in the zone, whatever its offset that day."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from signaling.timetable import TimetableError, read_schedule

NOW = dt.datetime(2027, 1, 4, 8, 0, tzinfo=dt.UTC).timestamp()


def test_china_has_one_offset_all_year() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    schedule = read_schedule(
        {"weekly": ["mon"], "from": "2027-01-04", "until": "2027-12-27", "time": "10:00",
         "minutes": 40},
        zone,
        NOW,
    )  # fmt: skip
    assert len(schedule.times) == 51  # 2027-01-04 10:00 is over at NOW (16:00 there)
    for start, length in schedule.times:
        local = dt.datetime.fromtimestamp(start, zone)
        assert (local.hour, local.minute, local.utcoffset()) == (10, 0, dt.timedelta(hours=8))
        assert length == 2400


def test_a_zone_with_daylight_saving_keeps_the_wall_clock() -> None:
    zone = ZoneInfo("Europe/Berlin")
    schedule = read_schedule(
        {"weekly": ["fri"], "from": "2027-03-19", "until": "2027-04-02", "time": "09:00",
         "minutes": 45},
        zone,
        NOW,
    )  # fmt: skip
    offsets = [dt.datetime.fromtimestamp(start, zone).utcoffset() for start, _ in schedule.times]
    hours = [dt.datetime.fromtimestamp(start, zone).hour for start, _ in schedule.times]
    assert hours == [9, 9, 9]
    assert offsets == [dt.timedelta(hours=1), dt.timedelta(hours=1), dt.timedelta(hours=2)]
    with pytest.raises(TimetableError) as skipped:  # clocks go from 02:00 to 03:00
        read_schedule({"date": "2027-03-28", "time": "02:30", "minutes": 40}, zone, NOW)
    assert skipped.value.code == "no_such_time"
    # 02:30 happens twice on 31 October: the first one
    once = read_schedule({"date": "2027-10-31", "time": "02:30", "minutes": 40}, zone, NOW)
    assert dt.datetime.fromtimestamp(once.times[0][0], zone).utcoffset() == dt.timedelta(hours=2)


def test_a_utc_server_reads_times_as_utc() -> None:
    schedule = read_schedule(
        {"date": "2027-01-05", "time": "02:00", "minutes": 40}, ZoneInfo("UTC"), NOW
    )
    assert schedule.times[0][0] == dt.datetime(2027, 1, 5, 2, 0, tzinfo=dt.UTC).timestamp()
