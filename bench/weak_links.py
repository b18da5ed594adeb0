"""Weak-link benchmark: what classrooms on rural links hear and see, adapted and not.

    scripts/bench weak-links [--seconds 60] [--runs 3] [--single-layer]

A teacher publishes a moving, textured picture as a browser does with simulcast: three VP8
layers on one WHIP session, 1280x720 at ~1.6 Mbit/s, 640x360 at ~0.5 Mbit/s and 320x180 at
~0.15 Mbit/s, each with its rid, with Opus beside them (the benchmark origin: pre-encoded, all
layers paced as a browser paces them, every packet stamped with abs-send-time, each layer
answering keyframe requests for its own SSRC). ``--single-layer``: the 1280x720 layer alone.
Five aiortc classrooms watch it at once, each behind its own link emulator
(tests/support/link_emulator.py, on a thread of its own): good, rural, poor, satellite, and
collapse (good, fallen to 300 kbit/s for 20 s). The classrooms are real WebRTC receivers on the
wire (ICE, DTLS, SRTP, receiver reports, NACK, REMB from aiortc's own estimator, PLI) with a
stand-in for the video decoder: it hands on every complete frame aiortc's jitter buffer gives
it, and refuses (like a real decoder, which then asks for a keyframe) a frame whose reference
was lost. Sound is decoded for real.

Per classroom: the share of 20 ms audio frames played and the time concealed, decoded video
frames per second, freeze time (gaps of 500 ms or more between frames), the layer it received
over time (from /api/status each second: the share of time full / reduced / sound only and the
height fed; from the keyframes it decoded: the height it showed), the datagrams and bytes the
server sent into the link (retransmissions, keyframes and probes included), the queueing delay
of frames (above the fastest one), and the server's own view (state, estimate, switches). The
same is run against a server with ``--no-adaptation`` in each run, as the baseline; figures are
medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av
from aiortc import RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.utils import uint16_add, uint16_gt

from media.aiortc_adapter.consent import authenticate_media, keep_consent
from tests.support.link_emulator import (
    GOOD,
    POOR,
    RURAL,
    SATELLITE,
    LinkEmulator,
    Profile,
)

from . import report, servers
from .clip import VideoClip, opus_clip, video_clip
from .fanout import OriginThread
from .peers import SimulcastOrigin, loopback_only, new_pc, post, publish, publish_simulcast

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT, BITRATE = 1280, 720, 1_600_000
# the simulcast origin's layers, best first: (rid, width, height, bitrate)
LAYERS = (("h", WIDTH, HEIGHT, BITRATE), ("m", 640, 360, 500_000), ("l", 320, 180, 150_000))
STATES = ("full", "reduced", "audio_only")
FREEZE_S = 0.5
CONSENT_S = 25.0
STUCK_S = 3.0  # no frame to decode for this long: ask for a keyframe (libwebrtc's wait)
AUDIO_GAP_S = 0.2  # no sound frame for this long: listed, to find where sound was lost
AUDIO_FRAME_S = 0.02
VIDEO_TICKS = 3000  # 90 kHz ticks between frames at 30 fps
PROFILES = ("good", "rural", "poor", "satellite", "collapse")
COLLAPSE_RATE = 300e3


# --- the classroom's video decoder stand-in ------------------------------------------------


class ChainDecoder:
    """Takes aiortc's complete VP8 frames: a keyframe starts a chain, a frame whose
    predecessor is missing breaks it (refused, so aiortc asks for a keyframe). Each frame
    handed on is 2 pixels wide and as high as the keyframe that started its chain."""

    def __init__(self) -> None:
        self.last_ts: int | None = None
        self.broken = True
        self.height = 0

    def decode(self, encoded: Any) -> list[av.VideoFrame]:
        data, ts = encoded.data, encoded.timestamp
        # a keyframe's header: the frame tag's key bit, then the start code (what a frame put
        # together from a lost first packet does not have)
        keyframe = len(data) >= 10 and not data[0] & 0x01 and data[3:6] == b"\x9d\x01\x2a"
        follows = self.last_ts is not None and 0 < (ts - self.last_ts) & 0xFFFFFFFF <= VIDEO_TICKS
        self.last_ts = ts
        if keyframe:
            self.broken = False
            self.height = int.from_bytes(data[8:10], "little") & 0x3FFF
        elif self.broken or not follows or (data and not data[0] & 0x01):
            self.broken = True
            raise av.error.InvalidDataError(1094995529, "reference frame lost")
        frame = av.VideoFrame(2, max(self.height, 2), "yuv420p")
        frame.pts = ts
        return [frame]


class BrowserJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, with what a browser adds when a packet never comes.

    aiortc waits for a missing packet until 512 more have come after it: 17 s on a 180p layer
    (one packet a frame), 7 s on 360p, one classroom frozen for no reason of the server's.
    libwebrtc asks for a keyframe once it has had no frame to decode for 3 s
    (``kMaxWaitForFrame``), and a keyframe lets it forget the incomplete frames before it;
    this buffer does both.

    A packet older than the buffer's first one (a retransmission asked for twice and sent
    twice, or one for a frame already given up) makes aiortc empty the whole buffer and ask
    for a keyframe once it is 100 packets behind (``MAX_MISORDER``): a second and a half of
    frozen picture on a satellite link, where a retransmission comes 600 ms after the loss,
    100 packets later at 720p. libwebrtc's ``PacketBuffer`` drops such a packet and goes on;
    so does this buffer.
    """

    def __init__(self) -> None:
        super().__init__(capacity=512, is_video=True)
        self._stuck_since: float | None = None
        self._asked_at = -1e9

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        head = self._origin
        if head is not None and uint16_gt(head, packet.sequence_number):
            return False, None  # too old: its frame was handed on or given up
        if head is not None and _keyframe_start(packet):
            ahead = uint16_add(packet.sequence_number, -head)
            if 0 < ahead < self.capacity:
                # frames before it still waiting for a packet (a complete one would have been
                # handed on) do not matter any more
                self.remove(ahead)
        pli, frame = super().add(packet)
        now = time.monotonic()
        if frame is not None:
            self._stuck_since = None
        elif self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= STUCK_S and now - self._asked_at >= STUCK_S:
            self._asked_at = now
            pli = True
        return pli, frame


