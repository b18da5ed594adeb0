"""Producer behaviour that classrooms rely on, driven packet by packet."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from media import consumer as consumer_module
from media.codec import Codec
from media.consumer import Consumer, EgressParameters
from media.nack import LossTracker
from media.producer import KEYFRAME_REQUEST_INTERVAL_S, Producer
from media.rtp_packet import RtpPacket, parse_rtp, rewrite, wrap_rtx
from media.sender_clock import SenderClock

VP8 = Codec("video/VP8", 90000, 96, rtx_payload_type=97)
SSRC = 0x1234
KEY = bytes([0x10, 0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A])
DELTA = bytes([0x10, 0x31, 0x02, 0x00])


def rtp(seq: int, payload: bytes = DELTA, ts: int = 0) -> RtpPacket:
    return parse_rtp(struct.pack("!BBHII", 0x80, 96, seq, ts, SSRC) + payload)


class Publisher:
    """The far end of the upstream: records what feedback the producer sends."""

    def __init__(self) -> None:
        self.keyframe_requests: list[float] = []
        self.nacks: list[list[int]] = []

    def request_keyframe(self, ssrc: int) -> None:
        self.keyframe_requests.append(asyncio.get_running_loop().time())

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None:
        self.nacks.append(list(sequence_numbers))


class Link:
    reliable = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_rtp(self, packet: bytes | bytearray) -> None:
        self.sent.append(bytes(packet))

    def forward(self, packet: RtpPacket, *header: Any) -> None:
        self.send_rtp(rewrite(packet, *header))


def consumer(name: str) -> tuple[Consumer, Link]:
    c = Consumer(name, "video", "camera", [Codec("video/VP8", 90000, 100, rtx_payload_type=101)])
    link = Link()
    c.attach(link, EgressParameters(ssrc=0xAAAA, rtx_ssrc=0xBBBB, extensions=[]))
    return c, link


async def test_keyframe_requests_are_throttled_but_never_lost() -> None:
    upstream = Publisher()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock())
    producer.on_rtp(rtp(1), 0.0)
    consumers = [consumer(f"c{i}")[0] for i in range(50)]
    for c in consumers:  # fifty classrooms join at once
        c.bind(producer)
    assert len(upstream.keyframe_requests) == 1
    await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL_S + 0.1)
    assert len(upstream.keyframe_requests) == 2  # one deferred request for all of them
    producer.on_rtp(rtp(2, KEY), 0.1)
    assert not any(c.waiting_for_keyframe for c in consumers)
    await asyncio.sleep(1.2)
    assert len(upstream.keyframe_requests) == 2  # a keyframe came: no retry
    gaps = [
        b - a
        for a, b in zip(
            upstream.keyframe_requests[:-1], upstream.keyframe_requests[1:], strict=True
        )
    ]
    assert all(g >= KEYFRAME_REQUEST_INTERVAL_S - 0.01 for g in gaps)
    producer.close()


async def test_waiting_classroom_asks_again_when_the_keyframe_is_lost() -> None:
    upstream = Publisher()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock())
    producer.on_rtp(rtp(1), 0.0)
    c, link = consumer("c")
    c.bind(producer)
    await asyncio.sleep(1.2)
    assert len(upstream.keyframe_requests) >= 2
    producer.on_rtp(rtp(2), 0.0)
    assert link.sent == []  # nothing before a keyframe
    producer.on_rtp(rtp(3, KEY), 0.0)
    producer.on_rtp(rtp(4), 0.0)
    assert len(link.sent) == 2
    out = [parse_rtp(p) for p in link.sent]
    assert out[1].sequence_number == (out[0].sequence_number + 1) & 0xFFFF
    assert {p.ssrc for p in out} == {0xAAAA} and {p.payload_type for p in out} == {100}
    producer.close()


async def test_gaps_are_nacked_upstream_and_rtx_fills_them_for_everyone() -> None:
    upstream = Publisher()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock(), {0x9999: SSRC})
    c, link = consumer("c")
    c.bind(producer)
    producer.on_rtp(rtp(10, KEY), 0.0)
    producer.on_rtp(rtp(13), 0.0)
    assert upstream.nacks == [[11, 12]]
    rtx = parse_rtp(wrap_rtx(rtp(11), 97, 500, 11, 0, 0x9999, None))
    producer.on_rtp(rtx, 0.0)
    producer.on_rtp(rtx, 0.0)  # a duplicate retransmission is dropped
    sent = [parse_rtp(p) for p in link.sent]
    first = sent[0].sequence_number
    assert [(p.sequence_number - first) & 0xFFFF for p in sent] == [0, 3, 1]
    assert sent[2].payload == DELTA
    producer.close()


async def test_classroom_nack_is_answered_from_the_cache_as_rtx() -> None:
    upstream = Publisher()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock())
    c, link = consumer("c")
    c.bind(producer)
    for seq in range(100, 110):
        producer.on_rtp(rtp(seq, KEY if seq == 100 else DELTA), 0.0)
    first = parse_rtp(link.sent[0]).sequence_number
    c.on_nack([(first + 4) & 0xFFFF, (first - 3) & 0xFFFF])
    retransmission = parse_rtp(link.sent[-1])
    assert len(link.sent) == 11  # the packet before the consumer started is not resent
    assert retransmission.payload_type == 101 and retransmission.ssrc == 0xBBBB
    assert struct.unpack("!H", retransmission.payload[:2])[0] == (first + 4) & 0xFFFF
    assert c.stats.retransmitted == 1
    producer.close()


async def test_new_producer_continues_the_sequence() -> None:
    upstream = Publisher()
    first = Producer("p1", "camera", [VP8], [], upstream, SenderClock())
    c, link = consumer("c")
    c.bind(first)
    for seq in range(5):
        first.on_rtp(rtp(seq, KEY if seq == 0 else DELTA, ts=seq * 3000), 1000.0)
    first.close()
    second = Producer("p2", "camera", [VP8], [], upstream, SenderClock())
    c.bind(second)
    second.on_rtp(rtp(40000, DELTA, ts=77), 1000.5)
    second.on_rtp(rtp(40001, KEY, ts=3077), 1000.5)
    second.on_rtp(rtp(40002, DELTA, ts=6077), 1000.5)
    out = [parse_rtp(p) for p in link.sent]
    seqs = [p.sequence_number for p in out]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs[:-1], seqs[1:], strict=True))
    assert len(out) == 7
    assert ((out[5].timestamp - out[4].timestamp) & 0xFFFFFFFF) > 0
    second.close()


def test_loss_tracker() -> None:
    tracker = LossTracker()
    assert tracker.add(65534) == []
    assert tracker.add(1) == [65535, 0]
    assert tracker.add(0) == []
    assert tracker.missing == {65535}
    assert tracker.add(30000) == []  # a jump, not a loss
    assert tracker.missing == set()


class Clock:
    """The producer's clock, moved by the test: what a newcomer may replay depends on it alone
    (throttled requests are deferred with the event loop's timers, and are waited for)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_classroom_joining_just_after_a_keyframe_starts_there_without_a_request() -> None:
    upstream = Publisher()
    clock = Clock()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock(), now=clock)
    for seq in range(200, 210):
        producer.on_rtp(rtp(seq, KEY if seq == 203 else DELTA), 0.0)
    c, link = consumer("c")
    c.bind(producer)
    assert upstream.keyframe_requests == []
    assert not c.waiting_for_keyframe
    sent = [parse_rtp(p) for p in link.sent]
    assert len(sent) == 7 and sent[0].payload == KEY  # packets 203..209, from the keyframe
    producer.on_rtp(rtp(210), 0.0)
    assert parse_rtp(link.sent[-1]).sequence_number == (sent[-1].sequence_number + 1) & 0xFFFF
    # half a second later the keyframe is too old: a newcomer asks for a fresh one
    clock.now += KEYFRAME_REQUEST_INTERVAL_S + 0.05
    late, late_link = consumer("late")
    late.bind(producer)
    assert late.waiting_for_keyframe and late_link.sent == []
    assert len(upstream.keyframe_requests) == 1
    producer.close()


