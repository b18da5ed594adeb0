"""The layer made of a single-layer source: its size and rate, the packets put back in order,
a real decode–scale–encode round trip in H.264 and VP8 (the picture numbers of the source read
back from the made layer), garbage that makes nothing, the child process's framing, and the
made layer's life in a source's group: ranked below the original, offered to the classrooms'
gates, closed without a thread or a process left behind. The trigger, with real classrooms on
emulated links, is in tests/e2e/test_made_layer.py."""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import time
from dataclasses import replace

import av
import pytest

from media.codec import Codec
from media.consumer import Consumer, EgressParameters
from media.depacketizer import Framer
from media.h264_packetizer import H264Packetizer
from media.layer_choice import options_of
from media.layer_maker import (
    MADE_BPS,
    MIN_BPS,
    REORDER_PACKETS,
    LayerMaker,
    MadeOutput,
    Reorder,
    made_bitrate,
    made_size,
    vp8_packets,
)
from media.layer_process import (
    LayerProcess,
    LayerProcessError,
    read_batch,
    read_output,
    write_batch,
    write_output,
)
from media.layers import describe, top_layer
from media.made_layer import MadeLayer
from media.made_layers import MadeLayers, single_layer
from media.producer import Producer
from media.rtp_packet import parse_rtp
from media.send_gate import SendGate
from media.sender_clock import SenderClock
from tests.media.test_layers import Link, Upstream
from tests.support.media import EncodedFrame, encode_h264_clip, encode_vp8_clip, read_marker

H264 = Codec(
    "video/H264",
    90000,
    102,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
    rtx_payload_type=103,
)
VP8 = Codec("video/VP8", 90000, 96, rtx_payload_type=97)
TS0 = 0xFFFF0000  # the source's timestamps wrap within the clip


def test_the_made_size_keeps_the_aspect_ratio_in_360_lines() -> None:
    assert made_size(1920, 1080) == (640, 360)
    assert made_size(1280, 720) == (640, 360)
    assert made_size(640, 480) == (480, 360)
    assert made_size(1366, 768) == (640, 360)
    # a source no taller than the made layer gets none
    assert made_size(640, 360) is None
    assert made_size(320, 240) is None
    assert made_size(0, 0) is None


def test_the_made_rate_fits_a_poor_link_and_is_below_the_source() -> None:
    assert made_bitrate(2_500_000) == MADE_BPS
    assert made_bitrate(600_000) == 240_000  # well below a light source
    assert made_bitrate(100_000) == MIN_BPS
    assert made_bitrate(0) == MADE_BPS  # not measured yet
    assert 300_000 <= MADE_BPS <= 450_000


def test_packets_are_put_back_in_order_and_a_lost_one_is_given_up() -> None:
    reorder = Reorder()
    out = []
    # across the 16-bit wrap, two swapped
    for seq in (65534, 0, 65535, 1):
        out += reorder.push(seq, 0, False, b"")
    assert [item[0] for item in out] == [65534, 65535, 65536, 65537]
    assert reorder.push(65535, 0, False, b"") == []  # a duplicate, too late
    # 2 is lost: what follows waits for it, then goes on without it
    held = []
    for seq in range(3, 2 + REORDER_PACKETS):
        held += reorder.push(seq, 0, False, b"")
    assert held == []
    held = reorder.push(2 + REORDER_PACKETS, 0, False, b"")
    assert [item[0] for item in held] == list(range(65539, 65538 + REORDER_PACKETS + 1))
    assert reorder.gaps == 1


def _h264_packets(frames: list[EncodedFrame]) -> list[list[bytes]]:
    packetizer = H264Packetizer(0x1234, H264.payload_type)
    packetizer.sequence_number = 65500
    return [packetizer.packetize(f.data, (TS0 + f.pts) & 0xFFFFFFFF)[0] for f in frames]


