"""The benchmark's peers: an origin that plays a pre-encoded clip and honours keyframe
requests, and sink classrooms that do everything a receiver does on the wire (ICE, DTLS,
SRTP, receiver reports, NACK) but do not decode, except a sample that proves the stream.

These are load clients, not the server: they hook aiortc's receiver and sender in the few
places named below, to count instead of decode and to see keyframe requests.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aioice.ice
import av
import pylibsrtp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket, is_rtcp

from media.nack import LossTracker
from media.rtp_packet import RtpError, parse_rtp
from media.sender_clock import unix_to_ntp
from tests.support.media import EncodedFrame
from tests.support.simulcast import SimulcastPublisher, Stream

from .clip import AUDIO_RATE, FPS, OPUS_FRAME, VideoClip


def loopback_only() -> None:
    """aioice skips 127.0.0.1 when gathering; in the benchmark's namespace it is all there is."""
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def post(url: str, token: str, sdp: str) -> tuple[int, str, str]:
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=sdp, headers=headers) as r,
    ):
        return r.status, await r.text(), r.headers.get("Location", "")


# --- origin ---------------------------------------------------------------------------------


class ClipTrack(MediaStreamTrack):
    """Plays encoded frames in real time, looping with increasing timestamps; a keyframe
    request makes the next frame a keyframe."""

    def __init__(self, kind: str, frames: list[bytes], keyframes: list[bytes] | None) -> None:
        super().__init__()
        self.kind = kind
        self.frames = frames
        self.keyframes = keyframes
        self.rate = 90000 if kind == "video" else AUDIO_RATE
        self.step = self.rate // FPS if kind == "video" else OPUS_FRAME
        self.time_base = fractions.Fraction(1, self.rate)
        self.sent = 0
        self.keyframe_requests: list[float] = []
        self._want_keyframe = False
        self._start: float | None = None

    def request_keyframe(self) -> None:
        self.keyframe_requests.append(time.monotonic())
        self._want_keyframe = True

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        n = self.sent
        delay = self._start + n * self.step / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        index = n % len(self.frames)
        data = self.frames[index]
        if self._want_keyframe and self.keyframes is not None:
            self._want_keyframe = False
            data = self.keyframes[index]
        packet = av.Packet(data)
        packet.pts = packet.dts = n * self.step
        packet.time_base = self.time_base
        self.sent += 1
        return packet


ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
# libwebrtc paces video at 2.5 times its target bitrate (PacingController's default)
PACE_MULTIPLIER = 2.5


class Pacer:
    """Lets the origin's video leave as a browser's does: spread at ``PACE_MULTIPLIER`` times
    the media bitrate instead of one burst per frame, each packet stamped with abs-send-time
    as it leaves (libwebrtc's pacer does both). Audio, RTCP and retransmissions are not held.

    aiortc itself sends a frame's packets back to back, as FFmpeg's WHIP muxer does; with
    ``enabled`` off the origin behaves that way again. Simulcast: every layer's SSRC in
    ``ssrcs`` and their bitrates summed, one queue for all, as libwebrtc paces them."""

    def __init__(
        self, dtls: Any, ssrcs: Iterable[int], bitrate: float, abs_send_time_id: int | None
    ) -> None:
        self.enabled = True
        self._send = dtls._send_rtp
        self._ssrcs = {ssrc.to_bytes(4, "big") for ssrc in ssrcs}
        self._rate = PACE_MULTIPLIER * bitrate / 8  # bytes per second
        self._abs_send_time_id = abs_send_time_id
        self._next = 0.0
        dtls._send_rtp = self.send

    async def send(self, data: bytes) -> None:
        if self.enabled and not is_rtcp(data) and data[8:12] in self._ssrcs:
            loop = asyncio.get_running_loop()
            now = loop.time()
            at = max(now, self._next)
            self._next = at + len(data) / self._rate
            if at - now > 0.001:
                await asyncio.sleep(at - now)
            data = self._stamp(data)
        await self._send(data)

    def _stamp(self, data: bytes) -> bytes:
        if self._abs_send_time_id is None:
            return data
        try:
            packet = parse_rtp(data)
        except RtpError:
            return data
        for pos, ext_id in packet.extensions:
            if ext_id == self._abs_send_time_id and not packet.two_byte_extensions:
                stamp = (unix_to_ntp(time.time()) >> 14) & 0xFFFFFF
                return data[: pos + 1] + stamp.to_bytes(3, "big") + data[pos + 4 :]
        return data


def _extension_id(sdp: str, uri: str) -> int | None:
    for line in sdp.splitlines():
        if line.startswith("a=extmap:") and line.split()[-1] == uri:
            return int(line.split()[0][len("a=extmap:") :].split("/")[0])
    return None


