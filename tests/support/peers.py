"""WHIP publishers and WHEP subscribers built on aiortc, for loopback-only tests.

Both sides speak plain WHIP/WHEP: one ``POST`` of a complete SDP offer (all candidates inside,
no trickle) with ``Authorization: Bearer <token>``, a ``201 Created`` answer with a
``Location`` header, and a ``DELETE`` on that URL to leave.

Tests run in a network namespace where only ``lo`` exists; :func:`use_loopback_only` makes
aioice gather 127.0.0.1, which it skips by default.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aioice.ice
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCapabilities, RTCRtpCodecCapability
from yarl import URL

from .link_emulator import LinkEmulator
from .media import EncodedFrame, PacedTrack, PlaybackClock, read_marker

logger = logging.getLogger(__name__)

HTTP_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# Network


def _loopback_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    return ["127.0.0.1"]


def use_loopback_only() -> None:
    """Make every aioice connection in this process gather only 127.0.0.1 (idempotent).

    aioice's ``get_host_addresses`` deliberately leaves out 127.0.0.1, so in a namespace with
    only ``lo`` no candidate would be gathered at all.
    """
    aioice.ice.get_host_addresses = _loopback_addresses


def new_peer_connection(
    ice_servers: Sequence[RTCIceServer] = (), *, relay_only: bool = False
) -> RTCPeerConnection:
    """Return an ``RTCPeerConnection`` that gathers only loopback, with no STUN/TURN servers
    unless ``ice_servers`` names some; ``relay_only`` gathers relayed candidates alone
    (``iceTransportPolicy: "relay"``), as a browser that only reaches a TURN server."""
    use_loopback_only()
    # iceServers=None would make aiortc add a public STUN server. One transport for every
    # m-line, as a browser bundles them: aiortc's "balanced" policy gives audio its own
    # candidate, and a second audio m-line is then left without a transport.
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCPeerConnection(
        RTCConfiguration(
            iceServers=list(ice_servers),
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            iceTransportPolicy=policy,
        )
    )


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class HttpResult:
    """Status, headers and body of one WHIP/WHEP HTTP exchange."""

    status: int
    headers: Mapping[str, str]
    text: str
    location: str | None
    """The ``Location`` header resolved against the request URL, if there was one."""
    hops: tuple[str, ...] = ()
    """The URLs a 307/308 sent the offer to, in order (the last answered)."""


class SignalingError(RuntimeError):
    """The WHIP/WHEP endpoint did not answer ``201 Created``."""

    def __init__(self, url: str, result: HttpResult) -> None:
        super().__init__(f"POST {url} -> {result.status}: {result.text[:300]!r}")
        self.url = url
        self.result = result

    @property
    def status(self) -> int:
        return self.result.status


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


async def post_offer(
    url: str,
    token: str | None,
    sdp: str,
    *,
    content_type: str = "application/sdp",
    http_timeout: float = HTTP_TIMEOUT,
    follow: bool = True,
) -> HttpResult:
    """POST an SDP offer to a WHIP/WHEP endpoint and return whatever came back.

    ``token=None`` sends no ``Authorization`` header; ``content_type`` can be changed to test
    how the server rejects bad requests. Never raises on an HTTP error status. A 307/308
    (a server sending the session to another, RFC 9725 §4.5) is followed with the same offer
    and token, at most 3 times, unless ``follow`` is false; ``hops`` lists where it went.
    """
    headers = {"Content-Type": content_type, **_auth_headers(token)}
    client_timeout = aiohttp.ClientTimeout(total=http_timeout)
    hops: list[str] = []
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while True:
            # followed here, not by aiohttp, which drops the token when the host changes
            async with session.post(
                url, data=sdp.encode(), headers=headers, allow_redirects=False
            ) as response:
                text = await response.text()
                location = response.headers.get("Location")
                if location is not None:
                    location = str(response.url.join(URL(location)))
                status = response.status
                answer_headers = dict(response.headers)
            if follow and status in (307, 308) and location is not None and len(hops) < 3:
                hops.append(location)
                url = location
                continue
            return HttpResult(
                status=status,
                headers=answer_headers,
                text=text,
                location=location,
                hops=tuple(hops),
            )


async def delete_session(
    session_url: str, token: str | None, *, http_timeout: float = HTTP_TIMEOUT
) -> int:
    """Send ``DELETE`` to a WHIP/WHEP session URL and return the HTTP status."""
    client_timeout = aiohttp.ClientTimeout(total=http_timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.delete(session_url, headers=_auth_headers(token)) as response,
    ):
        await response.read()
        return response.status


async def _exchange(
    url: str, token: str, pc: RTCPeerConnection, link: LinkEmulator | None
) -> tuple[HttpResult, str]:
    """POST ``pc``'s offer; return the result and the answer ``pc`` should apply. Through a
    ``link``, the offer names the emulator's relay instead of ``pc`` and the answer names it
    instead of the server."""
    offer = pc.localDescription.sdp
    if link is None:
        result = await post_offer(url, token, offer)
        return result, result.text
    relay = await link.open_relay()
    result = await post_offer(url, token, relay.offer(offer))
    if result.status != 201:
        return result, result.text
    link.sessions += 1
    return result, relay.answer(result.text)


async def _wait_connected(pc: RTCPeerConnection, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed"):
            raise ConnectionError(f"peer connection {pc.connectionState}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not connected after {seconds}s (state {pc.connectionState})")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# Publisher


def _capabilities(capabilities: RTCRtpCapabilities | None) -> list[RTCRtpCodecCapability]:
    if capabilities is None:
        raise ValueError("aiortc has no codecs of that kind")
    return capabilities.codecs


def _codec_preferences(kind: str, codec: str) -> list[RTCRtpCodecCapability]:
    capabilities = _capabilities(RTCRtpSender.getCapabilities(kind))
    wanted = f"{kind}/{codec}".lower()
    chosen = [c for c in capabilities if c.mimeType.lower() == wanted]
    if not chosen:
        raise ValueError(f"aiortc cannot send {codec} {kind}")
    # Offer RTX next to the video codec, as browsers do, so a server can retransmit on NACK.
    rtx = [c for c in capabilities if c.mimeType.lower() == f"{kind}/rtx"]
    return chosen + rtx


@dataclass
class Publisher:
    """A WHIP publisher (the teacher's side): one aiortc peer sending pre-encoded media."""

    pc: RTCPeerConnection
    token: str
    status: int
    session_url: str | None
    video_track: PacedTrack | None
    audio_track: PacedTrack | None
    answer_sdp: str = ""
    closed: bool = False

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until ICE and DTLS are up (media starts flowing right after)."""
        await _wait_connected(self.pc, timeout)

    async def close(self, delete: bool = True) -> int | None:
        """Leave: ``DELETE`` the session (if ``delete``), then close the peer connection.

        Returns the DELETE status, or ``None`` if none was sent. ``delete=False`` emulates a
        publisher that vanishes without saying goodbye.
        """
        if self.closed:
            return None
        self.closed = True
        status = None
        try:
            if delete and self.session_url:
                status = await delete_session(self.session_url, self.token)
        finally:
            await self.pc.close()
        return status


async def whip_publish(
    whip_url: str,
    token: str,
    *,
    video: list[EncodedFrame] | None,
    audio: list[EncodedFrame] | None,
    codec: str = "VP8",
    loop: bool = True,
    check: bool = True,
    link: LinkEmulator | None = None,
) -> Publisher:
    """Publish pre-encoded ``video`` (``codec``: VP8 or H264) and Opus ``audio`` over WHIP.

    Transceivers are sendonly, video first then audio, each restricted to one codec. Returns
    as soon as the answer is applied; call :meth:`Publisher.wait_connected` to wait for ICE and
    DTLS. On a non-201 answer raises :class:`SignalingError`, or with ``check=False`` returns a
    closed :class:`Publisher` whose ``status`` tells what happened. ``link`` sends the media
    through a link emulator (tests/support/link_emulator.py), the teacher's uplink being its
    ``uplink``.
    """
    if video is None and audio is None:
        raise ValueError("nothing to publish")
    pc = new_peer_connection()
    clock = PlaybackClock()
    video_track = PacedTrack(video, "video", loop=loop, clock=clock) if video else None
    audio_track = PacedTrack(audio, "audio", loop=loop, clock=clock) if audio else None
    try:
        if video_track is not None:
            transceiver = pc.addTransceiver(video_track, direction="sendonly")
            transceiver.setCodecPreferences(_codec_preferences("video", codec))
        if audio_track is not None:
            transceiver = pc.addTransceiver(audio_track, direction="sendonly")
            transceiver.setCodecPreferences(_codec_preferences("audio", "opus"))
        await pc.setLocalDescription(await pc.createOffer())
        result, answer = await _exchange(whip_url, token, pc, link)
        if result.status != 201:
            await pc.close()
            if check:
                raise SignalingError(whip_url, result)
            return Publisher(
                pc, token, result.status, result.location, video_track, audio_track, closed=True
            )
        publisher = Publisher(
            pc, token, result.status, result.location, video_track, audio_track, result.text
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    except BaseException:
        await pc.close()
        raise
    return publisher


# ---------------------------------------------------------------------------------------------
# Subscriber


@dataclass
class VideoStats:
    """What one subscriber saw on one remote video track."""

    frames: int = 0
    """Decoded frames."""
    first_frame_at: float | None = None
    """``time.monotonic()`` of the first decoded frame."""
    last_frame_at: float | None = None
    first_frame_keyframe: bool | None = None
    """Whether the first decoded frame was a keyframe of the sent clip (``None``: no marker)."""
    frame_numbers: list[int] = field(default_factory=list)
    """Frame numbers read back from the picture, in arrival order (clip index, 16 bits)."""
    frame_pts: list[int] = field(default_factory=list)
    """Decoded frames' pts (90 kHz, 0 = first RTP timestamp seen), in arrival order."""
    keyframes: int = 0
    """Decoded frames whose marker says they were encoded as keyframes."""
    unreadable: int = 0
    """Decoded frames without a readable marker (corrupt picture or foreign source)."""
    width: int = 0
    height: int = 0


@dataclass
class AudioStats:
    """What one subscriber saw on one remote audio track."""

    frames: int = 0
    samples: int = 0
    first_frame_at: float | None = None
    last_frame_at: float | None = None


def _receive_preferences(codecs: Sequence[str]) -> list[RTCRtpCodecCapability]:
    capabilities = _capabilities(RTCRtpReceiver.getCapabilities("video"))
    chosen = []
    for name in codecs:
        found = [c for c in capabilities if c.mimeType.lower() == f"video/{name}".lower()]
        if not found:
            raise ValueError(f"aiortc cannot receive {name} video")
        chosen += found
    return chosen + [c for c in capabilities if c.mimeType.lower() == "video/rtx"]


def _is_rtp(data: bytes) -> bool:
    # RFC 7983: 128..191 is RTP/RTCP; RTCP packet types 192..223 sit where RTP has
    # marker bit + payload type, and dynamic RTP payload types (96..127) never land there.
    return len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223


class _LossyLink:
    """Drops a seeded-random fraction of incoming SRTP media packets before aiortc sees them."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.random = random.Random(seed)
        self.media_packets = 0
        self.dropped = 0
        self._wrapped: set[int] = set()

    def attach(self, pc: RTCPeerConnection) -> None:
        for transceiver in pc.getTransceivers():
            ice_transport = transceiver.receiver.transport.transport
            connection: Any = ice_transport._connection
            if id(connection) in self._wrapped:
                continue
            self._wrapped.add(id(connection))
            # StunProtocol looks data_received up on the connection for every datagram, so
            # an instance attribute intercepts everything that is not STUN (DTLS, SRTP, SRTCP).
            connection.data_received = self._wrap(connection.data_received)

    def _wrap(self, deliver: Callable[[bytes, int], None]) -> Callable[[bytes, int], None]:
        def data_received(data: bytes, component: int) -> None:
            if _is_rtp(data):
                self.media_packets += 1
                if self.rate > 0 and self.random.random() < self.rate:
                    self.dropped += 1
                    return
            deliver(data, component)

        return data_received


def _route_like_a_browser(pc: RTCPeerConnection) -> None:
    """Teach this peer's RTP routers what a browser would do with several video slots.

    aiortc 1.16 routes incoming RTP by SSRC, falling back to the payload type only when a
    single receiver uses it, and never by the MID header extension. Its receivers register
    only the primary SSRC, so with two video transceivers (same payload types) every RTX
    retransmission is discarded and a lost packet stalls that track until its jitter buffer
    overflows. Here each router (of this peer only: the server may run aiortc in the same
    process) also registers the RTX SSRCs from the answer and falls back to the MID.
    """
    for transceiver in pc.getTransceivers():
        router: Any = transceiver.receiver.transport._rtp_router
        if getattr(router, "_routes_like_a_browser", False):
            continue
        router._routes_like_a_browser = True
        register = router.register_receiver
        route = router.route_rtp

        def register_receiver(
            receiver: Any,
            ssrcs: list[int],
            payload_types: list[int],
            mid: str | None = None,
            _register: Callable[..., None] = register,
        ) -> None:
            # receive() fills the RTX map just before registering the receiver.
            rtx_ssrcs = list(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}))
            _register(receiver, ssrcs=[*ssrcs, *rtx_ssrcs], payload_types=payload_types, mid=mid)

        def route_rtp(
            packet: Any, _route: Callable[[Any], Any] = route, _router: Any = router
        ) -> Any:
            receiver = _route(packet)
            mid = packet.extensions.mid
            if receiver is None and mid is not None and packet.ssrc not in _router.ssrc_table:
                receiver = _router.mid_table.get(mid)
                if receiver is not None:
                    _router.ssrc_table[packet.ssrc] = receiver
            return receiver

        router.register_receiver = register_receiver
        router.route_rtp = route_rtp


_classroom_numbers = itertools.count(1)


@dataclass
class Classroom:
    """A WHEP subscriber (a receiving classroom) that decodes and measures what it gets."""

    name: str
    pc: RTCPeerConnection
    token: str
    status: int
    session_url: str | None
    started_at: float
    """``time.monotonic()`` just before the offer was posted."""
    video: list[VideoStats] = field(default_factory=list)
    audio: list[AudioStats] = field(default_factory=list)
    answer_sdp: str = ""
    closed: bool = False
    _link: _LossyLink | None = None  # None only when the POST failed
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        """Incoming RTP packets thrown away by ``drop_rate``."""
        return self._link.dropped if self._link else 0

    @property
    def media_packets(self) -> int:
        """Incoming RTP packets seen before the drop decision (RTCP excluded)."""
        return self._link.media_packets if self._link else 0

    @property
    def video_frames(self) -> int:
        """Decoded video frames over all video tracks."""
        return sum(v.frames for v in self.video)

    @property
    def audio_frames(self) -> int:
        """Decoded audio frames over all audio tracks."""
        return sum(a.frames for a in self.audio)

    def first_frame_latency(self, track: int = 0) -> float | None:
        """Seconds from posting the offer to the first decoded frame of video ``track``."""
        first = self.video[track].first_frame_at if track < len(self.video) else None
        return None if first is None else first - self.started_at

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until ICE and DTLS are up."""
        await _wait_connected(self.pc, timeout)

    async def wait_for_frames(
        self,
        n: int,
        timeout: float,  # noqa: ASYNC109 - a deadline for the report, not a cancel scope
        *,
        kind: str = "video",
    ) -> None:
        """Wait until every ``kind`` track has decoded at least ``n`` frames.

        Raises ``TimeoutError`` with the counts so far.
        """
        stats: list[VideoStats] | list[AudioStats] = self.video if kind == "video" else self.audio
        if not stats:
            raise ValueError(f"{self.name} has no {kind} track")
        deadline = time.monotonic() + timeout
        while any(s.frames < n for s in stats):
            if time.monotonic() >= deadline:
                counts = [s.frames for s in stats]
                raise TimeoutError(
                    f"{self.name}: {kind} frames {counts} < {n} after {timeout}s "
                    f"(connection {self.pc.connectionState}, dropped {self.dropped})"
                )
            await asyncio.sleep(0.02)

    async def close(self, delete: bool = True) -> int | None:
        """Leave: ``DELETE`` the session (if ``delete``), close the peer, stop the consumers.

        Returns the DELETE status, or ``None`` if none was sent.
        """
        if self.closed:
            return None
        self.closed = True
        status = None
        try:
            if delete and self.session_url:
                status = await delete_session(self.session_url, self.token)
        finally:
            await self.pc.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return status


async def _consume_video(track: MediaStreamTrack, stats: VideoStats) -> None:
    while True:
        try:
            frame: Any = await track.recv()
        except MediaStreamError:
            return
        now = time.monotonic()
        # aiortc's VP8 decoder (libvpx) never flags key frames, so the drawn marker is the
        # only reliable source of "was this a keyframe".
        marker = read_marker(frame)
        if stats.frames == 0:
            stats.first_frame_at = now
            stats.first_frame_keyframe = marker.keyframe if marker else None
        stats.frames += 1
        stats.last_frame_at = now
        stats.width, stats.height = frame.width, frame.height
        if frame.pts is not None:
            stats.frame_pts.append(frame.pts)
        if marker is None:
            stats.unreadable += 1
        else:
            stats.frame_numbers.append(marker.index)
            if marker.keyframe:
                stats.keyframes += 1


async def _consume_audio(track: MediaStreamTrack, stats: AudioStats) -> None:
    while True:
        try:
            frame: Any = await track.recv()
        except MediaStreamError:
            return
        now = time.monotonic()
        if stats.frames == 0:
            stats.first_frame_at = now
        stats.frames += 1
        stats.samples += frame.samples
        stats.last_frame_at = now


async def whep_subscribe(
    whep_url: str,
    token: str,
    *,
    videos: int = 1,
    audios: int = 1,
    name: str | None = None,
    drop_rate: float = 0.0,
    seed: int = 0,
    video_codecs: Sequence[str] | None = None,
    check: bool = True,
    link: LinkEmulator | None = None,
    ice_servers: Sequence[RTCIceServer] = (),
    relay_only: bool = False,
) -> Classroom:
    """Subscribe over WHEP with ``videos`` then ``audios`` recvonly transceivers.

    Every remote track gets a consumer task that pulls decoded frames and fills the
    :class:`VideoStats` / :class:`AudioStats` of the returned :class:`Classroom`.
    ``drop_rate`` > 0 throws away that fraction of incoming SRTP media packets (never STUN,
    DTLS or RTCP) with ``random.Random(seed)``, like a lossy last mile. ``name`` only labels
    the classroom in messages. ``video_codecs`` (e.g. ``["H264"]``) limits what the video
    transceivers offer; by default aiortc offers VP8 then H.264. On a non-201 answer raises
    :class:`SignalingError`, or with ``check=False`` returns a closed :class:`Classroom` whose
    ``status`` tells what happened. ``link`` routes the session through a link emulator
    (tests/support/link_emulator.py): what the classroom receives crosses its ``downlink``.
    ``ice_servers`` and ``relay_only``: as for `new_peer_connection` (a classroom that reaches
    the server only through a TURN server).
    """
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError("drop_rate must be in [0, 1)")
    label = name or f"classroom-{next(_classroom_numbers)}"
    pc = new_peer_connection(ice_servers, relay_only=relay_only)
    try:
        for _ in range(videos):
            transceiver = pc.addTransceiver("video", direction="recvonly")
            if video_codecs is not None:
                transceiver.setCodecPreferences(_receive_preferences(video_codecs))
        for _ in range(audios):
            pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        # Attached even at drop_rate 0 so media_packets is always counted.
        lossy = _LossyLink(drop_rate, seed)
        lossy.attach(pc)
        started_at = time.monotonic()
        result, answer = await _exchange(whep_url, token, pc, link)
        if result.status != 201:
            await pc.close()
            if check:
                raise SignalingError(whep_url, result)
            return Classroom(
                label, pc, token, result.status, result.location, started_at, closed=True
            )
        classroom = Classroom(
            label,
            pc,
            token,
            result.status,
            result.location,
            started_at,
            answer_sdp=result.text,
            _link=lossy,
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        # Receivers register with their router only once DTLS is up, i.e. after this.
        _route_like_a_browser(pc)
        # A non-bundled answer gives later transceivers their own ICE connection.
        lossy.attach(pc)
    except BaseException:
        await pc.close()
        raise

    for transceiver in pc.getTransceivers():
        # Stats exist for every slot so that video[i] is always the i-th video transceiver;
        # a slot the server answered inactive simply stays at zero frames.
        track = transceiver.receiver.track
        if transceiver.kind == "video":
            vstats = VideoStats()
            classroom.video.append(vstats)
            coro = _consume_video(track, vstats) if track else None
        else:
            astats = AudioStats()
            classroom.audio.append(astats)
            coro = _consume_audio(track, astats) if track else None
        if coro is not None:
            task = asyncio.create_task(coro, name=f"{label}-{transceiver.mid}")
            classroom._tasks.append(task)
    return classroom
