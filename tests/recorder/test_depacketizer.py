"""Frames come back byte for byte from RTP packets made by another implementation (aiortc's
packetizers); a lost packet costs the frames up to the next keyframe, never a damaged one."""

from __future__ import annotations

import fractions
from typing import Any

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.depacketizer import Frame, Framer, opus_samples
from tests.support.media import encode_h264_clip, encode_opus_clip, encode_vp8_clip

GOP = 10


def _packetize(codec: str, frames: list[Any]) -> list[tuple[int, int, bool, bytes]]:
    encoder = get_encoder(
        RTCRtpCodecParameters(mimeType=f"video/{codec}", clockRate=90000, payloadType=96)
    )
    items = []
    seq = 65500  # the extended sequence numbers cross 16 bits, as a long lesson's do
    for frame in frames:
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        packet.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.pack(packet)
        for i, payload in enumerate(payloads):
            items.append((seq, 1_000_000 + frame.pts, i == len(payloads) - 1, payload))
            seq += 1
    return items


def _nal_units(annexb: bytes) -> list[bytes]:
    units = annexb.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
    return [u for u in units if u]


def _frames(codec: str, items: list[tuple[int, int, bool, bytes]]) -> list[Frame]:
    framer = Framer(codec)
    return framer.push(items) + framer.end()


@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_frames_come_back_whole(codec: str) -> None:
    clip = (encode_vp8_clip if codec == "VP8" else encode_h264_clip)(3.0, gop=GOP)
    items = _packetize(codec, clip)
    assert len(items) > 2 * len(clip)  # frames really are split over packets
    frames = _frames(codec, items)
    assert [f.timestamp - 1_000_000 for f in frames] == [f.pts for f in clip]
    assert [f.keyframe for f in frames] == [f.keyframe for f in clip]
    for got, sent in zip(frames, clip, strict=True):
        if codec == "VP8":
            assert got.data == sent.data
        else:
            assert _nal_units(got.data) == _nal_units(sent.data)


@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_a_lost_packet_drops_frames_up_to_the_next_keyframe(codec: str) -> None:
    clip = (encode_vp8_clip if codec == "VP8" else encode_h264_clip)(3.0, gop=GOP)
    items = _packetize(codec, clip)
    # lose the middle packet of frame 13 (between the keyframes 10 and 20)
    of_frame = [i for i, item in enumerate(items) if item[1] == 1_000_000 + clip[13].pts]
    assert len(of_frame) >= 2
    del items[of_frame[len(of_frame) // 2]]
    kept = {f.timestamp - 1_000_000 for f in _frames(codec, items)}
    lost = {f.pts for f in clip[13:20]}
    assert kept == {f.pts for f in clip} - lost


def test_decoding_what_comes_back_gives_every_picture() -> None:
    clip = encode_h264_clip(1.0, gop=GOP)
    decoder: Any = av.CodecContext.create("h264", "r")
    pictures = []
    for frame in _frames("H264", _packetize("H264", clip)):
        pictures += decoder.decode(av.Packet(frame.data))
    pictures += decoder.decode(None)
    assert len(pictures) == len(clip)


def test_opus_packet_durations_follow_the_toc_byte() -> None:
    assert {opus_samples(f.data) for f in encode_opus_clip(1.0)} == {960}
    assert opus_samples(bytes([0xFC])) == 960  # CELT fullband 20 ms, one frame
    assert opus_samples(bytes([0xFD])) == 1920  # two frames
    assert opus_samples(bytes([0xF3, 0x03])) == 3 * 480  # config 30 (10 ms), code 3: three
    assert opus_samples(b"") == 0