def _keyframe_start(packet: Any) -> bool:
    """The first packet of a VP8 keyframe (aiortc has depayloaded it into ``_data``)."""
    payload, data = packet.payload, getattr(packet, "_data", b"")
    return (
        len(payload) > 0
        and payload[0] & 0x10 != 0  # start of a partition ...
        and payload[0] & 0x07 == 0  # ... the first one
        and len(data) >= 6
        and not data[0] & 0x01
        and data[3:6] == b"\x9d\x01\x2a"
    )


class BrowserNacks:
    """Which packets a classroom asks to be sent again, as libwebrtc's ``NackRequester`` does:
    a missing packet at once, then again every round trip (``kDefaultRttMs``, 100 ms, until
    one is measured) for as long as it stays missing, up to 10 times.

    aiortc's ``NackGenerator`` asks again only when another packet goes missing: on a lossy
    link a NACK lost on the way up, or a retransmission lost on the way down, leaves the frame
    waiting for the next loss, often a second later, a freeze a browser does not have. Takes
    its place in ``RTCRtpReceiver``: ``add`` says whether to send a NACK now, ``missing`` is
    what it asks for."""

    RESEND_S = 0.100
    MAX_ASKS = 10
    HISTORY = 1000  # packets behind the newest that are still worth asking for

    def __init__(self) -> None:
        self.max_seq: int | None = None
        self.missing: list[int] = []
        self._asked: dict[int, list[float]] = {}  # sequence number -> [last asked, times]

    def add(self, packet: Any) -> bool:
        seq = packet.sequence_number
        if self.max_seq is None:
            self.max_seq = seq
            return False
        if uint16_gt(seq, self.max_seq):
            gap = uint16_add(self.max_seq, 1)
            while uint16_gt(seq, gap):
                self._asked[gap] = [-1e9, 0]
                gap = uint16_add(gap, 1)
            self.max_seq = seq
        else:
            self._asked.pop(seq, None)
        now = time.monotonic()
        oldest = uint16_add(self.max_seq, -self.HISTORY)
        due = []
        for gap, asked in list(self._asked.items()):
            if asked[1] >= self.MAX_ASKS or uint16_gt(oldest, gap):
                del self._asked[gap]
            elif now - asked[0] >= self.RESEND_S:
                asked[0], asked[1] = now, asked[1] + 1
                due.append(gap)
        self.missing = due
        return bool(due)


