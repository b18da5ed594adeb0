"""A classroom's link that suddenly carries far less than it is sent (a collapse) is told by
its NACKs a round trip after it began, up to seconds before its receiver report: the gate acts
at once, before the sound is lost with the rest; neither the random loss of a rural line nor
the lost tail of one keyframe does it."""

from __future__ import annotations

import random
import struct

from media.codec import Codec
from media.consumer import Consumer, EgressParameters
from media.producer import Producer
from media.rtp_packet import RtpPacket, parse_rtp
from media.send_gate import AUDIO_ONLY, REDUCED, SendGate
from media.sender_clock import SenderClock
from tests.media.test_estimate import Clock
from tests.media.test_producer import DELTA, KEY, SSRC, VP8, Link, Publisher

PACKETS_PER_S = 150  # a 720p picture at ~1.6 Mbit/s
PAYLOAD = bytes(1000)


def rtp(seq: int, payload: bytes) -> RtpPacket:
    return parse_rtp(struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 600, SSRC) + payload)


class Classroom:
    """One video stream to a classroom whose receiver NACKs each packet it misses as the next
    one arrives (as aiortc and browsers do), with its gate on the same clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.gate = SendGate(True, now=self.clock)
        self.producer = Producer("p", "camera", [VP8], [], Publisher(), SenderClock())
        self.consumer = Consumer(
            "c", "video", "camera", [Codec("video/VP8", 90000, 100, rtx_payload_type=101)],
            now=self.clock,
        )
        self.link = Link()
        self.consumer.attach(self.link, EgressParameters(0xAAAA, 0xBBBB, []))
        self.consumer.gate = self.gate
        self.gate.add(self.consumer)
        self.consumer.bind(self.producer)
        self.seq = 1000
        self.producer.on_rtp(rtp(self.seq, KEY + PAYLOAD), 0.0)
        self.missed: list[int] = []

    def run(self, seconds: float, loss: float, rng: random.Random) -> None:
        for _ in range(round(seconds * PACKETS_PER_S)):
            self.clock.t += 1 / PACKETS_PER_S
            self.seq += 1
            before = len(self.link.sent)
            self.producer.on_rtp(rtp(self.seq, DELTA + PAYLOAD), self.clock.t)
            sent = parse_rtp(self.link.sent[before]).sequence_number
            if rng.random() < loss:
                self.missed.append(sent)
            elif self.missed:
                self.consumer.on_nack(self.missed)  # every one still missing
                self.missed = []
            if round(self.clock.t * PACKETS_PER_S) % PACKETS_PER_S == 0:
                # its estimator has not seen the collapse yet, nor its report (a clean one,
                # every second, until the collapse)
                self.gate.on_remb(3_000_000)
                self.gate.on_report(0.0, 30.0, packets=PACKETS_PER_S)

    def close(self) -> None:
        self.producer.close()


async def test_a_collapse_is_acted_on_within_a_third_of_a_second_of_its_nacks() -> None:
    room = Classroom()
    rng = random.Random(7)
    room.run(3.0, loss=0.0, rng=rng)
    assert not room.gate.estimate.congested
    began = room.clock.t
    for _ in range(100):  # the link falls to a sixth of what it is sent
        room.run(0.01, loss=0.84, rng=rng)
        if room.gate.estimate.congested:
            break
    assert room.gate.estimate.congested
    assert room.clock.t - began <= 0.35  # a receiver report may come 1.5 s later
    # the estimate is what arrived: video paused or the lowest that fits, no report needed
    estimate = room.gate.estimate.bps
    assert estimate is not None and estimate < 0.5 * room.gate.sent_bps
    assert room.gate.state in (AUDIO_ONLY, REDUCED) or not room.gate.video
    room.close()


async def test_random_loss_of_a_poor_line_is_never_taken_for_a_collapse() -> None:
    for seed in range(5):
        room = Classroom()
        room.run(60.0, loss=0.03, rng=random.Random(seed))
        assert not room.gate.estimate.congested, seed
        assert room.gate.estimate.reason == "remb", seed
        room.close()


async def test_the_lost_tail_of_one_keyframe_is_not_taken_for_a_collapse() -> None:
    room = Classroom()
    rng = random.Random(3)
    room.run(3.0, loss=0.0, rng=rng)
    room.run(0.15, loss=1.0, rng=rng)  # a keyframe's tail overflowed the link's queue
    room.run(3.0, loss=0.01, rng=rng)
    assert not room.gate.estimate.congested
    assert room.gate.estimate.reason == "remb"
    room.close()
