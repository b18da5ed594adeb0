"""A simulcast WHIP publisher built by hand, since aiortc sends one stream per track.

The offer is aiortc's, with what a browser adds for simulcast (``a=rid:… send``,
``a=simulcast:send``, the rid and repaired-rid header extensions) and without the SSRCs a
browser leaves out then. Once connected, three pre-encoded VP8 streams at three resolutions
are packetized (aiortc's VP8 payloader: 15-bit picture ids), each with its own SSRC, sequence
numbers and timestamps and its rid in a header extension, and sent on the one transport. Any
stream can be stopped and started again, as a browser does when its uplink changes.

A stream given standalone ``keyframes`` answers keyframe requests (PLI, FIR) for its own SSRC
as a live encoder does: its next frame is the keyframe of the same picture. An ``audio`` track
(Opus) is sent beside the video on the same session, by aiortc's own sender.
"""

from __future__ import annotations

import asyncio
import fractions
import random
import re
import struct
import time
from dataclasses import dataclass, field

import av
from aiortc import MediaStreamTrack, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, AnyRtcpPacket, RtcpPsfbPacket

from tests.support.media import EncodedFrame, encode_vp8_clip
from tests.support.peers import SignalingError, new_peer_connection, post_offer

RID_ID = 10
REPAIRED_RID_ID = 11
FPS = 30


class _Silent(MediaStreamTrack):
    """A track that never yields a frame: the streams are sent by hand."""

    kind = "video"

    async def recv(self) -> av.Packet:
        await asyncio.Event().wait()
        raise AssertionError


@dataclass
class Stream:
    rid: str
    width: int
    height: int
    bitrate: int
    frames: list[EncodedFrame]
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    active: bool = True
    sent_frames: int = 0
    # the same pictures as ``frames``, each a standalone keyframe (None: requests are ignored)
    keyframes: list[bytes] | None = None
    keyframe_requests: list[float] = field(default_factory=list)
    want_keyframe: bool = False


class _KeyframeAnswer:
    """Stands in the transport's RTCP routing for one stream's SSRC, as aiortc's sender does
    for its own: a PLI or FIR for that SSRC asks the stream for a keyframe."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.stream.keyframe_requests.append(time.monotonic())
            self.stream.want_keyframe = self.stream.keyframes is not None


def simulcast_offer(sdp: str, rids: list[str]) -> str:
    """aiortc's offer as a browser sending ``rids`` would make it."""
    out = []
    in_video = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        if in_video and (line.startswith("a=ssrc") or line.startswith("a=msid")):
            continue
        out.append(line)
        if in_video and line.startswith("a=mid:"):
            out.append(f"a=extmap:{RID_ID} urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id")
            out.append(
                f"a=extmap:{REPAIRED_RID_ID} urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
            )
            out.extend(f"a=rid:{rid} send" for rid in rids)
            out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(out)


class SimulcastPublisher:
    def __init__(self, streams: list[Stream], audio: MediaStreamTrack | None = None) -> None:
        self.streams = streams
        self.audio = audio
        self.pc = new_peer_connection()
        self.sender: RTCRtpSender | None = None
        self.answer = ""
        self._task: asyncio.Task[None] | None = None

    async def publish(self, whip_url: str, token: str) -> None:
        transceiver = self.pc.addTransceiver(_Silent(), direction="sendonly")
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name in ("VP8", "rtx")]
        )
        self.sender = transceiver.sender
        if self.audio is not None:
            sound = self.pc.addTransceiver(self.audio, direction="sendonly")
            sound.setCodecPreferences(
                [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.name == "opus"]
            )
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = simulcast_offer(self.pc.localDescription.sdp, [s.rid for s in self.streams])
        result = await post_offer(whip_url, token, offer)
        if result.status != 201:
            raise SignalingError(whip_url, result)
        self.answer = result.text
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer, type="answer"))
        deadline = time.monotonic() + 10
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise TimeoutError(f"publisher not connected: {self.pc.connectionState}")
            await asyncio.sleep(0.05)
        router = self.sender.transport._rtp_router
        for stream in self.streams:
            router.senders[stream.ssrc] = _KeyframeAnswer(stream)
        self._task = asyncio.create_task(self._send())

    def check(self) -> None:
        """Raise what stopped the sending, if anything did."""
        if self._task is not None and self._task.done():
            self._task.result()

    def stream(self, rid: str) -> Stream:
        return next(s for s in self.streams if s.rid == rid)

    async def _send(self) -> None:
        assert self.sender is not None
        transport = self.sender.transport
        codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
        payload_type = int(re.search(r"a=rtpmap:(\d+) VP8/90000", self.answer).group(1))  # type: ignore[union-attr]
        # the send time on every packet, as browsers send it: what a classroom's REMB is
        # measured from once the server re-stamps it
        found = re.search(r"a=extmap:(\d+) [^\r\n]*abs-send-time", self.answer)
        send_time_id = int(found.group(1)) if found else 0
        state = {
            s.rid: (get_encoder(codec), random.getrandbits(16), random.getrandbits(32))
            for s in self.streams
        }
        started = time.monotonic()
        index = 0
        while True:
            for stream in self.streams:
                if not stream.active:
                    continue
                encoder, seq, base = state[stream.rid]
                at = index % len(stream.frames)
                data = stream.frames[at].data
                if stream.want_keyframe and stream.keyframes is not None:
                    stream.want_keyframe = False
                    data = stream.keyframes[at]
                packet = av.Packet(data)
                packet.pts = index * 3000
                packet.time_base = fractions.Fraction(1, 90000)
                payloads, _ = encoder.pack(packet)
                for i, payload in enumerate(payloads):
                    rid = stream.rid.encode()
                    element = bytes([(RID_ID << 4) | (len(rid) - 1)]) + rid
                    if send_time_id:
                        stamp = int(time.time() * (1 << 18)) & 0xFFFFFF
                        element += bytes([(send_time_id << 4) | 2]) + stamp.to_bytes(3, "big")
                    element += bytes(-len(element) % 4)
                    header = struct.pack(
                        "!BBHIIHH",
                        0x90,
                        payload_type | (0x80 if i == len(payloads) - 1 else 0),
                        seq,
                        (base + index * 3000) & 0xFFFFFFFF,
                        stream.ssrc,
                        0xBEDE,
                        len(element) // 4,
                    )
                    seq = (seq + 1) & 0xFFFF
                    await transport._send_rtp(header + element + payload)
                stream.sent_frames += 1
                state[stream.rid] = (encoder, seq, base)
            index += 1
            delay = started + index / FPS - time.monotonic()
            await asyncio.sleep(max(delay, 0))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.pc.close()


def three_streams(seconds: float = 4.0, order: tuple[str, ...] = ("h", "m", "l")) -> list[Stream]:
    """1280x720, 640x360 and 320x180 (keyframe every second), named in ``order``."""
    sizes = [(1280, 720, 1_500_000), (640, 360, 500_000), (320, 180, 150_000)]
    return [
        Stream(rid, w, h, rate, encode_vp8_clip(seconds, FPS, w, h, FPS, rate))
        for rid, (w, h, rate) in zip(order, sizes, strict=True)
    ]
