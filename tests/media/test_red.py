"""Redundant sound (RED, RFC 2198): a consumer whose classroom negotiated it carries each Opus
packet's two predecessors in it while the gate asks for redundancy, so that the classroom
rebuilds a lost packet from the next one."""

from __future__ import annotations

import pytest

from media.codec import Codec
from media.red import Redundancy, read_red, red_payload_type
from media.rtp_packet import parse_rtp

OPUS = Codec("audio/opus", 48000, 111, 2)
RED = Codec("audio/red", 48000, 63, 2, {"111/111": None})


def opus_packet(seq: int, payload: bytes, padding: int = 0) -> bytes:
    header = bytes([0x80 | (0x20 if padding else 0), 111]) + seq.to_bytes(2, "big")
    header += (seq * 960).to_bytes(4, "big") + (0x1234).to_bytes(4, "big")
    tail = bytes(padding - 1) + bytes([padding]) if padding else b""
    return header + payload + tail


def test_red_is_found_only_over_the_opus_negotiated() -> None:
    assert red_payload_type([OPUS, RED], 111) == 63
    assert red_payload_type([OPUS, Codec("audio/red", 48000, 63, 2, {"111/0": None})], 111) is None
    assert red_payload_type([OPUS], 111) is None


def test_each_packet_carries_the_two_before_it_and_reads_back() -> None:
    redundancy = Redundancy(63, 111)
    payloads = [bytes([i]) * (40 + i) for i in range(5)]
    out = []
    for seq, payload in enumerate(payloads):
        packet = parse_rtp(opus_packet(seq, payload, padding=4 if seq == 3 else 0))
        wrapped = redundancy.wrap(packet)
        assert wrapped.payload_type == 63
        assert wrapped.sequence_number == seq and wrapped.timestamp == seq * 960
        # the header, extensions and all, is the original's (no padding any more)
        again = parse_rtp(wrapped.data)
        assert again.payload_end == len(wrapped.data)
        out.append(read_red(wrapped.data[again.payload_offset :]))
    assert out[0] == [(111, 0, payloads[0])]
    assert out[1] == [(111, 960, payloads[0]), (111, 0, payloads[1])]
    for seq in range(2, 5):
        assert out[seq] == [
            (111, 1920, payloads[seq - 2]),
            (111, 960, payloads[seq - 1]),
            (111, 0, payloads[seq]),
        ]


def test_packets_sent_plain_are_remembered_and_a_new_source_is_not() -> None:
    redundancy = Redundancy(63, 111)
    redundancy.remember(parse_rtp(opus_packet(0, b"first")))
    wrapped = redundancy.wrap(parse_rtp(opus_packet(1, b"second")))
    assert read_red(wrapped.data[12:]) == [(111, 960, b"first"), (111, 0, b"second")]
    redundancy.forget()
    wrapped = redundancy.wrap(parse_rtp(opus_packet(2, b"third")))
    assert read_red(wrapped.data[12:]) == [(111, 0, b"third")]


@pytest.mark.parametrize("payload", [b"", b"\x80\x00", b"\x80\x00\x00\x05\x6f", b"\x80"])
def test_malformed_red_is_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        read_red(payload)
