"""H.264 from a camera into RTP: single NAL units and FU-A fragments that put the same bytes
back together, the parameter sets before every keyframe, the marker on each frame's end."""

from __future__ import annotations

import fractions
from typing import cast

import av

from media.h264_packetizer import (
    MAX_PAYLOAD,
    NAL_FU_A,
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    H264Packetizer,
    parameter_sets,
    split_nal_units,
)
from media.rtp_packet import parse_rtp
from tests.support.media import make_pattern_frame


def _camera_frames(count: int, gop: int) -> tuple[bytes, list[tuple[bytes, bool]]]:
    """A camera's stream: the parameter sets in the extradata only (global header), as RTSP
    cameras announce them in their SDP; frames 640×480, large enough for FU-A."""
    ctx = cast(av.VideoCodecContext, av.CodecContext.create("libx264", "w"))
    ctx.width, ctx.height, ctx.pix_fmt = 640, 480, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 25)
    ctx.bit_rate = 2_000_000
    ctx.flags |= cast(int, av.codec.context.Flags.global_header)
    ctx.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:repeat-headers=0",
    }
    frames = []
    for i in range(count):
        picture = make_pattern_frame(i, 640, 480, i % gop == 0)
        picture.pts = i
        for packet in ctx.encode(picture):
            frames.append((bytes(packet), packet.is_keyframe))
    return bytes(ctx.extradata or b""), frames


def _reassemble(payloads: list[bytes]) -> list[bytes]:
    units: list[bytes] = []
    fragment = bytearray()
    for payload in payloads:
        if payload[0] & 0x1F != NAL_FU_A:
            units.append(payload)
            continue
        header = payload[1]
        if header & 0x80:
            fragment = bytearray([(payload[0] & 0xE0) | (header & 0x1F)])
        fragment += payload[2:]
        if header & 0x40:
            units.append(bytes(fragment))
    return units


def test_frames_become_rtp_that_gives_the_same_units_back() -> None:
    extradata, frames = _camera_frames(12, gop=5)
    packetizer = H264Packetizer(ssrc=0x1234, payload_type=102)
    packetizer.learn(parameter_sets(extradata))
    assert packetizer.sps is not None and packetizer.pps is not None
    sequence = 0
    fragmented = 0
    for index, (data, keyframe) in enumerate(frames):
        packets, said_keyframe = packetizer.packetize(data, index * 3600)
        assert said_keyframe == keyframe
        parsed = [parse_rtp(p) for p in packets]
        assert [p.sequence_number for p in parsed] == list(range(sequence, sequence + len(parsed)))
        sequence += len(parsed)
        assert all(p.timestamp == index * 3600 and p.ssrc == 0x1234 for p in parsed)
        assert [p.marker for p in parsed] == [False] * (len(parsed) - 1) + [True]
        assert all(p.payload_size <= MAX_PAYLOAD for p in parsed)
        fragmented += sum(p.payload[0] & 0x1F == NAL_FU_A for p in parsed)
        units = _reassemble([p.payload for p in parsed])
        sent = [u for u in split_nal_units(data) if u[0] & 0x1F != 9]
        if keyframe:
            # the camera gave them once, in its SDP: here they come before every keyframe
            assert [u[0] & 0x1F for u in units[:2]] == [NAL_SPS, NAL_PPS]
            assert units[2:] == sent
            assert any(u[0] & 0x1F == NAL_IDR for u in units)
        else:
            assert units == sent
    assert fragmented > 0


def test_parameter_sets_from_an_avcc_record() -> None:
    sps, pps = b"\x67\x42\xc0\x1e\xaa", b"\x68\xce\x3c\x80"
    record = b"\x01\x42\xc0\x1e\xff\xe1" + len(sps).to_bytes(2, "big") + sps
    record += b"\x01" + len(pps).to_bytes(2, "big") + pps
    assert parameter_sets(record) == [sps, pps]
    annex_b = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps
    assert parameter_sets(annex_b) == [sps, pps]