def _install_decoder() -> None:
    import aiortc.rtcrtpreceiver as receiver_module

    make_buffer = receiver_module.JitterBuffer

    def buffer_for(capacity: int, prefetch: int = 0, is_video: bool = False) -> JitterBuffer:
        return BrowserJitterBuffer() if is_video else make_buffer(capacity, prefetch, is_video)

    receiver_module.JitterBuffer = buffer_for  # type: ignore[misc,assignment]
    receiver_module.NackGenerator = BrowserNacks  # type: ignore[misc,assignment]
    get_decoder = receiver_module.get_decoder

    def decoder_for(codec: Any) -> Any:
        if codec.mimeType.lower() == "video/vp8":
            return ChainDecoder()
        return get_decoder(codec)

    receiver_module.get_decoder = decoder_for


# --- one classroom ------------------------------------------------------------------------


@dataclass
class Seen:
    video: list[float] = field(default_factory=list)  # arrival of each decoded frame
    video_delay: list[float] = field(default_factory=list)  # arrival - RTP time, seconds
    heights: list[int] = field(default_factory=list)  # of each decoded frame
    audio: int = 0
    audio_at: list[float] = field(default_factory=list)  # arrival of each decoded frame
    video_pts: set[int] = field(default_factory=set)
    video_steps: Counter[int] = field(default_factory=Counter)  # pts step between frames
    video_repeated: int = 0  # frames handed on again with a timestamp already seen
    audio_delay: list[float] = field(default_factory=list)


class Room:
    def __init__(self, name: str, profile: Profile, seed: int) -> None:
        self.name = name
        # on a thread of its own: the datagrams must not wait for this process's other work
        self.link = LinkEmulator(profile, seed=seed, own_thread=True)
        self.pc = new_pc()
        self.seen = Seen()
        self.joined_at = 0.0
        # (time, height) wherever the height shown changed, from the join on
        self.shown: list[tuple[float, int]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def join(self, whep_url: str, token: str) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        # aioice sends each consent check once and gives up on it after 0.5 s: over a 600 ms
        # round trip every check fails and the classroom closes itself after 30 s (a browser
        # retransmits them). Authenticated media from the server counts as its consent here,
        # as it does on the server.
        for dtls in {t.receiver.transport for t in self.pc.getTransceivers()}:
            connection = dtls.transport.iceGatherer._connection
            keep_consent(connection, CONSENT_S)
            authenticate_media(dtls, connection)
        relay = await self.link.open_relay()
        self.joined_at = time.monotonic()
        status, answer, _ = await post(
            f"{whep_url}?name={self.name}", token, relay.offer(self.pc.localDescription.sdp)
        )
        if status != 201:
            raise RuntimeError(f"WHEP join failed: {status} {answer[:200]}")
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=relay.answer(answer), type="answer")
        )
        for transceiver in self.pc.getTransceivers():
            track = transceiver.receiver.track
            self._tasks.append(asyncio.create_task(self._consume(transceiver.kind, track)))

    async def _consume(self, kind: str, track: Any) -> None:
        rate = 90000 if kind == "video" else 48000
        last_pts = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            delay = now - (frame.pts or 0) / rate
            if kind == "video":
                if frame.pts in self.seen.video_pts:
                    self.seen.video_repeated += 1
                if self.seen.video_pts:
                    self.seen.video_steps[(frame.pts or 0) - last_pts] += 1
                last_pts = frame.pts or 0
                self.seen.video_pts.add(frame.pts)
                self.seen.video.append(now)
                self.seen.video_delay.append(delay)
                height = frame.height if frame.height > 2 else 0
                self.seen.heights.append(height)
                if not self.shown or self.shown[-1][1] != height:
                    self.shown.append((now, height))
            else:
                self.seen.audio += 1
                self.seen.audio_at.append(now)
                self.seen.audio_delay.append(delay)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        self.link.close()