def clocked_consumer(name: str, clock: Clock) -> tuple[Consumer, Link]:
    c = Consumer(
        name,
        "video",
        "camera",
        [Codec("video/VP8", 90000, 100, rtx_payload_type=101)],
        now=clock,
    )
    link = Link()
    c.attach(link, EgressParameters(ssrc=0xAAAA, rtx_ssrc=0xBBBB, extensions=[]))
    return c, link


async def test_a_packet_is_resent_once_per_round_trip_however_often_it_is_named() -> None:
    clock = Clock()
    producer = Producer("p", "camera", [VP8], [], Publisher(), SenderClock(), now=clock)
    c, link = clocked_consumer("c", clock)
    c.bind(producer)
    for seq in range(100, 110):
        producer.on_rtp(rtp(seq, KEY if seq == 100 else DELTA), 0.0)
    first = parse_rtp(link.sent[0]).sequence_number
    named = [(first + 3) & 0xFFFF, (first + 5) & 0xFFFF]
    c.on_nack(named * 200)  # each listed 200 times in one NACK
    assert c.stats.retransmitted == 2
    assert c.stats.nacks_suppressed == 398
    clock.now += 0.05  # within the default round trip (no receiver report yet)
    c.on_nack(named)
    assert c.stats.retransmitted == 2
    clock.now += 0.06
    c.on_nack(named)
    assert c.stats.retransmitted == 4
    # a satellite classroom: its own round trip counts
    c.on_receiver_report(0, 0, 0, 0.6)
    clock.now += 0.5
    c.on_nack(named)
    assert c.stats.retransmitted == 4
    clock.now += 0.11
    c.on_nack(named)
    assert c.stats.retransmitted == 6
    assert len(link.sent) == 10 + 6
    producer.close()


