"""Transport-wide congestion control feedback: the bytes Chrome reads, from recorded arrivals.

The serializer is checked against bytes worked out by hand from the draft's layout, and every
packet it makes is read back by an independent reader written from the draft (status chunks,
deltas, padding), through sequence number wrap, loss, reordering and long reports.
"""

from __future__ import annotations

import random
import struct

import pytest

from media.rtp_packet import parse_rtp
from media.transport_feedback import (
    HISTORY,
    MAX_FEEDBACK_BYTES,
    ArrivalLog,
    FeedbackBuilder,
    encode_chunks,
)

EXT_ID = 5


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _rtp(transport_seq: int, ssrc: int = 0x1234, two_byte: bool = False) -> bytes:
    header = bytes([0x90, 96, 0, 1, 0, 0, 0, 1]) + ssrc.to_bytes(4, "big")
    if two_byte:
        # a two-byte element (mid "0"), then the transport-wide sequence number
        ext = bytes([1, 1, ord("0"), EXT_ID, 2]) + transport_seq.to_bytes(2, "big") + b"\0"
        return header + b"\x10\x00\x00\x02" + ext + b"\x90\x90"
    ext = bytes([0x10, ord("0"), (EXT_ID << 4) | 1]) + transport_seq.to_bytes(2, "big")
    return header + b"\xbe\xde\x00\x02" + ext + b"\0\0\0" + b"\x90\x90"


def record(log: ArrivalLog, clock: _Clock, arrivals: list[tuple[int, float]]) -> None:
    for seq, at in arrivals:
        clock.now = at
        log.record(parse_rtp(_rtp(seq)))


def read_feedback(data: bytes) -> dict[str, object]:
    """An independent reader of one transport feedback packet (the draft's layout)."""
    first, pt, words, sender, media, base, count, ref_fb = struct.unpack_from("!BBHIIHHI", data)
    assert first >> 6 == 2 and first & 0x1F == 15 and pt == 205
    assert len(data) == (words + 1) * 4
    end = len(data)
    if first & 0x20:
        assert data[-1] and all(b == 0 for b in data[end - data[-1] : end - 1])
        end -= data[-1]
    pos = 20
    symbols: list[int] = []
    while len(symbols) < count:
        (chunk,) = struct.unpack_from("!H", data, pos)
        pos += 2
        left = count - len(symbols)
        if not chunk & 0x8000:
            symbols += [(chunk >> 13) & 3] * min(chunk & 0x1FFF, left)
        elif not chunk & 0x4000:
            symbols += [(chunk >> (13 - k)) & 1 for k in range(14)][:left]
        else:
            symbols += [(chunk >> (12 - 2 * k)) & 3 for k in range(7)][:left]
    reference = ref_fb >> 8
    tick = reference * 256
    arrivals: dict[int, float] = {}
    for i, symbol in enumerate(symbols):
        assert symbol != 3
        if symbol == 0:
            continue
        if symbol == 1:
            delta = data[pos]
            pos += 1
        else:
            (delta,) = struct.unpack_from("!h", data, pos)
            pos += 2
        tick += delta
        arrivals[(base + i) & 0xFFFF] = tick * 250e-6
    assert pos == end, "no bytes left over before the padding"
    return {
        "sender": sender,
        "media": media,
        "base": base,
        "count": count,
        "fb_count": ref_fb & 0xFF,
        "arrivals": arrivals,
    }


def test_a_report_is_the_bytes_worked_out_by_hand() -> None:
    clock = _Clock()
    log = ArrivalLog(EXT_ID, clock)
    # seq 100 at 1.000 s, 101 at 1.001 s, 102 lost, 103 at 1.0005 s (overtook 101)
    record(log, clock, [(100, 1.0), (101, 1.001), (103, 1.0005)])
    packets = FeedbackBuilder().build(log, sender_ssrc=1)
    # reference time 1.000 s // 64 ms = 15 (0.96 s); 1.000 s is 160 ticks after it, then +4,
    # lost, -2 (a large delta); chunk: two-bit vector 01 01 00 10; padding 2 (P set)
    assert packets == [bytes.fromhex("afcd000600000001000012340064000400000f00d480a004fffe0002")]
    assert log.pending == []


def test_sequence_numbers_wrap_and_a_run_is_one_chunk() -> None:
    clock = _Clock()
    log = ArrivalLog(EXT_ID, clock)
    record(log, clock, [(65534, 2.0), (65535, 2.001), (0, 2.002), (1, 2.003)])
    (packet,) = FeedbackBuilder().build(log, sender_ssrc=7)
    # base 65534, 4 packets; reference 31 (1.984 s): 16 ms = 64 ticks, then 4, 4, 4; one
    # run-length chunk of 4 small deltas; padding 2
    assert packet == bytes.fromhex("afcd00060000000700001234fffe000400001f002004400404040002")
    report = read_feedback(packet)
    assert report["base"] == 65534 and report["count"] == 4
    assert report["arrivals"] == pytest.approx({65534: 2.0, 65535: 2.001, 0: 2.002, 1: 2.003})
    assert encode_chunks([1, 1, 1, 1]) == [0x2004]


