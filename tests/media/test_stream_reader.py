"""The RTSP reader against a real camera (GStreamer's RTSP server) whose pictures come in
several slices, each keyframe slice after its own parameter sets, as recording-and-broadcast
boxes send them: a classroom that puts frames together at the RTP marker bit, as browsers do,
decodes every picture whole."""

from __future__ import annotations

import fractions
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest

from media.h264_packetizer import split_nal_units
from media.stream_reader import RtpBatch, StreamInfo, StreamReader
from tests.support.media import make_pattern_frame, read_marker
from tests.support.rtsp_camera import RtspCamera, available

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not available(), reason="GStreamer's RTSP server is not installed"),
]

WIDTH, HEIGHT, FPS, GOP, SLICES, FRAMES = 320, 240, 25, 10, 2, 100
START = b"\x00\x00\x00\x01"


def _sliced_keyframe(access_unit: bytes) -> bytes:
    """The keyframe with the SPS and PPS before each of its slices."""
    units = split_nal_units(access_unit)
    sets = [u for u in units if u[0] & 0x1F in (7, 8)]
    out: list[bytes] = []
    for unit in units:
        kind = unit[0] & 0x1F
        if kind in (7, 8):
            continue
        if kind == 5:
            out += sets
        out.append(unit)
    return b"".join(START + u for u in out)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, np.ndarray]]:
    """The camera's clip (Matroska, so that the camera sends each picture as it is) and the
    luma of each picture as a decoder makes it from the whole stream."""
    path = tmp_path_factory.mktemp("sliced") / "sliced.mkv"
    container = av.open(str(path), "w", format="matroska")
    stream = cast(av.VideoStream, container.add_stream("libx264", rate=FPS))
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.codec_context.options = {
        "preset": "veryfast",
        "tune": "zerolatency",
        "profile": "baseline",
        "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0"
        f":slices={SLICES}:repeat-headers=1",
    }
    stream.codec_context.bit_rate = 600_000
    reference = av.CodecContext.create("h264", "r")
    pictures: dict[int, np.ndarray] = {}
    for i in range(FRAMES):
        picture = make_pattern_frame(i, WIDTH, HEIGHT, i % GOP == 0)
        picture.pts = i
        picture.time_base = fractions.Fraction(1, FPS)
        for packet in stream.encode(picture):
            data = bytes(packet)
            types = [u[0] & 0x1F for u in split_nal_units(data)]
            assert types.count(5) + types.count(1) == SLICES, types
            if 5 in types:
                data = _sliced_keyframe(data)
            for decoded in reference.decode(av.Packet(data)):
                pictures[i] = decoded.to_ndarray()[:HEIGHT].copy()
            out = av.Packet(data)
            out.pts, out.dts, out.time_base = packet.pts, packet.dts, packet.time_base
            out.stream = stream
            container.mux(out)
    container.close()
    return path, pictures


@pytest.fixture
def camera(clip: tuple[Path, dict[int, np.ndarray]], tmp_path: Path) -> Iterator[RtspCamera]:
    pipeline = f"filesrc location={clip[0]} ! matroskademux ! rtph264pay name=pay0 pt=96"
    with RtspCamera(pipeline, tmp_path) as instance:
        yield instance


def _depacketize(payload: bytes) -> bytes:
    kind = payload[0] & 0x1F
    if kind == 28:  # FU-A
        if payload[1] & 0x80:
            return START + bytes([(payload[0] & 0xE0) | (payload[1] & 0x1F)]) + payload[2:]
        return payload[2:]
    assert kind < 24, f"unexpected payload type {kind}"
    return START + payload


def test_every_picture_of_a_sliced_stream_is_one_frame(
    camera: RtspCamera, clip: tuple[Path, dict[int, np.ndarray]]
) -> None:
    packets: list[bytes] = []
    enough = threading.Event()
    wanted = 3 * GOP + 1

    def on_batch(batch: RtpBatch) -> None:
        packets.extend(batch.video)
        if sum(p[1] >> 7 for p in packets) >= wanted:
            enough.set()

    def on_open(_: StreamInfo) -> None:
        pass

    reader = StreamReader(camera.url(), on_open=on_open, on_batch=on_batch)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    try:
        assert enough.wait(30), f"{len(packets)} packets from the camera"
    finally:
        reader.stop()
        thread.join(10)

    # frames as a browser's packet buffer makes them: up to each packet with the marker bit
    frames: list[tuple[int, bytes]] = []
    pending: list[bytes] = []
    for packet in packets:
        pending.append(_depacketize(packet[12:]))
        if packet[1] & 0x80:
            frames.append((int.from_bytes(packet[4:8], "big"), b"".join(pending)))
            pending = []

    decoder = av.CodecContext.create("h264", "r")
    seen: list[int] = []
    whole: list[bool] = []
    started = False
    for _, data in frames:
        started = started or 5 in {u[0] & 0x1F for u in split_nal_units(data)}
        if not started:
            continue
        pictures = decoder.decode(av.Packet(data))
        assert len(pictures) == 1, f"frame after picture {seen[-1:]}: {len(pictures)} pictures"
        marker = read_marker(pictures[0])
        assert marker is not None, f"unreadable picture after {seen[-1:]}"
        seen.append(marker.index)
        luma = pictures[0].to_ndarray()[:HEIGHT]
        whole.append(bool(np.array_equal(luma, clip[1][marker.index])))
    assert len(seen) >= 2 * GOP
    assert seen == list(range(seen[0], seen[0] + len(seen))), "pictures missing or repeated"
    broken = [n for n, w in zip(seen, whole, strict=True) if not w]
    assert not broken, f"pictures not whole: {broken}"
    assert len({ts for ts, _ in frames}) == len(frames), "two frames end in one picture"