async def test_a_classroom_s_retransmissions_stay_within_its_budget() -> None:
    clock = Clock()
    producer = Producer("p", "camera", [VP8], [], Publisher(), SenderClock(), now=clock)
    c, link = clocked_consumer("c", clock)
    c.bind(producer)
    payload = DELTA + bytes(1000)
    seq = 1000
    producer.on_rtp(rtp(seq, KEY + bytes(1000)), 0.0)
    first = parse_rtp(link.sent[0]).sequence_number
    # ten seconds of 100 packets a second, and every 0.2 s a NACK naming the last 500 sent
    for _ in range(50):
        for _ in range(20):
            seq += 1
            producer.on_rtp(rtp(seq, payload), 0.0)
        clock.now += 0.2
        newest = (first + seq - 1000) & 0xFFFF
        c.on_nack([(newest - i) & 0xFFFF for i in range(500)])
    resent = sum(len(p) - 12 - 2 for p in link.sent[seq - 1000 + 1 :])
    allowed = (
        consumer_module.RETRANSMIT_BURST
        + consumer_module.RETRANSMIT_SHARE * c.stats.octets
        + consumer_module.RETRANSMIT_FLOOR_BPS * 10
    )
    assert c.stats.retransmitted == len(link.sent) - (seq - 1000 + 1)
    assert resent <= allowed, (resent, allowed)
    assert c.stats.nacks_suppressed > 10_000
    producer.close()


async def test_nacks_for_packets_lost_upstream_are_passed_on_once() -> None:
    upstream = Publisher()
    clock = Clock()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock(), now=clock)
    consumers = [clocked_consumer(f"c{i}", clock) for i in range(3)]
    for c, _ in consumers:
        c.bind(producer)
    producer.on_rtp(rtp(10, KEY), 0.0)
    producer.on_rtp(rtp(13), 0.0)  # 11 and 12 never come
    producer.on_rtp(rtp(14), 0.0)
    assert upstream.nacks == [[11, 12]]  # the server's own request, when it finds the gap
    first = parse_rtp(consumers[0][1].sent[0]).sequence_number
    hole = (first + 1) & 0xFFFF  # 11, in the first classroom's numbering
    future = (first + 40) & 0xFFFF
    consumers[0][0].on_nack([hole] * 50 + [future])
    assert upstream.nacks == [[11, 12]]  # too soon: that request may still be answered
    clock.now += 0.25
    for c, link in consumers:
        base = parse_rtp(link.sent[0]).sequence_number
        for _ in range(5):
            c.on_nack([(base + 1) & 0xFFFF, (base + 2) & 0xFFFF, (base + 40) & 0xFFFF])
        clock.now += 0.3
    assert upstream.nacks == [[11, 12], [11, 12]]  # once more, for all of them
    assert producer.stats.nacks == 4
    producer.close()


async def test_a_keyframe_request_right_after_a_keyframe_waits_for_the_interval() -> None:
    upstream = Publisher()
    clock = Clock()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock(), now=clock)
    c, link = clocked_consumer("c", clock)
    c.bind(producer)
    assert len(upstream.keyframe_requests) == 0  # nothing received yet: no SSRC to ask
    clock.now += 1
    producer.on_rtp(rtp(1, KEY), 0.0)  # the publisher's own keyframe
    assert not c.waiting_for_keyframe
    clock.now += 0.1
    for _ in range(100):
        c.on_keyframe_request()
    assert upstream.keyframe_requests == []  # deferred: a keyframe has just started
    clock.now += 0.45
    await asyncio.sleep(KEYFRAME_REQUEST_INTERVAL_S)
    assert len(upstream.keyframe_requests) == 1  # deferred, not dropped
    producer.close()