def test_two_byte_header_extensions_are_read_too() -> None:
    clock = _Clock()
    log = ArrivalLog(EXT_ID, clock)
    clock.now = 3.0
    log.record(parse_rtp(_rtp(9, two_byte=True)))
    assert log.pending == [(9, 3.0)]


def test_a_packet_without_the_extension_is_not_recorded() -> None:
    log = ArrivalLog(EXT_ID + 1)
    log.record(parse_rtp(_rtp(9)))
    assert log.pending == []


def test_reports_follow_on_and_a_late_packet_is_reported_again_with_its_neighbours() -> None:
    clock = _Clock()
    log = ArrivalLog(EXT_ID, clock)
    builder = FeedbackBuilder()
    record(log, clock, [(10, 1.0), (11, 1.01), (13, 1.02)])
    (first,) = builder.build(log, 1)
    assert read_feedback(first)["arrivals"].keys() == {10, 11, 13}  # type: ignore[attr-defined]
    assert read_feedback(first)["count"] == 4  # 12 not received
    assert builder.build(log, 1) == []  # nothing new: nothing sent
    record(log, clock, [(14, 1.03), (12, 1.031)])  # 12 was late, not lost
    (second,) = builder.build(log, 1)
    report = read_feedback(second)
    assert report["base"] == 12 and report["count"] == 3
    assert report["arrivals"] == pytest.approx({12: 1.031, 13: 1.02, 14: 1.03})
    assert report["fb_count"] == 1
    record(log, clock, [(15, 1.04), (15, 1.05)])  # a duplicate: the first arrival counts
    (third,) = builder.build(log, 1)
    assert read_feedback(third)["arrivals"] == pytest.approx({15: 1.04})
    record(log, clock, [((16 - HISTORY - 5) & 0xFFFF, 1.06)])  # far too old: ignored
    assert builder.build(log, 1) == []


@pytest.mark.parametrize("seed", range(8))
def test_random_loss_reordering_and_wrap_read_back_exactly(seed: int) -> None:
    rng = random.Random(seed)
    clock = _Clock()
    log = ArrivalLog(EXT_ID, clock)
    builder = FeedbackBuilder()
    seq = rng.randrange(65536)
    at = 100.0 + rng.random()
    received: dict[int, float] = {}
    reported: dict[int, float] = {}
    for _ in range(40):  # 40 reports of up to 300 packets
        batch = []
        for _ in range(rng.randrange(1, 300)):
            seq = (seq + 1) & 0xFFFF
            at += rng.choice((0.0001, 0.0004, 0.002, 0.03, 0.09))
            if rng.random() < 0.1:
                continue  # lost
            batch.append((seq, at + rng.uniform(-0.004, 0.004)))  # jitter reorders arrivals
        if rng.random() < 0.3 and len(batch) > 2:
            batch[-1], batch[-2] = batch[-2], batch[-1]  # reordered on the way
        record(log, clock, batch)
        for s, t in batch:
            received.setdefault(s, t)
        for packet in builder.build(log, 99):
            assert len(packet) <= MAX_FEEDBACK_BYTES
            report = read_feedback(packet)
            assert report["sender"] == 99 and report["media"] == 0x1234
            reported.update(report["arrivals"])  # type: ignore[arg-type]
    assert reported.keys() == received.keys()
    for s, t in received.items():
        assert abs(reported[s] - t) <= 126e-6  # within half a tick (and a µs)


def test_a_long_report_is_split_and_a_long_pause_starts_a_new_reference() -> None:
    clock = _Clock()
    log = ArrivalLog(EXT_ID, clock)
    builder = FeedbackBuilder()
    # 600 packets with large deltas each (reordered pairs): more than one datagram can hold
    arrivals = []
    for i in range(0, 600, 2):
        arrivals += [(i, 1.0 + i * 0.1 + 0.07), (i + 1, 1.0 + i * 0.1)]
    arrivals += [(600, 200.0)]  # 140 s later: beyond a two-byte delta
    record(log, clock, arrivals)
    packets = builder.build(log, 1)
    assert len(packets) >= 3
    reported: dict[int, float] = {}
    for packet in packets:
        assert len(packet) <= MAX_FEEDBACK_BYTES
        reported.update(read_feedback(packet)["arrivals"])  # type: ignore[arg-type]
    # older than HISTORY packets are not kept, but everything in this report was reported
    assert len(reported) == 601
    assert reported[600] == pytest.approx(200.0, abs=125e-6)
    assert reported[1] == pytest.approx(1.0, abs=125e-6)


def test_chunks_choose_run_length_and_vectors() -> None:
    assert encode_chunks([1] * 20) == [0x2000 | 20]
    assert encode_chunks([0] * 9000) == [8191, 9000 - 8191]
    one_bit = [1, 0] * 7 + [1]
    assert encode_chunks(one_bit) == [0x8000 | 0b10101010101010, 0x2001]
    assert encode_chunks([1, 2, 1]) == [0xC000 | (1 << 12) | (2 << 10) | (1 << 8)]
