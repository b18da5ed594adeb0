"""A classroom that abuses its own feedback channel (NACK and PLI floods, a malformed REMB)
spoils nothing: real aiortc peers over WHIP/WHEP against a server process, loopback only.
The flooding classroom sends crafted RTCP through its own SRTP session, as an attacker with a
join link can."""

from __future__ import annotations

import asyncio
import struct
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.server import Server, start_server
from tests.support.link_emulator import LinkEmulator, Profile
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Classroom, Publisher, whep_subscribe, whip_publish

FPS = 30
RTCP_RTPFB = 205
RTCP_PSFB = 206


@pytest.fixture(scope="module")
def clip() -> tuple[list, list]:  # type: ignore[type-arg]
    return encode_vp8_clip(4.0, fps=FPS, gop=FPS), encode_opus_clip(4.0)


@pytest.fixture
async def closing() -> AsyncIterator[list]:  # type: ignore[type-arg]
    peers: list = []  # type: ignore[type-arg]
    yield peers
    for peer in peers:
        await peer.close()


def _scrape(server: Server) -> dict[str, float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def scrape(server: Server) -> dict[str, float]:
    return await asyncio.to_thread(_scrape, server)


def rtcp(packet_type: int, fmt: int, payload: bytes) -> bytes:
    assert len(payload) % 4 == 0
    return struct.pack("!BBH", 0x80 | fmt, packet_type, len(payload) // 4) + payload


@dataclass
class Tap:
    """What one classroom's video receiver got, before aiortc's jitter buffer: media packets
    by sequence number (with their arrival and payload size) and retransmissions (RTX)."""

    media_ssrc: int | None = None
    rtx_payload_types: set[int] = field(default_factory=set)
    arrivals: dict[int, tuple[float, int]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    rtx_packets: int = 0
    rtx_bytes: int = 0  # the original payloads they carried

    def recent(self, seconds: float) -> list[int]:
        now = time.monotonic()
        found = []
        for seq in reversed(self.order[-64:]):
            if now - self.arrivals[seq][0] > seconds:
                break
            found.append(seq)
        return found


def tap_video(classroom: Classroom) -> tuple[Tap, Any]:
    """Record what the classroom's (first) video receiver gets; returns the tap and the
    receiver."""
    transceiver = next(t for t in classroom.pc.getTransceivers() if t.kind == "video")
    receiver = transceiver.receiver
    tap = Tap()
    codecs = receiver._RTCRtpReceiver__codecs
    handle = receiver._handle_rtp_packet

    async def tapped(packet: Any, arrival_time_ms: int) -> None:
        if not tap.rtx_payload_types:
            tap.rtx_payload_types = {
                pt for pt, c in codecs.items() if c.mimeType.lower() == "video/rtx"
            }
        if packet.payload_type in tap.rtx_payload_types:
            tap.rtx_packets += 1
            tap.rtx_bytes += len(packet.payload) - 2
        else:
            tap.media_ssrc = packet.ssrc
            if packet.sequence_number not in tap.arrivals:
                tap.order.append(packet.sequence_number)
            tap.arrivals[packet.sequence_number] = (time.monotonic(), len(packet.payload))
        await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = tapped
    return tap, receiver


async def tapped_video(classroom: Classroom) -> tuple[Tap, Any]:
    """``tap_video``, once the tap has seen the stream."""
    tap, receiver = tap_video(classroom)
    for _ in range(250):
        if tap.media_ssrc is not None:
            return tap, receiver
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{classroom.name} got no video")


async def send_rtcp(receiver: Any, data: bytes) -> None:
    """Send raw RTCP through the classroom's own SRTP session."""
    await receiver.transport._send_rtp(data)


def nack(sender_ssrc: int, media_ssrc: int, fcis: list[tuple[int, int]]) -> bytes:
    payload = struct.pack("!LL", sender_ssrc, media_ssrc)
    payload += b"".join(struct.pack("!HH", pid, blp) for pid, blp in fcis)
    return rtcp(RTCP_RTPFB, RTCP_RTPFB_NACK, payload)


@dataclass
class Feedback:
    """The RTCP feedback a publisher's video sender gets from the server."""

    nacked: Counter[int] = field(default_factory=Counter)
    keyframe_requests: list[float] = field(default_factory=list)


def tap_feedback(publisher: Publisher) -> Feedback:
    transceiver = next(t for t in publisher.pc.getTransceivers() if t.kind == "video")
    sender = transceiver.sender
    feedback = Feedback()
    handle = sender._handle_rtcp_packet

    async def tapped(packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            feedback.nacked.update(seq & 0xFFFF for seq in packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            feedback.keyframe_requests.append(time.monotonic())
        await handle(packet)

    sender._handle_rtcp_packet = tapped
    return feedback


def lose_upstream(publisher: Publisher, every: int) -> set[int]:
    """Make the publisher's video packets whose sequence number is a multiple of ``every``
    never reach the server, retransmissions included. Returns those it held back."""
    transceiver = next(t for t in publisher.pc.getTransceivers() if t.kind == "video")
    sender = transceiver.sender
    dtls = sender.transport
    send_rtp: Callable[[bytes], Awaitable[None]] = dtls._send_rtp
    held_back: set[int] = set()

    async def lossy(data: bytes) -> None:
        if len(data) >= 14 and not 192 <= data[1] <= 223:
            ssrc = struct.unpack_from("!L", data, 8)[0]
            seq = None
            if ssrc == sender._ssrc:
                seq = struct.unpack_from("!H", data, 2)[0]
            elif ssrc == sender._rtx_ssrc:
                header = 12 + 4 * (data[0] & 0x0F)
                if data[0] & 0x10:
                    header += 4 + 4 * struct.unpack_from("!H", data, header + 2)[0]
                seq = struct.unpack_from("!H", data, header)[0]
            if seq is not None and seq % every == 0:
                held_back.add(seq)
                return
        await send_rtp(data)

    dtls._send_rtp = lossy
    return held_back


async def publish(server: Server, title: str, clip: tuple[list, list]) -> tuple[dict, Publisher]:  # type: ignore[type-arg]
    lesson = server.create_lesson(title)
    video, audio = clip
    publisher = await whip_publish(
        lesson["whip_url"], lesson["whip_token"], video=video, audio=audio
    )
    await publisher.wait_connected()
    return lesson, publisher


async def join(lesson: dict, **kwargs: Any) -> Classroom:  # type: ignore[type-arg]
    classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], **kwargs)
    await classroom.wait_connected()
    return classroom


@pytest.fixture(scope="module")
def unadapted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that never holds a classroom back: a flood that names every packet just sent
    reads as a link losing all of it, and with adaptation the flooder's own video pauses (its
    flood then has nothing left to name); the answering of NACKs is what is tried here."""
    instance = start_server(tmp_path_factory.mktemp("server"), "--no-adaptation")
    yield instance
    instance.stop()


async def test_nack_flood_is_answered_once_per_round_trip(
    unadapted_server: Server,
    clip: tuple[list, list],  # type: ignore[type-arg]
    closing: list,  # type: ignore[type-arg]
) -> None:
    server = unadapted_server
    lesson, publisher = await publish(server, "NACK flood", clip)
    closing.append(publisher)
    clean = await join(lesson, name="clean")
    closing.append(clean)
    # the flooder's own link has a round trip of 100 ms, and loses nothing
    link = LinkEmulator(Profile("flood", rtt=0.1))
    flooder = await join(lesson, name="flooder", link=link)
    closing.append(flooder)
    tap, receiver = await tapped_video(flooder)
    await clean.wait_for_frames(1, timeout=20)
    await flooder.wait_for_frames(1, timeout=20)
    await asyncio.sleep(1.5)  # receiver reports have given the server the round trip
    assert tap.media_ssrc is not None
    named: set[int] = set()
    entries = 0
    before = await scrape(server)
    rtx_before = tap.rtx_packets, tap.rtx_bytes
    assert publisher.video_track is not None
    sent_before = publisher.video_track.frames_sent
    clean_before = clean.video_frames
    started = time.monotonic()
    try:
        # twenty NACKs a second, each naming the packets of the last 80 ms 250 times over
        while time.monotonic() - started < 5:
            recent = tap.recent(0.08)
            if recent:
                fcis = [(recent[i % len(recent)], 0) for i in range(250)]
                await send_rtcp(receiver, nack(0x51, tap.media_ssrc, fcis))
                named.update(recent)
                entries += len(fcis)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last retransmissions land
        after = await scrape(server)
    finally:
        link.close()
    sent = publisher.video_track.frames_sent - sent_before
    resent_packets = tap.rtx_packets - rtx_before[0]
    resent_bytes = tap.rtx_bytes - rtx_before[1]
    named_bytes = sum(tap.arrivals[seq][1] for seq in named)
    answered = after["syncclass_nacks_answered_total"] - before["syncclass_nacks_answered_total"]
    # (a loaded machine sends fewer than the hundred NACKs a steady loop would)
    assert len(named) > 100 and entries >= 10_000, (len(named), entries)
    assert resent_bytes <= 2 * named_bytes, (resent_bytes, named_bytes, resent_packets, entries)
    assert answered <= 2 * len(named), (answered, len(named))
    suppressed = after.get("syncclass_nacks_suppressed_total", 0.0) - before.get(
        "syncclass_nacks_suppressed_total", 0.0
    )
    assert suppressed >= entries - 2 * len(named), (suppressed, entries)
    assert clean.video_frames - clean_before >= 0.95 * sent - 2
    assert flooder.pc.connectionState == "connected"


async def test_nacks_for_packets_the_server_never_had_reach_the_teacher_once(
    server: Server,
    clip: tuple[list, list],  # type: ignore[type-arg]
    closing: list,  # type: ignore[type-arg]
) -> None:
    lesson, publisher = await publish(server, "Holes upstream", clip)
    closing.append(publisher)
    held_back = lose_upstream(publisher, every=25)
    feedback = tap_feedback(publisher)
    rooms = [await join(lesson, name=f"room-{i}") for i in range(2)]
    closing.extend(rooms)
    flooder = await join(lesson, name="flooder")
    closing.append(flooder)
    tap, receiver = await tapped_video(flooder)
    for room in (*rooms, flooder):
        await room.wait_for_frames(1, timeout=20)
    started = time.monotonic()
    # the flooder names every hole in what it got, 20 times over, 20 times a second; the
    # ordinary classrooms NACK the holes as aiortc does, again with every new gap
    while time.monotonic() - started < 4:
        seqs = sorted(tap.arrivals)
        if seqs and tap.media_ssrc is not None:
            newest = tap.order[-1]
            holes = [
                (newest - d) & 0xFFFF
                for d in range(1, 120)
                if (newest - d) & 0xFFFF not in tap.arrivals
            ]
            if holes:
                fcis = [(h, 0) for h in holes] * 20
                await send_rtcp(receiver, nack(0x52, tap.media_ssrc, fcis[:300]))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    asked = {seq: n for seq, n in feedback.nacked.items() if seq in held_back}
    assert len(asked) >= 5, (asked, len(held_back))
    # once when the server found the gap, and at most once more on the classrooms' behalf
    assert max(asked.values()) <= 2, sorted(asked.items())
    # nothing else was asked for: everything else came through
    assert set(feedback.nacked) <= held_back, set(feedback.nacked) - held_back


async def test_pli_flood_is_throttled_upstream(
    server: Server,
    clip: tuple[list, list],  # type: ignore[type-arg]
    closing: list,  # type: ignore[type-arg]
) -> None:
    lesson, publisher = await publish(server, "PLI flood", clip)
    closing.append(publisher)
    feedback = tap_feedback(publisher)
    clean = await join(lesson, name="clean")
    flooder = await join(lesson, name="flooder")
    closing.extend([clean, flooder])
    tap, receiver = await tapped_video(flooder)
    await clean.wait_for_frames(1, timeout=20)
    await flooder.wait_for_frames(1, timeout=20)
    assert tap.media_ssrc is not None
    started = time.monotonic()
    clean_before = clean.video_frames
    assert publisher.video_track is not None
    sent_before = publisher.video_track.frames_sent
    pli = rtcp(RTCP_PSFB, RTCP_PSFB_PLI, struct.pack("!LL", 0x53, tap.media_ssrc))
    fir = rtcp(RTCP_PSFB, RTCP_PSFB_FIR, struct.pack("!LLLL", 0x53, 0, tap.media_ssrc, 0))
    track = publisher.video_track
    own: list[float] = []  # when the clip's own keyframes left (one a second; PacedTrack
    # cannot honour a request)

    async def watch_keyframes() -> None:
        seen = track.keyframes_sent
        while True:
            await asyncio.sleep(0.005)
            if track.keyframes_sent != seen:
                seen = track.keyframes_sent
                own.append(time.monotonic())

    watcher = asyncio.create_task(watch_keyframes())
    sent = 0
    try:
        while time.monotonic() - started < 5:
            await send_rtcp(receiver, pli + fir + pli)
            sent += 3
            await asyncio.sleep(0.003)
    finally:
        watcher.cancel()
    window = time.monotonic() - started
    frames_sent = track.frames_sent - sent_before
    requests = [t for t in feedback.keyframe_requests if t >= started]
    assert sent > 1000 and len(own) >= 4
    assert len(requests) <= 2 * window + 1, (len(requests), window)
    # nor is the teacher asked just after a keyframe of its own (unless the two crossed on
    # the way), so that it makes two keyframes a second at most in all
    after_own = [r - max(k for k in own if k <= r) for r in requests if own[0] <= r]
    assert all(d >= 0.4 or d < 0.01 for d in after_own), after_own
    assert len(requests) + len(own) <= 2 * window + 3, (len(requests), len(own), window)
    gaps = [b - a for a, b in zip(requests[:-1], requests[1:], strict=True)]
    assert all(g >= 0.45 for g in gaps), gaps
    assert clean.video_frames - clean_before >= 0.95 * frames_sent - 2


async def test_malformed_remb_is_dropped_and_the_session_lives_on(
    server: Server,
    clip: tuple[list, list],  # type: ignore[type-arg]
    closing: list,  # type: ignore[type-arg]
) -> None:
    lesson, publisher = await publish(server, "Bad REMB", clip)
    closing.append(publisher)
    classroom = await join(lesson, name="remb")
    closing.append(classroom)
    tap, receiver = await tapped_video(classroom)
    await classroom.wait_for_frames(10, timeout=20)
    assert tap.media_ssrc is not None
    # REMB that claims five SSRCs and carries one; then one whose FCI is cut short
    claims_more = struct.pack("!LL", 0x54, 0) + b"REMB" + bytes([5, 0x04, 0x10, 0x00])
    claims_more += struct.pack("!L", tap.media_ssrc)
    await send_rtcp(receiver, rtcp(RTCP_PSFB, 15, claims_more))
    short = struct.pack("!LL", 0x54, 0) + b"REMB"
    await send_rtcp(receiver, rtcp(RTCP_PSFB, 15, short))
    # and a good REMB and a receiver report in the same compound packet as a bad one
    good = struct.pack("!LL", 0x54, 0) + b"REMB" + bytes([1, 0x04, 0x10, 0x00])
    good += struct.pack("!L", tap.media_ssrc)
    await send_rtcp(receiver, rtcp(RTCP_PSFB, 15, claims_more) + rtcp(RTCP_PSFB, 15, good))
    await asyncio.sleep(0.5)
    before = classroom.video_frames
    await asyncio.sleep(2)
    assert classroom.video_frames - before >= 1.5 * FPS * 0.7, "the session stopped"
    assert classroom.pc.connectionState == "connected"