def _vp8_source_packets(frames: list[EncodedFrame]) -> list[list[bytes]]:
    seq = 65500
    out = []
    for index, frame in enumerate(frames):
        packets = []
        for payload, last in vp8_packets(frame.data, index):
            header = bytes((0x80, (0x80 if last else 0) | VP8.payload_type))
            header += (seq & 0xFFFF).to_bytes(2, "big")
            header += ((TS0 + frame.pts) & 0xFFFFFFFF).to_bytes(4, "big") + b"\0\0\x43\x21"
            packets.append(header + payload)
            seq += 1
        out.append(packets)
    return out


def _items(packets: list[bytes]) -> list[tuple[int, int, bool, bytes]]:
    items = []
    for data in packets:
        p = parse_rtp(data)
        items.append(
            (
                p.sequence_number,
                p.timestamp,
                bool(p.marker),
                p.data[p.payload_offset : p.payload_end],
            )
        )
    return items


def _decode(codec: str, packets: list[bytes]) -> list[av.VideoFrame]:
    framer = Framer(codec)
    items = [
        (i, p.timestamp, bool(p.marker), p.data[p.payload_offset : p.payload_end])
        for i, p in enumerate(parse_rtp(data) for data in packets)
    ]
    decoder = av.CodecContext.create(codec.lower(), "r")
    pictures = []
    for frame in framer.push(items) + framer.end():
        pictures += decoder.decode(av.Packet(frame.data))
    return pictures


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_a_720p_source_comes_out_at_360p_frame_for_frame(codec: str) -> None:
    if codec == "H264":
        clip = encode_h264_clip(3.0, width=1280, height=720, bitrate=2_000_000)
        source = _h264_packets(clip)
    else:
        clip = encode_vp8_clip(3.0, width=1280, height=720, bitrate=2_000_000)
        source = _vp8_source_packets(clip)
    maker = LayerMaker(codec, 102 if codec == "H264" else 96, send_time_id=3)
    made: list[bytes] = []
    sizes = []
    keyframes = []
    for index, packets in enumerate(source):
        items = _items(packets)
        if index == 10:
            items.reverse()  # a frame's packets out of order
        if index == 50:
            maker.ask_keyframe()  # a classroom asks
        before = maker.keyframes_out
        out = maker.push(items)
        if maker.keyframes_out > before:
            keyframes.append(index)
        made += out.packets
        if out.source_size:
            sizes.append((out.source_size, out.made_size))
    assert sizes == [((1280, 720), (640, 360))]
    pictures = _decode(codec, made)
    assert {(p.width, p.height) for p in pictures} == {(640, 360)}
    markers = [read_marker(p) for p in pictures]
    assert [m.index for m in markers if m] == list(range(len(clip)))
    parsed = [parse_rtp(data) for data in made]
    # one stream of its own, on the source's clock: each frame keeps its timestamp
    assert len({p.ssrc for p in parsed}) == 1
    for a, b in zip(parsed, parsed[1:], strict=False):
        assert (b.sequence_number - a.sequence_number) & 0xFFFF == 1
    stamps = sorted({p.timestamp for p in parsed}, key=lambda ts: (ts - TS0) & 0xFFFFFFFF)
    assert stamps == [(TS0 + f.pts) & 0xFFFFFFFF for f in clip]
    # abs-send-time in each packet, for the classroom's estimate
    assert all(p.extensions and p.extensions[0][1] == 3 for p in parsed)
    # keyframes: the first and the one asked for (then every 3 s), not one at each of the
    # source's (every second): each is a burst on the narrow links the layer is made for
    assert keyframes == [0, 50]
    bits = sum(len(d) for d in made) * 8 / 3.0
    assert bits < 1.5 * MADE_BPS, bits
    if codec == "H264":
        first = parsed[0]
        assert first.data[first.payload_offset] & 0x1F == 7  # SPS in-band before the keyframe


def test_a_source_too_small_to_scale_down_makes_nothing() -> None:
    maker = LayerMaker("H264", 102)
    out = maker.push(_items(_h264_packets(encode_h264_clip(0.5))[0]))  # 320x240
    assert out.too_small and not out.packets


