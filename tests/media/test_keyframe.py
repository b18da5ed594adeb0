import fractions

import av
import pytest

from media.keyframe import h264_keyframe_start, vp8_keyframe_start
from media.rtp_packet import parse_rtp

HEADER = bytes([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1])


def packet(payload: bytes):  # type: ignore[no-untyped-def]
    return parse_rtp(HEADER + payload)


def encode(codec: str, frames: int = 3) -> list[tuple[bytes, bool]]:
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    out = []
    for i in range(frames):
        frame = av.VideoFrame(64, 64, "yuv420p")
        frame.pts = i
        for p in context.encode(frame):
            out.append((bytes(p), p.is_keyframe))
    for p in context.encode(None):
        out.append((bytes(p), p.is_keyframe))
    return out


def test_vp8_descriptor_variants() -> None:
    key = bytes([0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A])  # frame tag with P clear, start code
    inter = bytes([0x31, 0x02, 0x00])
    assert vp8_keyframe_start(packet(bytes([0x10]) + key))
    assert not vp8_keyframe_start(packet(bytes([0x10]) + inter))
    assert not vp8_keyframe_start(packet(bytes([0x00]) + key))  # not the start of a frame
    # X with a 15-bit picture id, TL0PICIDX and TID
    assert vp8_keyframe_start(packet(bytes([0x90, 0xE0, 0x81, 0x23, 0x05, 0x40]) + key))
    assert not vp8_keyframe_start(packet(bytes([0x90, 0xE0, 0x81, 0x23, 0x05, 0x40]) + inter))
    assert not vp8_keyframe_start(packet(bytes([0x90])))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (bytes([0x65, 0x88]), True),  # IDR slice
        (bytes([0x67, 0x42]), True),  # SPS
        (bytes([0x41, 0x9A]), False),  # non-IDR slice
        (bytes([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE]), True),  # STAP-A SPS+PPS
        (bytes([0x78, 0x00, 0x02, 0x68, 0xCE]), False),  # STAP-A with PPS only
        (bytes([0x7C, 0x85, 0x00]), True),  # FU-A start of an IDR
        (bytes([0x7C, 0x05, 0x00]), False),  # FU-A continuation
        (bytes([0x7C, 0x81, 0x00]), False),  # FU-A start of a non-IDR slice
    ],
)
def test_h264_nal_types(payload: bytes, expected: bool) -> None:
    assert h264_keyframe_start(packet(payload)) is expected


def test_vp8_detector_agrees_with_libvpx() -> None:
    for data, is_key in encode("libvpx", frames=5):
        # a single-partition frame in one packet: descriptor with S=1, PID=0
        assert vp8_keyframe_start(packet(bytes([0x10]) + data)) is is_key
