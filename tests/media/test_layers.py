"""The VP8 payload descriptor, and what a classroom sees of a source sent in layers: one
continuous stream (sequence numbers, timestamps, picture ids, TL0PICIDX) across switches."""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from media.codec import Codec
from media.consumer import Consumer, EgressParameters
from media.layers import top_layer
from media.producer import Producer
from media.rtp_packet import RtpPacket, parse_rtp, rewrite
from media.sender_clock import SenderClock
from media.vp8 import parse_vp8

VP8 = Codec("video/VP8", 90000, 96, rtx_payload_type=97)


def descriptor(
    pid: int, tl0: int, tid: int, *, start: bool, key: bool, size: tuple[int, int] = (0, 0)
) -> bytes:
    first = 0x80 | (0x10 if start else 0)
    head = bytes([first, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, tl0, (tid << 6) | 0x20])
    if not start:
        return head + bytes(20)
    if key:
        w, h = size
        return head + bytes([0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", w, h)
    return head + bytes([0x31, 0x02, 0x00]) + bytes(20)


class Stream:
    """One simulcast stream as a publisher sends it: its own SSRC, sequence numbers,
    timestamps and picture numbering; two packets per frame, temporal layers 0,2,1,2."""

    def __init__(self, ssrc: int, seq: int, ts: int, pid: int, tl0: int, size: tuple[int, int]):
        self.ssrc, self.seq, self.ts, self.pid, self.tl0, self.size = ssrc, seq, ts, pid, tl0, size
        self.frame = 0

    def frame_packets(self, key: bool = False) -> list[RtpPacket]:
        tid = 0 if key else (0, 2, 1, 2)[self.frame % 4]
        if tid == 0 and self.frame:
            self.tl0 = (self.tl0 + 1) & 0xFF
        packets = []
        for i in range(2):
            payload = descriptor(
                self.pid, self.tl0, tid, start=i == 0, key=key and i == 0, size=self.size
            )
            header = struct.pack(
                "!BBHII", 0x80, (0x80 if i == 1 else 0) | 96, self.seq, self.ts, self.ssrc
            )
            packets.append(parse_rtp(header + payload))
            self.seq = (self.seq + 1) & 0xFFFF
        self.pid = (self.pid + 1) & 0x7FFF
        self.ts = (self.ts + 3000) & 0xFFFFFFFF
        self.frame += 1
        return packets


class Upstream:
    def __init__(self) -> None:
        self.keyframe_requests: list[int] = []

    def request_keyframe(self, ssrc: int) -> None:
        self.keyframe_requests.append(ssrc)

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None:
        pass


class Link:
    reliable = False

    def __init__(self) -> None:
        self.sent: list[RtpPacket] = []

    def send_rtp(self, packet: bytes | bytearray) -> None:
        self.sent.append(parse_rtp(bytes(packet)))

    def forward(self, packet: RtpPacket, *header: Any) -> None:
        self.send_rtp(rewrite(packet, *header))


def classroom() -> tuple[Consumer, Link]:
    c = Consumer("c", "video", "camera", [Codec("video/VP8", 90000, 100, rtx_payload_type=101)])
    link = Link()
    c.attach(link, EgressParameters(ssrc=0xAAAA, rtx_ssrc=0xBBBB, extensions=[]))
    return c, link


def layered_source(upstream: Upstream) -> tuple[Producer, Producer]:
    low = Producer("p/video", "camera", [VP8], [], upstream, SenderClock(), rid="l")
    high = Producer("p/video/h", "camera", [VP8], [], upstream, SenderClock(), rid="h")
    low.add_layer(high)
    return low, high


def feed(producer: Producer, packets: list[RtpPacket], arrival: float | None = None) -> None:
    for packet in packets:
        producer.on_rtp(packet, time.time() if arrival is None else arrival)


def assert_continuous(sent: list[RtpPacket]) -> None:
    """What a decoder needs: one SSRC, sequence numbers one by one, timestamps and picture
    ids never going back, picture ids one by one per frame, TL0PICIDX never going back."""
    assert len({p.ssrc for p in sent}) == 1
    for a, b in zip(sent, sent[1:], strict=False):
        assert (b.sequence_number - a.sequence_number) & 0xFFFF == 1
        assert ((b.timestamp - a.timestamp) & 0xFFFFFFFF) < 0x80000000
    frames = []
    for p in sent:
        d = parse_vp8(p.data, p.payload_offset, p.payload_end)
        assert d is not None
        if d.start:
            frames.append(d)
    for a, b in zip(frames, frames[1:], strict=False):
        assert (b.picture_id - a.picture_id) & 0x7FFF == 1, (a, b)
        assert (b.tl0picidx - a.tl0picidx) & 0xFF in (0, 1), (a, b)


def test_descriptor_fields() -> None:
    data = descriptor(0x1234, 7, 2, start=True, key=True, size=(1280, 720))
    d = parse_vp8(data, 0, len(data))
    assert d is not None
    assert (d.picture_id, d.picture_id_bits, d.tl0picidx, d.tid, d.layer_sync) == (
        0x1234,
        15,
        7,
        2,
        True,
    )
    assert d.start and d.keyframe and (d.width, d.height) == (1280, 720)
    # 7-bit picture id, no TL0PICIDX, no TID, an inter frame
    short = bytes([0x90, 0x80, 0x05, 0x31, 0x02, 0x00])
    d = parse_vp8(short, 0, len(short))
    assert d is not None and (d.picture_id, d.picture_id_bits, d.tid) == (5, 7, -1)
    assert d.start and not d.keyframe
    # not the start of a frame: no keyframe whatever the bytes say
    d = parse_vp8(bytes([0x80, 0x20, 0x40, 0x00]), 0, 4)
    assert d is not None and not d.start and not d.keyframe and d.tid == 1
    # truncated descriptors are refused, not misread
    for cut in (b"", b"\x80", b"\x80\x80", b"\x80\x80\x80", b"\x80\x40", b"\x80\x20"):
        assert parse_vp8(cut, 0, len(cut)) is None


def test_descriptor_is_kept_with_the_packet_and_measured() -> None:
    upstream = Upstream()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock())
    stream = Stream(1, 100, 0, 10, 0, (640, 360))
    feed(producer, stream.frame_packets(key=True))
    for _ in range(7):
        feed(producer, stream.frame_packets())
    assert producer.cache.get(100) is not None and producer.cache.get(100).vp8 is not None
    assert (producer.meter.width, producer.meter.height) == (640, 360)
    assert producer.meter.frames == 8
    assert producer.meter.temporal_layers == 3


async def test_switching_layers_keeps_one_continuous_stream() -> None:
    upstream = Upstream()
    low, high = layered_source(upstream)
    lo = Stream(0x10, 60000, 1_000_000, 32700, 250, (320, 180))  # wraps soon
    hi = Stream(0x20, 5, 4_000_000_000, 100, 9, (1280, 720))
    c, link = classroom()
    feed(low, lo.frame_packets(key=True))
    c.bind(low)  # only the low layer is sending: it is the top
    assert c.layer is low
    feed(low, lo.frame_packets(key=True))
    for _ in range(10):
        feed(low, lo.frame_packets())
    # the high layer appears: the classroom moves to it at its first keyframe
    feed(high, hi.frame_packets(key=True))
    assert top_layer(low)[0] is high
    low.layers_changed()
    assert c.layer is low
    for _ in range(5):
        feed(low, lo.frame_packets())
        feed(high, hi.frame_packets())
    assert c.layer is low  # no keyframe yet: still the low layer
    await asyncio.sleep(0.7)  # the request waits out the throttle after high's first keyframe
    assert 0x20 in upstream.keyframe_requests
    feed(low, lo.frame_packets())
    feed(high, hi.frame_packets(key=True))
    assert c.layer is high
    for _ in range(10):
        feed(low, lo.frame_packets())
        feed(high, hi.frame_packets())
    # the high layer vanishes: back to the low one, at its keyframe
    stale = time.time() - 5
    high.last_seen = stale
    low.layers_changed()
    for _ in range(3):
        feed(low, lo.frame_packets())
    feed(low, lo.frame_packets(key=True))
    assert c.layer is low
    for _ in range(10):
        feed(low, lo.frame_packets())
    assert len(link.sent) >= 80
    assert_continuous(link.sent)


def test_dropping_temporal_layers_keeps_sequence_numbers_continuous() -> None:
    upstream = Upstream()
    producer = Producer("p", "camera", [VP8], [], upstream, SenderClock())
    c, link = classroom()
    c.choose_layer = lambda group: (group, 0)  # the base frame rate only
    stream = Stream(1, 65530, 0, 10, 0, (640, 360))
    feed(producer, stream.frame_packets(key=True))
    c.bind(producer)
    feed(producer, stream.frame_packets(key=True))
    for _ in range(16):
        feed(producer, stream.frame_packets())
    tids = {parse_vp8(p.data, p.payload_offset, p.payload_end).tid for p in link.sent}  # type: ignore[union-attr]
    assert tids == {0}
    assert len(link.sent) == 2 * 6  # two keyframes (one replayed from the cache), 4 of 16
    # sequence numbers and picture ids one by one: a decoder that meets a gap in the picture
    # ids waits for the frames it names (Chrome's holds the next frames back)
    assert_continuous(link.sent)
    # a classroom's NACK for a packet it was sent finds that packet, not a hidden one
    lost = link.sent[-3]
    link.sent.clear()
    c.on_nack([lost.sequence_number])
    assert len(link.sent) == 1
    resent = link.sent[0]
    assert resent.payload_type == 101  # as RTX: the original sequence number leads the payload
    assert struct.unpack_from("!H", resent.data, resent.payload_offset)[0] == lost.sequence_number
    assert resent.data[resent.payload_offset + 2 :] == lost.data[lost.payload_offset :]