def _delay_ms(delays: list[float]) -> dict[str, float | None]:
    """Delay above the fastest frame (the clocks of sender and receiver are not related:
    RTP time has a random origin), so queueing and jitter, not propagation."""
    if not delays:
        return {"p50": None, "p95": None}
    low = min(delays)
    above = sorted((d - low) * 1000 for d in delays)
    return {"p50": round(above[len(above) // 2], 1), "p95": round(above[int(len(above) * 0.95)], 1)}


def summarise(
    room: Room, begin: float, end: float, audio_sent: int, link_before: dict[str, Any]
) -> dict[str, Any]:
    seconds = end - begin
    frames = [t for t in room.seen.video if begin <= t <= end]
    heights = [
        h for t, h in zip(room.seen.video, room.seen.heights, strict=True) if begin <= t <= end
    ]
    points = [begin, *frames, end]
    gaps = [(a, b - a) for a, b in zip(points, points[1:], strict=False) if b - a >= FREEZE_S]
    heard = [begin, *(t for t in room.seen.audio_at if begin <= t <= end), end]
    silences = [(a, b - a) for a, b in zip(heard, heard[1:], strict=False) if b - a >= AUDIO_GAP_S]
    freeze = sum(gap for _, gap in gaps)
    shown: list[list[float]] = []  # [time, height] where the height shown changed
    for t, h in zip(room.seen.video, room.seen.heights, strict=True):
        if begin <= t <= end and (not shown or shown[-1][1] != h):
            shown.append([round(t - begin, 2), h])
    played = min(room.seen.audio, audio_sent)
    down = room.link.downlink.stats.as_dict()
    return {
        "audio_played": played / audio_sent if audio_sent else None,
        "audio_concealed_s": round((audio_sent - played) * AUDIO_FRAME_S, 2),
        "video_fps": len(frames) / seconds,
        "freeze_share": freeze / seconds,
        "height_decoded": statistics.median(heights) if heights else None,
        "video_repeated": room.seen.video_repeated,
        "video_pts_steps": dict(room.seen.video_steps.most_common(6)),
        "freezes": [[round(a - begin, 2), round(gap, 2)] for a, gap in gaps],
        "audio_gaps": [[round(a - begin, 2), round(gap, 2)] for a, gap in silences],
        "shown": shown,
        "server_datagrams": down["datagrams_in"] - link_before["datagrams_in"],
        "server_kbit_s": (down["bytes_in"] - link_before["bytes_in"]) * 8 / seconds / 1000,
        "link_dropped": sum(down[k] - link_before[k] for k in ("lost", "overflow")),
        "video_delay_ms": _delay_ms(room.seen.video_delay),
        "audio_delay_ms": _delay_ms(room.seen.audio_delay),
    }


# --- one run ------------------------------------------------------------------------------


def _profile(name: str) -> Profile:
    return {"good": GOOD, "rural": RURAL, "poor": POOR, "satellite": SATELLITE}.get(name, GOOD)


def _height_fed(link: dict[str, Any], top: int) -> int:
    """The height the server feeds a classroom: 0 on sound only, the chosen layer's, or (no
    choice yet, or no adaptation) the best arriving."""
    if link.get("state") == "audio_only":
        return 0
    layers = link.get("layers") or []
    return int(layers[0]["height"]) if layers else top


def _top_height(status: dict[str, Any]) -> int:
    heights = [
        int(layer.get("height") or 0)
        for source in status.get("video_layers", [])
        for layer in source.get("layers", [])
    ]
    return max(heights, default=0)


def _layer_figures(samples: list[dict[str, Any]], recovered: float | None) -> dict[str, Any]:
    """The layer a classroom was fed over the window, from the once-a-second samples."""
    out: dict[str, Any] = {}
    for state in STATES:
        out[f"{state}_share"] = (
            sum(1 for x in samples if x["state"] == state) / len(samples) if samples else 0.0
        )
    out["audio_only_share"] = out.pop("audio_only_share")
    heights = [x["height"] for x in samples]
    out["height_fed"] = statistics.median(heights) if heights else None
    fed = [(x["t"], x["state"], x["height"]) for x in samples]
    out["switches"] = sum(1 for a, b in zip(fed, fed[1:], strict=False) if a[1:] != b[1:])
    if recovered is not None:
        back = next((t for t, state, _ in fed if t >= recovered and state == "full"), None)
        out["full_again_after_s"] = None if back is None else round(back - recovered, 1)
        after = [x for x in fed if back is not None and x[0] >= back]
        out["switches_after_back"] = sum(
            1 for a, b in zip(after, after[1:], strict=False) if a[1:] != b[1:]
        )
    return out


async def _status(server: servers.Running) -> dict[str, Any]:
    answer: dict[str, Any] = await asyncio.to_thread(
        server.api, "GET", "/api/status", None, 10, servers.ADMIN_KEY
    )
    return answer


def _sample(answer: dict[str, Any], t: float) -> dict[str, dict[str, Any]]:
    """Each classroom's state and layer fed in one /api/status answer."""
    top = _top_height(answer)
    return {
        link["name"]: {
            "t": round(t, 2),
            "state": link["state"],
            "height": _height_fed(link, top),
            "estimate_kbps": link.get("estimate_kbps"),
            "why": link.get("why"),
            # what protects the picture on a lossy line, and what the server saw of the link
            "video_repeat": link.get("video_repeat"),
            "loss": link.get("loss"),
            "rtt_ms": link.get("rtt_ms"),
            "congested": link.get("congested"),
            "retransmitted": link.get("retransmitted"),
            "keyframe_requests": link.get("keyframe_requests"),
        }
        for link in answer["classrooms"]
    }


async def _settle(server: servers.Running, seconds: float) -> dict[str, list[dict[str, Any]]]:
    """Wait for the classrooms to connect and get their first estimates, sampling what the
    server feeds them (times from the last join)."""
    samples: dict[str, list[dict[str, Any]]] = {}
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for name, sample in _sample(await _status(server), time.monotonic() - start).items():
            samples.setdefault(name, []).append(sample)
        await asyncio.sleep(0.5)
    return samples


async def _watch(
    server: servers.Running,
    rooms: list[Room],
    origin: Any,
    seconds: float,
    settle: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    for room in rooms:
        room.seen = Seen()
    collapse_room = next(r for r in rooms if r.name == "collapse")
    squeeze_at, squeeze_s = seconds / 6, min(20.0, seconds / 3)
    before = {r.name: r.link.downlink.stats.as_dict() for r in rooms}
    audio_before = origin.audio.sent
    frames_before = _frames_sent(origin)
    first = {link["name"]: link for link in (await _status(server))["classrooms"]}
    begin = time.monotonic()
    samples: dict[str, list[dict[str, Any]]] = {r.name: [] for r in rooms}
    squeezed = recovered = None
    while (now := time.monotonic()) - begin < seconds:
        if squeezed is None and now - begin >= squeeze_at:
            collapse_room.link.set_profile(
                replace(GOOD, name="collapse", rate=COLLAPSE_RATE, uplink_rate="same")
            )
            squeezed = now - begin
        if squeezed is not None and recovered is None and now - begin >= squeeze_at + squeeze_s:
            collapse_room.link.set_profile(GOOD)
            recovered = now - begin
        for name, sample in _sample(await _status(server), time.monotonic() - begin).items():
            if name in samples:
                samples[name].append(sample)
        await asyncio.sleep(1.0)
    end = time.monotonic()
    audio_sent = origin.audio.sent - audio_before
    frames_sent = {k: v - frames_before[k] for k, v in _frames_sent(origin).items()}
    final = {link["name"]: link for link in (await _status(server))["classrooms"]}
    result = {}
    for room in rooms:
        figures = summarise(room, begin, end, audio_sent, before[room.name])
        is_collapse = room.name == "collapse" and recovered is not None
        figures.update(_layer_figures(samples[room.name], recovered if is_collapse else None))
        if is_collapse:
            figures["collapse_s"] = [round(squeezed or 0, 1), round(recovered or 0, 1)]
        server_view = final.get(room.name, {})
        figures["server_switches"] = (server_view.get("switches") or 0) - (
            first.get(room.name, {}).get("switches") or 0
        )
        figures["server"] = {
            k: server_view.get(k)
            for k in ("state", "why", "estimate_kbps", "switches", "audio_repeat", "layers")
        }
        figures["samples"] = samples[room.name]
        # the first minute from the join: what the server fed, what the classroom showed
        figures["settle_samples"] = settle.get(room.name, [])
        figures["shown_from_join"] = [
            [round(t - room.joined_at, 2), h] for t, h in room.shown if t - room.joined_at < 60
        ][:20]
        result[room.name] = figures
    result["origin_fps"] = {k: round(v / (end - begin), 2) for k, v in frames_sent.items()}
    return result


def _frames_sent(origin: Any) -> dict[str, int]:
    """Video frames the origin has sent so far, per layer."""
    if isinstance(origin, SimulcastOrigin):
        return {s.rid: s.sent_frames for s in origin.streams}
    return {"single": origin.video.sent}


Layer = tuple[str, int, int, VideoClip]  # rid, width, height, the clip


def _keyframe_requests(origin: Any) -> dict[str, int]:
    """Keyframe requests that reached the origin, per layer."""
    if isinstance(origin, SimulcastOrigin):
        return {s.rid: len(s.keyframe_requests) for s in origin.streams}
    return {"single": len(origin.video.keyframe_requests)}


def _warnings(log: Path, keep: int = 30) -> list[str]:
    """The server's warnings and errors of the run (the last ``keep``), to explain a figure."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    kept: list[str] = []
    follows = False  # the lines of a traceback under an error
    for line in lines:
        logged = line[:4].isdigit()
        if logged:
            follows = " ERROR " in line
        if (logged and (" WARNING " in line or " ERROR " in line)) or (follows and not logged):
            kept.append(line[:300])
    return kept[-keep:]


def run_once(
    adaptive: bool, layers: list[Layer], opus: Any, seconds: float, seed: int
) -> dict[str, Any]:
    options = () if adaptive else ("--no-adaptation",)
    with tempfile.TemporaryDirectory(prefix="bench-weak-") as tmp:
        server = servers.start("syncclass", Path(tmp), *options)
        origin_thread = OriginThread()
        try:
            lesson = server.lesson("weak links")
            if len(layers) == 1:
                started = publish(lesson.whip_url, lesson.whip_token, layers[0][3], opus)
            else:
                started = publish_simulcast(lesson.whip_url, lesson.whip_token, layers, opus)
            origin = origin_thread.run(started)

            async def lesson_run() -> dict[str, Any]:
                rooms = [Room(n, _profile(n), seed * 10 + i) for i, n in enumerate(PROFILES)]
                try:
                    for room in rooms:
                        await room.join(lesson.whep_url, lesson.whep_token)
                    # connected, first keyframe, first estimates
                    settle = await _settle(server, 5.0)
                    return await _watch(server, rooms, origin, seconds, settle)
                finally:
                    for room in rooms:
                        await room.close()

            result = asyncio.run(lesson_run())
            result["origin_keyframe_requests"] = _keyframe_requests(origin)
            result["server_warnings"] = _warnings(server.log_path)
            origin_thread.run(origin.close())
            return result
        finally:
            origin_thread.stop()
            server.stop()


# --- report -------------------------------------------------------------------------------

_FIGURES = (
    ("audio_played", "audio played", "{:.1%}"),
    ("audio_concealed_s", "audio concealed (s)", "{:.1f}"),
    ("video_fps", "video fps", "{:.1f}"),
    ("freeze_share", "frozen", "{:.1%}"),
    ("full_share", "full", "{:.0%}"),
    ("reduced_share", "reduced", "{:.0%}"),
    ("audio_only_share", "sound only", "{:.0%}"),
    ("height_fed", "height fed", "{:.0f}"),
    ("height_decoded", "height shown", "{:.0f}"),
    ("server_datagrams", "datagrams sent", "{:.0f}"),
    ("server_kbit_s", "kbit/s sent", "{:.0f}"),
    ("switches", "switches", "{:.0f}"),
)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("adapted", "baseline"):
        out[mode] = {}
        for name in PROFILES:
            rows = [run[mode][name] for run in runs]
            figures: dict[str, Any] = {}
            for key, _, _ in _FIGURES:
                values = [r[key] for r in rows if r.get(key) is not None]
                figures[key] = statistics.median(values) if values else None
            for key in ("video_delay_ms", "audio_delay_ms"):
                values = [r[key]["p95"] for r in rows if r[key]["p95"] is not None]
                figures[f"{key}_p95"] = statistics.median(values) if values else None
            if name == "collapse":
                for key in ("full_again_after_s", "switches_after_back"):
                    values = [r[key] for r in rows if r.get(key) is not None]
                    figures[key] = statistics.median(values) if values else None
                # how many runs saw it back on the best layer within the window
                figures["came_back"] = sum(
                    1 for r in rows if r.get("full_again_after_s") is not None
                )
            out[mode][name] = figures
        good = out[mode]["good"]["server_datagrams"] or 1
        for name in PROFILES:
            datagrams = out[mode][name]["server_datagrams"]
            out[mode][name]["datagrams_vs_good"] = None if datagrams is None else datagrams / good
    return out


def _origin_line(result: dict[str, Any]) -> str:
    layers = result["layers"]
    if len(layers) == 1:
        return f"{layers[0]['width']}x{layers[0]['height']} VP8 at {layers[0]['mbit_s']:.2f} Mbit/s"
    return (
        "simulcast VP8, "
        + " + ".join(f"{x['width']}x{x['height']} at {x['mbit_s']:.2f}" for x in layers)
        + " Mbit/s (one WHIP session, rids, each layer answering PLI)"
    )


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Weak links",
        "",
        f"`{result['command']}` — {result['started']}, {result['machine']['cpus']} CPUs, "
        f"{len(result['runs'])} runs of {result['seconds']:.0f} s, medians. Teacher: "
        f"{_origin_line(result)} + Opus. Classrooms: aiortc receivers (REMB, RR, NACK, PLI) "
        "behind the link emulator. *adapted*: this server; *baseline*: the same server with "
        "`--no-adaptation` (everybody gets everything), same run.",
        "",
        "| link | | "
        + " | ".join(label for _, label, _ in _FIGURES)
        + " | vs good | delay p95 ms |",
        "|---|---|" + "---|" * (len(_FIGURES) + 2),
    ]
    for name in PROFILES:
        for mode in ("adapted", "baseline"):
            row = result["medians"][mode][name]
            cells = ["–" if row[key] is None else fmt.format(row[key]) for key, _, fmt in _FIGURES]
            ratio = row["datagrams_vs_good"]
            delay = row["audio_delay_ms_p95"]
            lines.append(
                f"| {name if mode == 'adapted' else ''} | {mode} | "
                + " | ".join(cells)
                + f" | {'–' if ratio is None else f'{ratio:.2f}×'}"
                + f" | {'–' if delay is None else f'{delay:.0f}'} (audio) |"
            )
    collapse = result["medians"]["adapted"]["collapse"]
    back = collapse.get("full_again_after_s")
    lines += [
        "",
        "*full / reduced / sound only*: share of the once-a-second /api/status samples in each "
        "state (full: the best layer; reduced: a lower one; sound only: 仅声音). *height fed*: "
        "median over those samples of the layer's height the server fed the classroom (0 while "
        "sound only); *height shown*: median over the frames the classroom decoded of the "
        "height of the keyframe their chain started from. *switches*: changes of state or of "
        "layer fed between samples. *datagrams sent*: what the server sent into the "
        "classroom's link (retransmissions, keyframes, probes and repeated sound included); "
        "*vs good*: the same over the good classroom's. *delay p95*: above the fastest frame "
        "(queueing and jitter).",
        "",
        f"Collapse (300 kbit/s for {min(20.0, result['seconds'] / 3):.0f} s, from "
        f"{result['seconds'] / 6:.0f} s): back on the best layer "
        + (
            "never within the window"
            if back is None
            else f"{back:.0f} s after the link came back, then "
            f"{collapse.get('switches_after_back') or 0:.0f} switches to the window's end"
        )
        + f" (adapted; {collapse.get('came_back', 0)} of {len(result['runs'])} runs came back).",
        "",
        "Keyframe requests that reached the teacher, per run (adapted / baseline): "
        + "; ".join(
            f"{run['adapted'].get('origin_keyframe_requests')} / "
            f"{run['baseline'].get('origin_keyframe_requests')}"
            for run in result["runs"]
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(2, 3, figsize=(16, 8))
    axes = list(grid.flat)
    xs = range(len(PROFILES))
    for axis, (key, label, scale) in zip(
        axes,
        (
            ("audio_played", "audio frames played (%)", 100),
            ("video_fps", "video frames decoded per second", 1),
            ("freeze_share", "video frozen (%)", 100),
            ("datagrams_vs_good", "datagrams sent vs good", 1),
        ),
        strict=False,
    ):
        for offset, mode, colour in ((-0.2, "adapted", "tab:blue"), (0.2, "baseline", "tab:red")):
            values = [(result["medians"][mode][n][key] or 0) * scale for n in PROFILES]
            axis.bar([x + offset for x in xs], values, 0.4, label=mode, color=colour)
        axis.set_xticks(list(xs), PROFILES)
        axis.set_title(label)
    axes[0].legend()
    # time on each state (adapted)
    axis = axes[4]
    bottom = [0.0] * len(PROFILES)
    for state, colour in (
        ("full", "tab:green"),
        ("reduced", "tab:orange"),
        ("audio_only", "tab:gray"),
    ):
        values = [(result["medians"]["adapted"][n][f"{state}_share"] or 0) * 100 for n in PROFILES]
        axis.bar(xs, values, 0.6, bottom=bottom, label=state, color=colour)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axis.set_xticks(list(xs), PROFILES)
    axis.set_title("adapted: time on each state (%, medians)")
    axis.legend(fontsize="small")
    # what each classroom was fed over time, first run
    axis = axes[5]
    first = result["runs"][0]["adapted"]
    for name in PROFILES:
        samples = first[name]["samples"]
        axis.step(
            [x["t"] for x in samples], [x["height"] for x in samples], where="post", label=name
        )
    span = first["collapse"].get("collapse_s")
    if span:
        axis.axvspan(span[0], span[1], color="tab:gray", alpha=0.15)
    axis.set_yticks([0, 180, 360, 720], ["sound", "180", "360", "720"])
    axis.set_xlabel("s")
    axis.set_title("adapted, run 1: height fed (grey: collapse)")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench weak-links",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--single-layer",
        action="store_true",
        help="the teacher sends 1280x720 alone, no simulcast (results: weak-links-single-layer.*)",
    )
    args = parser.parse_args(argv)
    if not 10 <= args.seconds <= 300 or not 1 <= args.runs <= 5:
        parser.error("bounded load: 10-300 s windows, 1 to 5 runs")
    loopback_only()
    _install_decoder()
    chosen = LAYERS[:1] if args.single_layer else LAYERS
    layers = [(rid, w, h, video_clip("VP8", 10, w, h, rate)) for rid, w, h, rate in chosen]
    opus = opus_clip()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    runs = []
    for run in range(args.runs):
        one = {}
        for mode, adaptive in (("adapted", True), ("baseline", False)):
            print(f"run {run + 1} of {args.runs}, {mode}:", flush=True)
            one[mode] = run_once(adaptive, layers, opus, args.seconds, seed=run + 1)
            for name in PROFILES:
                f = one[mode][name]
                print(
                    f"  {name:9s} audio {f['audio_played']:.1%} video {f['video_fps']:.1f} fps "
                    f"frozen {f['freeze_share']:.0%} full {f['full_share']:.0%} "
                    f"reduced {f['reduced_share']:.0%} sound-only {f['audio_only_share']:.0%} "
                    f"fed {f['height_fed']} shown {f['height_decoded']} "
                    f"sent {f['server_datagrams']} datagrams, {f['server_kbit_s']:.0f} kbit/s",
                    flush=True,
                )
            print(f"  keyframe requests at the origin: {one[mode]['origin_keyframe_requests']}")
        runs.append(one)
    result = {
        "benchmark": "weak-links",
        "command": "scripts/bench weak-links " + " ".join(argv if argv is not None else []),
        "started": started,
        "machine": report.machine(),
        "seconds": args.seconds,
        "origin": "single-layer" if args.single_layer else "simulcast",
        "layers": [
            {"rid": rid, "width": w, "height": h, "mbit_s": round(clip.bitrate / 1e6, 3)}
            for rid, w, h, clip in layers
        ],
        "clip_mbit_s": sum(clip.bitrate for *_, clip in layers) / 1e6,
        "runs": runs,
        "medians": medians(runs),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / ("weak-links-single-layer" if args.single_layer else "weak-links")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    plot(result, stem.with_suffix(".png"))
    print(markdown(result))