def test_garbage_makes_nothing_and_breaks_nothing() -> None:
    rng = random.Random(7)
    for codec in ("H264", "VP8"):
        maker = LayerMaker(codec, 102)
        for seq in range(2000):
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
            out = maker.push([(seq & 0xFFFF, (seq // 5) * 3000, seq % 5 == 4, payload)])
            assert not out.packets
        if codec == "H264":
            # and a real stream after the garbage is made as usual
            maker.resync()
            made = []
            for packets in _h264_packets(encode_h264_clip(1.0, width=1280, height=720)):
                made += maker.push(_items(packets)).packets
            assert made


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_child_process_framing_round_trips_and_refuses_nonsense() -> None:
    items = [(65535, 0xFFFFFFFF, True, b"\x01\x02"), (0, 7, False, b"")]
    stream = io.BytesIO()
    write_batch(stream, items, True, False)
    stream.seek(0)
    assert read_batch(stream) == (items, True, False)
    out = MadeOutput([b"abc", b""], (1920, 1080), (640, 360), False, True)
    stream = io.BytesIO()
    write_output(stream, out)
    stream.seek(0)
    assert read_output(stream) == out
    for broken in (b"", b"\x00\x00", bytes(9) + b"\xff\xff\xff\xff"):
        with pytest.raises(LayerProcessError):
            read_output(io.BytesIO(broken))


def test_garbage_through_the_child_process_makes_nothing_and_it_goes_on() -> None:
    rng = random.Random(9)
    process = LayerProcess(codec="H264", payload_type=102)
    try:
        for batch in range(40):
            items = [
                (batch * 50 + i, batch * 3000, i == 49, rng.randbytes(rng.randrange(1, 1200)))
                for i in range(50)
            ]
            assert process.push(items).packets == []
        made = []
        for packets in _h264_packets(encode_h264_clip(1.0, width=1280, height=720)):
            made += process.push(_items(packets), resync=not made).packets
        assert made
    finally:
        process.close()


async def test_a_made_layer_whose_process_dies_ends_and_says_so() -> None:
    group, _ = _group()
    ended: list[str] = []
    made = MadeLayer(group, on_end=lambda layer, why: ended.append(why))
    await _wait(lambda: made.process_id is not None)
    assert made.process_id is not None
    await _wait(lambda: made.ready)
    os.kill(made.process_id, signal.SIGKILL)
    for packets in _h264_packets(encode_h264_clip(0.5, width=1280, height=720)):
        for data in packets:
            group.on_rtp(parse_rtp(data), time.time())
        await asyncio.sleep(0.01)
    await _wait(lambda: bool(ended))
    assert ended[0].startswith("failed") and made.closed
    assert made.layer not in group.layers and not group.closed
    await asyncio.to_thread(made.thread.join, 3.0)
    assert not made.thread.is_alive()


def _group(codec: Codec = H264) -> tuple[Producer, Upstream]:
    upstream = Upstream()
    return Producer("p/video", "camera", [codec], [], upstream, SenderClock()), upstream


async def _wait(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.01)


async def test_a_made_layer_joins_the_group_below_the_original_and_leaves_no_thread() -> None:
    group, upstream = _group()
    made = MadeLayer(group)
    layer = made.layer
    assert layer in group.layers and layer.made
    consumer = Consumer("c", "video", "camera", [replace(H264, payload_type=100)])
    consumer.attach(Link(), EgressParameters(ssrc=0xAAAA, rtx_ssrc=0xBBBB, extensions=[]))
    consumer.bind(group)
    await _wait(lambda: made.ready)
    clip = encode_h264_clip(2.0, width=1280, height=720, bitrate=2_000_000)
    for packets in _h264_packets(clip):
        for data in packets:
            group.on_rtp(parse_rtp(data), time.time())
        group.ranked_layers()  # measured as the router's checks do, over the last seconds
        await asyncio.sleep(0.01)
    await _wait(lambda: layer.meter.height == 360)
    # the source's own size is known now (H.264 packets do not tell it)
    assert (group.meter.width, group.meter.height) == (1280, 720)
    # ranked below the original, offered to the gates like any layer
    assert group.ranked_layers() == [group, layer]
    # the recording's choice is never a made layer, even while the original is not sending
    assert top_layer(group)[0] is group
    group.last_seen = time.time() - 5
    assert top_layer(group)[0] is group
    group.last_seen = time.time()
    options = options_of(group)
    assert [o.layer for o in options] == [group, layer]
    assert options[1].height == 360 and options[1].bps < options[0].bps
    assert describe(layer, time.time())["made"] is True
    assert describe(group, time.time())["made"] is False
    # timed as the source: a classroom's sender reports map both alike
    now = time.time()
    assert layer.rtp_timestamp_at(now) == group.rtp_timestamp_at(now)
    # a classroom moving to it counts as fed
    assert not made.fed
    consumer.choose_layer = lambda g: (g if layer.closed else layer, 3)
    consumer.reselect_layer()
    assert made.fed
    child = made.process_id
    assert child is not None and _running(child)
    made.close()
    await asyncio.to_thread(made.thread.join, 3.0)
    assert not made.thread.is_alive()
    assert not _running(child)  # the child process ended and was waited for
    assert layer not in group.layers and layer.closed
    assert consumer.layer is group  # it stays on the original
    consumer.close()


async def test_a_closed_source_stops_its_made_layer() -> None:
    group, _ = _group(VP8)
    made = MadeLayer(group)
    group.close()
    assert made.closed
    await asyncio.to_thread(made.thread.join, 3.0)
    assert not made.thread.is_alive()


async def test_made_layers_are_for_single_layer_cameras_only() -> None:
    single, _ = _group()
    assert single_layer(single)
    # simulcast: named layers, even before the second one arrives
    simulcast, upstream = _group(VP8)
    simulcast.rid = "h"
    assert not single_layer(simulcast)
    two, upstream = _group(VP8)
    two.add_layer(Producer("p/video/l", "camera", [VP8], [], upstream, SenderClock()))
    assert not single_layer(two)
    # a made layer does not count as one of the source's own
    MadeLayer(single).close()
    made = MadeLayer(single)
    assert single_layer(single)
    made.close()
    # the router's made layers: none while no classroom's picture is paused
    layers = MadeLayers("lesson", lambda: [single], idle_s=1.0)
    layers.check()
    assert layers.layers == {}
    layers.close()


class Follower:
    """A classroom's video consumer as the made layers see it: its kind and its gate."""

    kind = "video"

    def __init__(self, gate: SendGate) -> None:
        self.gate = gate

    def reselect_layer(self) -> None:
        pass


async def test_a_paused_classroom_starts_one_made_layer_that_stops_once_idle() -> None:
    group, _ = _group()
    clock = [100.0]
    layers = MadeLayers("lesson", lambda: [group], idle_s=30.0, now=lambda: clock[0])
    gates = [SendGate(), SendGate()]
    for gate in gates:
        group.follow(Follower(gate))  # type: ignore[arg-type]
    layers.check()
    assert layers.layers == {}  # every picture plays: nothing to make
    gates[0].video = False  # one classroom's gate pauses the camera's picture
    layers.check()
    made = layers.layers[group]
    gates[1].video = False
    layers.check()
    assert layers.layers == {group: made} and layers.made == 1  # one for the lesson
    # still needed while a classroom is paused for want of it, however long
    clock[0] += 100
    layers.check()
    assert not made.closed
    # nobody paused, nobody fed: it stops once idle for idle_s
    gates[0].video = gates[1].video = True
    layers.check()
    clock[0] += 29
    layers.check()
    assert not made.closed
    clock[0] += 2
    layers.check()
    assert made.closed and layers.layers == {}
    await asyncio.to_thread(made.thread.join, 3.0)
    assert not made.thread.is_alive()
    # a gate that does not adapt never asks for one
    static = SendGate(adaptive=False)
    static.video = False
    group.follow(Follower(static))  # type: ignore[arg-type]
    gates[0].video = True
    layers.check()
    assert layers.layers == {}
    layers.close()