@dataclass
class Origin:
    pc: RTCPeerConnection
    video: ClipTrack
    audio: ClipTrack
    location: str
    pacer: Pacer

    async def close(self) -> None:
        self.video.stop()
        self.audio.stop()
        await self.pc.close()


async def publish(whip_url: str, token: str, clip: VideoClip, opus: list[bytes]) -> Origin:
    """Publish ``clip`` and ``opus`` over WHIP, the video paced as a browser paces it."""
    pc = new_pc()
    video = ClipTrack("video", clip.frames, clip.keyframes)
    audio = ClipTrack("audio", opus, None)
    for track, mime in ((video, f"video/{clip.codec}"), (audio, "audio/opus")):
        transceiver = pc.addTransceiver(track, direction="sendonly")
        capabilities = RTCRtpSender.getCapabilities(track.kind).codecs
        preferred = [c for c in capabilities if c.mimeType.lower() == mime.lower()]
        if track.kind == "video" and clip.codec == "H264":
            preferred = [c for c in preferred if c.parameters.get("packetization-mode") == "1"][:1]
        rtx = [c for c in capabilities if c.mimeType.lower().endswith("/rtx")]
        transceiver.setCodecPreferences(preferred[:1] + rtx)
        if track is video:
            # aiortc's sender answers PLI/FIR by calling this; the clip plays a keyframe next
            transceiver.sender._send_keyframe = video.request_keyframe
    await pc.setLocalDescription(await pc.createOffer())
    status, answer, location = await post(whip_url, token, pc.localDescription.sdp)
    if status != 201:
        await pc.close()
        raise RuntimeError(f"WHIP publish failed: {status} {answer[:200]}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    sender = next(t.sender for t in pc.getTransceivers() if t.kind == "video")
    pacer = Pacer(
        sender.transport, [sender._ssrc], clip.bitrate, _extension_id(answer, ABS_SEND_TIME)
    )
    return Origin(pc, video, audio, location, pacer)


@dataclass
class SimulcastOrigin:
    publisher: SimulcastPublisher
    audio: ClipTrack
    pacer: Pacer

    @property
    def streams(self) -> list[Stream]:
        return self.publisher.streams

    async def close(self) -> None:
        self.audio.stop()
        await self.publisher.close()


async def publish_simulcast(
    whip_url: str, token: str, clips: list[tuple[str, int, int, VideoClip]], opus: list[bytes]
) -> SimulcastOrigin:
    """Publish each ``(rid, width, height, clip)`` as one simulcast layer (best first), with
    ``opus``, on one WHIP session, paced as a browser paces all its layers, every layer
    answering keyframe requests for its own SSRC."""
    streams = [
        Stream(
            rid,
            width,
            height,
            round(clip.bitrate),
            [EncodedFrame(d, i * 90000 // FPS, i == 0, i) for i, d in enumerate(clip.frames)],
            keyframes=clip.keyframes,
        )
        for rid, width, height, clip in clips
    ]
    audio = ClipTrack("audio", opus, None)
    publisher = SimulcastPublisher(streams, audio)
    await publisher.publish(whip_url, token)
    assert publisher.sender is not None
    pacer = Pacer(
        publisher.sender.transport,
        [s.ssrc for s in streams],
        sum(clip.bitrate for *_, clip in clips),
        _extension_id(publisher.answer, ABS_SEND_TIME),
    )
    return SimulcastOrigin(publisher, audio, pacer)


# --- sink classrooms ------------------------------------------------------------------------


def _vp8_keyframe(payload: bytes) -> bool:
    if not payload or not payload[0] & 0x10 or payload[0] & 0x07:
        return False
    pos = 1
    if payload[0] & 0x80:
        ext = payload[1]
        pos = 2
        if ext & 0x80:
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:
            pos += 1
        if ext & 0x30:
            pos += 1
    return pos < len(payload) and not payload[pos] & 0x01


@dataclass
class SinkStats:
    video_packets: int = 0
    audio_packets: int = 0
    frames: int = 0  # video packets with the marker bit: frames completely sent
    retransmissions: int = 0
    lost: int = 0  # still missing at the end of the window
    keyframe_first: bool | None = None
    first_video_at: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    decoded: int = 0


class Sink:
    """One receiving classroom that counts what it gets instead of decoding it."""

    def __init__(self, name: str, decode: bool = False) -> None:
        self.name = name
        self.decode = decode
        self.pc = new_pc()
        self.stats = SinkStats()
        self.joined_at = 0.0
        self.location = ""
        self._losses = LossTracker()
        self._tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        self.stats = SinkStats(
            keyframe_first=self.stats.keyframe_first, first_video_at=self.stats.first_video_at
        )
        self._losses = LossTracker()

    async def join(self, whep_url: str, token: str) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.joined_at = time.monotonic()
        status, answer, self.location = await post(
            f"{whep_url}?name={self.name}", token, self.pc.localDescription.sdp
        )
        if status != 201:
            raise RuntimeError(f"WHEP join failed: {status} {answer[:200]}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        handlers = {}
        for transceiver in self.pc.getTransceivers():
            handlers[transceiver.receiver] = self._hook(transceiver.receiver, transceiver.kind)
        if not self.decode:
            self._shortcut(self.pc.getTransceivers()[0].receiver.transport, handlers)

    def _shortcut(self, dtls: Any, handlers: dict[Any, Any]) -> None:
        """Decrypt and count RTP right where the datagram arrives, skipping aiortc's queue and
        coroutines: a hundred sinks must cost less than the server they measure. RTCP, DTLS
        and STUN still take aiortc's path."""
        connection = dtls.transport._connection
        deliver = connection.data_received
        router = dtls._rtp_router
        extensions = dtls._rtp_header_extensions_map

        def data_received(data: bytes, component: int) -> None:
            srtp = dtls._rx_srtp
            if srtp is None or not 127 < data[0] < 192 or 192 <= data[1] <= 208:
                deliver(data, component)
                return
            try:
                packet = RtpPacket.parse(srtp.unprotect(data), extensions)
            except (ValueError, pylibsrtp.Error):
                return
            receiver = router.route_rtp(packet)
            if receiver is not None:
                handlers[receiver](packet)

        connection.data_received = data_received

    def _hook(self, receiver: Any, kind: str) -> Any:
        """Replace aiortc's per-packet receive (depacketize, jitter buffer, decode) with
        counting, keeping what the server must see: receiver reports and NACKs. Returns the
        synchronous counting function."""
        original = receiver._handle_rtp_packet
        statistics: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams
        nack = NackGenerator()
        rate = 90000 if kind == "video" else AUDIO_RATE
        media_ssrc: list[int] = []

        def count(packet: Any) -> None:
            stats = self.stats
            if not self.decode:
                stream = statistics.get(packet.ssrc)
                if stream is None:
                    stream = statistics[packet.ssrc] = StreamStatistics(rate)
                stream.add(packet)
            if kind == "audio":
                stats.audio_packets += 1
                return
            if media_ssrc and packet.ssrc != media_ssrc[0]:  # RTX
                stats.retransmissions += 1
                seq = int.from_bytes(packet.payload[:2], "big")
                self._losses.missing.discard(seq)
                if not self.decode:
                    nack.missing.discard(seq)
                return
            if not media_ssrc:
                media_ssrc.append(packet.ssrc)
                stats.keyframe_first = _vp8_keyframe(packet.payload) or packet.payload[:1] in (
                    b"\x67",
                    b"\x78",
                    b"\x65",
                    b"\x7c",
                )
            if stats.first_video_at is None:
                stats.first_video_at = time.monotonic()
            stats.video_packets += 1
            stats.frames += packet.marker
            self._losses.add(packet.sequence_number)
            if not self.decode and nack.add(packet):
                asyncio.ensure_future(receiver._send_rtcp_nack(packet.ssrc, sorted(nack.missing)))
            abs_send_time = packet.extensions.abs_send_time
            if abs_send_time is not None and stats.video_packets % 4 == 0:
                now = (unix_to_ntp(time.time()) >> 14) & 0xFFFFFF
                stats.latencies_ms.append(((now - abs_send_time) & 0xFFFFFF) / 262.144)

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            if self.decode:
                await original(packet, arrival_time_ms)
            count(packet)

        receiver._handle_rtp_packet = handle
        if self.decode and kind == "video":
            self._tasks.append(asyncio.ensure_future(self._pull(receiver.track)))
        return count

    async def _pull(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            self.stats.decoded += 1

    def go_silent(self) -> None:
        """From now on nothing leaves this classroom, not even the goodbye of ``close()``: it
        vanishes, as a classroom PC switched off at the wall does."""
        for transceiver in self.pc.getTransceivers():
            connection = transceiver.receiver.transport.transport._connection
            for protocol in connection._protocols:
                protocol.transport.sendto = lambda *args: None

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "name": self.name,
            "video_packets": s.video_packets,
            "audio_packets": s.audio_packets,
            "frames": s.frames,
            "retransmissions": s.retransmissions,
            "lost": len(self._losses.missing),
            "keyframe_first": s.keyframe_first,
            "join_s": None if s.first_video_at is None else s.first_video_at - self.joined_at,
            "latencies_ms": s.latencies_ms,
            "decoded": s.decoded if self.decode else None,
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
