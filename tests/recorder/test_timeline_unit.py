"""Placing a track's packets on the lesson clock: retransmissions put back in order, a packet
that never comes given up, each new producer placed by its own clock, sender reports used
for lip sync when they agree with the arrivals."""

from __future__ import annotations

import pytest

from recorder.packet_log import End, Epoch, SenderReport
from recorder.timeline import REORDER_WAIT_S, TrackTimeline

RATE = 90000
EPOCH = Epoch({"mime_type": "video/VP8", "clock_rate": RATE, "parameters": {}})


def _packet(seq: int, ts: int, arrival: float, ssrc: int = 1) -> tuple[object, ...]:
    return (arrival, ts & 0xFFFFFFFF, ssrc, seq & 0xFFFF, 1, 96, memoryview(b"x"))


def test_late_retransmission_is_put_back_in_order_and_a_lost_packet_given_up() -> None:
    timeline = TrackTimeline("camera", "video")
    count = 150  # 5 s at 30 packets a second, across both wraps
    packets = [_packet(65500 + i, 4_294_700_000 + 3000 * i, 100.0 + i / 30) for i in range(count)]
    late = packets.pop(40)  # arrives 0.3 s after its successors: a retransmission
    late = (late[0] + 0.3, *late[1:])
    lost = packets.pop(139)  # never arrives (the list is one shorter after the first pop)
    timeline.add([EPOCH, *packets[:60], late, *packets[60:]])
    released = [i for _, items in timeline.release(now=105.0) for i in items]
    assert [i[0] - 65500 for i in released] == list(range(140))  # waits at the hole
    later = [i for _, items in timeline.release(now=105.0 + REORDER_WAIT_S) for i in items]
    sequences = [i[0] - 65500 for i in released + later]
    assert sequences == [k for k in range(count) if k != 140]
    assert lost[3] == (65500 + 140) & 0xFFFF
    timestamps = [i[1] for i in released + later]
    assert timestamps == sorted(timestamps) and timestamps[-1] > 1 << 32  # extended past wrap


def test_each_producer_is_placed_on_the_wall_clock_by_its_own_arrivals() -> None:
    timeline = TrackTimeline("camera", "video")
    first = [
        _packet(i, 1_000 + 3000 * i, 50.0 + i / 30 + (0.02 if i % 3 else 0.0)) for i in range(90)
    ]
    second = [_packet(7000 + i, 9_999_000 + 3000 * i, 70.0 + i / 30, ssrc=2) for i in range(90)]
    timeline.add([EPOCH, *first, End(53.1), EPOCH, *second])
    released = timeline.release(None)
    (one, items_one), (two, items_two) = released
    assert one.wall_time(items_one[0][1]) == pytest.approx(50.0)  # the earliest arrival wins
    assert two.wall_time(items_two[0][1]) == pytest.approx(70.0)
    assert one.ended_at == 53.1 and two.began_at == 70.0


def test_sender_reports_place_a_segment_when_they_agree_with_arrivals() -> None:
    timeline = TrackTimeline("camera", "video")
    packets = [_packet(i, 3000 * i, 10.05 + i / 30) for i in range(120)]
    # the publisher says timestamp 0 was captured at 10.0, 50 ms before the first arrival
    timeline.add([EPOCH, *packets[:30], SenderReport(11.0, 90000), *packets[30:]])
    ((segment, items),) = timeline.release(None)
    assert segment.wall_time(items[0][1]) == pytest.approx(10.0)

    wild = TrackTimeline("camera", "video")  # a report that contradicts arrival by hours
    wild.add([EPOCH, *packets[:30], SenderReport(9000.0, 90000), *packets[30:]])
    ((segment, items),) = wild.release(None)
    assert segment.wall_time(items[0][1]) == pytest.approx(10.05)
