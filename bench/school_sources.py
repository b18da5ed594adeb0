"""School-sources benchmark: what an RTSP camera and a made layer cost and add, beside WHIP.

    scripts/bench school-sources [--seconds 20] [--weak-seconds 60] [--runs 3]

One source in every lesson: 1920x1080 at 30 fps, H.264 at ~2.5 Mbit/s in one layer (a keyframe
each second, as cameras are set), every picture carrying its frame number (the marker of
tests/support/media.py drawn over a moving texture), played from the same pre-encoded clip
either over WHIP by the benchmark's origin (with Opus) or by a real RTSP camera started here
(bench/rtsp_camera_server.py: GStreamer's RTSP server, the clip's H.264 with live AAC sound,
as tests/support/rtsp_camera.py does it) that the server pulls. Two servers run side by side:
one with ``--no-made-layer`` (forwarding only), one as by default.

1. **CPU**, server and child processes (the made layer's), over the same window each:
   forwarding only (WHIP, one classroom on loopback that counts packets), RTSP ingest (the
   same lesson pulled from the camera, one such classroom), and the made layer (WHIP, that
   classroom plus one on the poor profile of tests/support/link_emulator.py, once it is on the
   made layer) against the same two classrooms on the forwarding-only server.
2. **Delay, glass to glass**: classrooms decode every frame (aiortc's H.264 decoder) and read
   its number back; delay = when the classroom had the picture decoded − when the source
   produced that numbered frame (the origin's or the camera's own clock: CLOCK_MONOTONIC, the
   same on both sides). Measured for WHIP forwarding (a classroom on loopback), RTSP ingest (a
   classroom on loopback) and the made layer (a classroom behind a "narrow" link: 1 Mbit/s,
   no loss, no added delay, so the link adds little but still cannot carry the original).
3. **Weak link**, RTSP camera: in the same lesson as 2's RTSP classrooms, a classroom on the
   poor profile (1 Mbit/s, 3 % loss, 150 ms RTT); once it is on the made layer, for
   ``--weak-seconds``, in ``--runs`` lessons one after the other (medians): its freeze share
   (gaps of 500 ms or more between frames decoded with a readable number), frames decoded
   per second, the share of sound frames played (20 ms frames decoded over those the
   stream's timestamps span), and the height decoded; the classroom on loopback must get the
   original 1080 lines all along.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, cast

import av
import numpy as np
from aiortc import RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.utils import uint16_add

from media.aiortc_adapter.consent import authenticate_media, keep_consent
from tests.support.link_emulator import POOR, LinkEmulator, Profile
from tests.support.media import MARKER_BITS, read_marker

from . import report, servers
from .clip import CACHE, FPS, VideoClip, _encoder, opus_clip
from .fanout import RESULTS, OriginThread, percentile
from .peers import Origin, Sink, loopback_only, new_pc, post, publish
from .recorder_cpu import tree_cpu
from .rtsp_camera import BenchCamera
from .weak_links import CONSENT_S, FREEZE_S, BrowserJitterBuffer, BrowserNacks

WIDTH, HEIGHT, BITRATE = 1920, 1080, 2_500_000
GOP = FPS  # a keyframe a second
CLIP_FRAMES = 10 * FPS  # looped; the numbers repeat every 10 s, far beyond any delay
NARROW = Profile("narrow", rate=1e6)
SETTLE_S = 90.0  # the most a lesson waits for a classroom to reach the layer it should get
AUDIO_STEP = 960  # 20 ms at 48 kHz


# --- the source -----------------------------------------------------------------------------


def _stamp_marker(luma: np.ndarray, index: int, keyframe: bool) -> None:
    """Draws the frame marker of tests/support/media.py (``make_pattern_planes``: number,
    its complement, keyframe flag and sync run, in blocks from the top-left corner)."""
    height, width = luma.shape
    block = min(width // MARKER_BITS, height // 6)
    number = [(index >> (MARKER_BITS - 1 - i)) & 1 for i in range(MARKER_BITS)]
    rows = [
        number,
        [1 - b for b in number],
        [int(keyframe), 1 - int(keyframe)] + [(i + 1) % 2 for i in range(MARKER_BITS - 2)],
    ]
    for r, row in enumerate(rows):
        for c, bit in enumerate(row):
            luma[r * block : (r + 1) * block, c * block : (c + 1) * block] = 235 if bit else 16


def numbered_clip(width: int, height: int, bitrate: int) -> list[bytes]:
    """``CLIP_FRAMES`` pictures of bench/clip.py's moving texture with the frame number drawn
    in, H.264 (baseline, parameter sets before every keyframe, one every ``GOP`` frames)."""
    path = CACHE / f"numbered-H264-{CLIP_FRAMES}f-{width}x{height}-{bitrate}.pickle"
    if path.exists():
        cached: list[bytes] = pickle.loads(path.read_bytes())
        return cached
    rng = np.random.default_rng(1)
    coarse = rng.integers(16, 235, size=(-(-height // 8), -(-width // 8))).astype(np.float32)
    texture = np.kron(coarse, np.ones((16, 16), np.float32))
    texture = (texture + rng.normal(0, 3, texture.shape)).clip(16, 235).astype(np.uint8)
    context = cast(av.VideoCodecContext, _encoder("H264", width, height, bitrate, GOP))
    chroma = np.full((height // 2, width), 128, np.uint8)
    frames = []
    for i in range(CLIP_FRAMES):
        dx, dy = (i * 3) % width, (i * 2) % height
        luma = texture[dy : dy + height, dx : dx + width].copy()
        bar = (i * 8) % width
        luma[:, bar : bar + 24] = 235
        _stamp_marker(luma, i, i % GOP == 0)
        picture = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
        picture.pts = i
        if i % GOP == 0:
            picture.pict_type = av.video.frame.PictureType.I
        packets = list(context.encode(picture))
        if len(packets) != 1:
            raise RuntimeError(f"frame {i}: {len(packets)} packets")
        frames.append(bytes(packets[0]))
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(frames))
    return frames


Produced = dict[int, list[float]]  # frame number -> when the source produced it (monotonic)


def publish_stamped(
    origin_thread: OriginThread, whip_url: str, token: str, frames: list[bytes]
) -> tuple[Origin, Produced]:
    """The clip over WHIP (the benchmark origin, paced as a browser), its frames' production
    times written down. No frame is made a keyframe on request: like the camera, the clip has
    one every second."""
    clip = VideoClip("H264", frames, frames)
    origin: Origin = origin_thread.run(publish(whip_url, token, clip, opus_clip()))
    produced: Produced = defaultdict(list)
    track = origin.video
    recv = track.recv

    async def recv_stamped() -> av.Packet:
        packet = await recv()
        # the clip's frame ``sent - 1`` is due now (ClipTrack slept until its time)
        produced[(track.sent - 1) % len(frames)].append(time.monotonic())
        return packet

    track.recv = recv_stamped  # type: ignore[method-assign]
    return origin, produced


# --- classrooms that decode -----------------------------------------------------------------


def _h264_keyframe_start(payload: bytes) -> bool:
    """Whether an H.264 RTP payload starts a keyframe: its parameter sets or its IDR slice,
    alone, first in a STAP-A, or the first fragment of an FU-A."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: the first aggregated unit
        return len(payload) > 3 and payload[3] & 0x1F in (5, 7)
    if nal == 28:  # FU-A
        return len(payload) > 1 and payload[1] & 0x80 != 0 and payload[1] & 0x1F == 5
    return False


class H264JitterBuffer(BrowserJitterBuffer):
    """weak_links.BrowserJitterBuffer for H.264 too: a keyframe arriving behind a packet that
    never came lets the incomplete frames before it go (libwebrtc drops them; aiortc would
    wait until 512 packets had passed: 15 s of a 360p layer)."""

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        head = self._origin
        if head is not None and _h264_keyframe_start(packet.payload):
            ahead = uint16_add(packet.sequence_number, -head)
            slots = [self._packets[(head + i) % self.capacity] for i in range(ahead)]
            if 0 < ahead < self.capacity and any(slot is None for slot in slots):
                # up to the keyframe's first packet (its parameter sets may be ahead of it)
                keep = next(
                    (i for i, p in enumerate(slots) if p and p.timestamp == packet.timestamp),
                    ahead,
                )
                self.remove(keep)
        return super().add(packet)


def _install_jitter_buffer() -> None:
    """Video through H264JitterBuffer (as a browser's: asks for a keyframe after 3 s without
    a frame, drops what a keyframe makes useless), NACKs as a browser sends them
    (BrowserNacks); aiortc's own decoders (real decoding)."""
    import aiortc.rtcrtpreceiver as receiver_module

    make_buffer = receiver_module.JitterBuffer

    def buffer_for(capacity: int, prefetch: int = 0, is_video: bool = False) -> JitterBuffer:
        return H264JitterBuffer() if is_video else make_buffer(capacity, prefetch, is_video)

    receiver_module.JitterBuffer = buffer_for  # type: ignore[misc,assignment]
    receiver_module.NackGenerator = BrowserNacks  # type: ignore[misc,assignment]


class Watcher:
    """A classroom that decodes what it gets and reads each picture's number; on loopback, or
    behind a link emulator with ``profile``."""

    def __init__(self, name: str, profile: Profile | None, seed: int = 1) -> None:
        self.name = name
        self.link = None if profile is None else LinkEmulator(profile, seed=seed, own_thread=True)
        self.pc = new_pc()
        # (decoded at, number read or None, height) per video frame
        self.video: list[tuple[float, int | None, int]] = []
        self.audio: list[tuple[float, int]] = []  # (decoded at, pts) per 20 ms sound frame
        self._tasks: list[asyncio.Task[None]] = []

    async def join(self, whep_url: str, token: str) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        relay = None
        if self.link is not None:
            # as weak_links.Room: aioice's consent checks do not survive a lossy link alone
            for dtls in {t.receiver.transport for t in self.pc.getTransceivers()}:
                connection = dtls.transport.iceGatherer._connection
                keep_consent(connection, CONSENT_S)
                authenticate_media(dtls, connection)
            relay = await self.link.open_relay()
            offer = relay.offer(offer)
        status, answer, _ = await post(f"{whep_url}?name={self.name}", token, offer)
        if status != 201:
            raise RuntimeError(f"WHEP join failed: {status} {answer[:200]}")
        if relay is not None:
            answer = relay.answer(answer)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for transceiver in self.pc.getTransceivers():
            track = transceiver.receiver.track
            self._tasks.append(asyncio.create_task(self._consume(transceiver.kind, track)))

    async def _consume(self, kind: str, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if kind == "video":
                marker = read_marker(frame)
                self.video.append((now, None if marker is None else marker.index, frame.height))
            else:
                self.audio.append((now, frame.pts or 0))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        if self.link is not None:
            self.link.close()


def delays_ms(
    video: list[tuple[float, int | None, int]], produced: Produced, begin: float, end: float
) -> list[float]:
    """For each frame decoded in [begin, end] with a readable number: decoded − produced (the
    latest production of that number before it was decoded)."""
    out = []
    for at, number, _ in video:
        if number is None or not begin <= at <= end:
            continue
        before = [t for t in produced.get(number, ()) if t <= at]
        if before:
            out.append((at - max(before)) * 1000)
    return out


def _delay(values: list[float]) -> dict[str, Any]:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return {
        "frames": len(values),
        "p50_ms": None if p50 is None else round(p50, 1),
        "p95_ms": None if p95 is None else round(p95, 1),
    }


def watched(watcher: Watcher, begin: float, end: float) -> dict[str, Any]:
    """What a classroom saw in [begin, end]."""
    seconds = end - begin
    frames = [(t, n, h) for t, n, h in watcher.video if begin <= t <= end]
    shown = [t for t, n, _ in frames if n is not None]
    points = [begin, *shown, end]
    freezes = [(a, b - a) for a, b in zip(points, points[1:], strict=False) if b - a >= FREEZE_S]
    sound = sorted(pts for t, pts in watcher.audio if begin <= t <= end)
    spanned = (sound[-1] - sound[0]) // AUDIO_STEP + 1 if sound else 0
    heights = Counter(h for _, _, h in frames)
    numbers = [n for _, n, _ in frames if n is not None]
    return {
        "video_fps": len(frames) / seconds,
        "readable_fps": len(shown) / seconds,
        "unreadable": len(frames) - len(shown),
        "freeze_share": sum(gap for _, gap in freezes) / seconds,
        "freezes": [[round(a - begin, 2), round(gap, 2)] for a, gap in freezes],
        "audio_played": min(1.0, len(set(sound)) / spanned) if spanned else None,
        "audio_fps": len(sound) / seconds,
        "height": heights.most_common(1)[0][0] if heights else 0,
        "heights": dict(heights),
        "distinct_numbers": len(set(numbers)),
    }


# --- the server's view ----------------------------------------------------------------------


def _status(server: servers.Running) -> dict[str, Any]:
    answer: dict[str, Any] = server.api("GET", "/api/status", None, 10, servers.ADMIN_KEY)
    return answer


def _link(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next((c for c in status["classrooms"] if c["name"] == name), {})


def _made_layers(status: dict[str, Any], lesson_id: str) -> list[dict[str, Any]]:
    for entry in status["video_layers"]:
        if entry["lesson"] == lesson_id and entry["source"] == "camera":
            return [layer for layer in entry["layers"] if layer["made"]]
    return []


def _on_made_layer(status: dict[str, Any], lesson_id: str, name: str) -> bool:
    fed = _link(status, name).get("layers") or []
    return bool(_made_layers(status, lesson_id)) and bool(fed) and fed[0]["height"] <= 360


def settle(
    server: servers.Running, lesson_id: str, names: tuple[str, ...], made: bool
) -> tuple[float | None, dict[str, Any]]:
    """Waits until each named classroom is on the made layer (``made``) or paused to sound
    only; the seconds that took (None: not within ``SETTLE_S``, measured as it is then) and
    the last status."""
    began = time.monotonic()
    while True:
        status = _status(server)
        if all(
            _on_made_layer(status, lesson_id, name)
            if made
            else _link(status, name).get("state") == "audio_only"
            for name in names
        ):
            return time.monotonic() - began, status
        if time.monotonic() - began > SETTLE_S:
            links = {name: _link(status, name) for name in names}
            print(f"  {names} not settled within {SETTLE_S:.0f} s (made={made}): {links}")
            return None, status
        time.sleep(0.5)


def _wait(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {seconds:.0f} s")
        time.sleep(0.2)


# --- 1. CPU ---------------------------------------------------------------------------------


def cpu_window(
    server: servers.Running,
    origin_thread: OriginThread,
    frames: list[bytes],
    tmp: Path,
    *,
    rtsp: bool,
    poor: bool,
    made: bool,
    seconds: float,
) -> dict[str, Any]:
    """One lesson: the server's CPU (with its child processes) over ``seconds`` once its
    classrooms are settled."""
    camera = None
    origin = None
    body: dict[str, Any] = {"title": f"cpu rtsp={rtsp} poor={poor} made={made}", "record": False}
    if rtsp:
        camera = BenchCamera(frames, FPS, tmp)
        camera.start()
        body["source_url"] = camera.url()
    lesson = server.api("POST", "/api/lessons", body)
    sink = Sink("good")
    room = Watcher("poor", POOR) if poor else None
    try:
        if not rtsp:
            origin, _ = publish_stamped(
                origin_thread, lesson["whip_url"], lesson["whip_token"], frames
            )
        origin_thread.run(sink.join(lesson["whep_url"], lesson["whep_token"]))
        if room is not None:
            origin_thread.run(room.join(lesson["whep_url"], lesson["whep_token"]))
        settled_s: float | None = 0.0
        if room is not None:
            settled_s, _ = settle(server, lesson["id"], ("poor",), made)
        _wait(lambda: sink.stats.frames > 2 * FPS, 30, "the classroom got no picture")
        time.sleep(2)
        sink.reset()
        cpu, start = tree_cpu(server.pid), time.monotonic()
        time.sleep(seconds)
        took = time.monotonic() - start
        cores = (tree_cpu(server.pid) - cpu) / took
        status = _status(server)
        return {
            "cores": cores,
            "settled_s": None if settled_s is None else round(settled_s, 1),
            "good_frames_per_s": sink.stats.frames / took,
            "good_audio_packets_per_s": sink.stats.audio_packets / took,
            "poor_state": None if room is None else _link(status, "poor").get("state"),
            "made_layers": _made_layers(status, lesson["id"]),
        }
    finally:
        if room is not None:
            origin_thread.run(room.close())
        origin_thread.run(sink.close())
        if origin is not None:
            origin_thread.run(origin.close())
        server.api("POST", f"/api/lessons/{lesson['id']}/end")
        if camera is not None:
            camera.stop()


# --- 2 and 3. delay and the weak link -------------------------------------------------------


def watch_lesson(
    server: servers.Running,
    origin_thread: OriginThread,
    frames: list[bytes],
    tmp: Path,
    *,
    rtsp: bool,
    seconds: float,
) -> dict[str, Any]:
    """One lesson on the default server with decoding classrooms: ``good`` on loopback,
    ``narrow`` (and, for the camera, ``poor``) behind the link emulator. Once the emulated
    ones are on the made layer, ``seconds`` of watching."""
    camera = None
    origin = None
    body: dict[str, Any] = {"title": f"watch rtsp={rtsp}", "record": False}
    if rtsp:
        camera = BenchCamera(frames, FPS, tmp)
        camera.start()
        body["source_url"] = camera.url()
    lesson = server.api("POST", "/api/lessons", body)
    rooms = {"good": Watcher("good", None), "narrow": Watcher("narrow", NARROW, seed=2)}
    if rtsp:
        rooms["poor"] = Watcher("poor", POOR, seed=1)
    produced: Produced = {}
    try:
        if not rtsp:
            origin, produced = publish_stamped(
                origin_thread, lesson["whip_url"], lesson["whip_token"], frames
            )
        for room in rooms.values():
            origin_thread.run(room.join(lesson["whep_url"], lesson["whep_token"]))
        emulated = tuple(name for name in rooms if name != "good")
        settled_s, _ = settle(server, lesson["id"], emulated, True)
        time.sleep(2)  # the switch's keyframe and what the links had queued play out
        begin = time.monotonic()
        samples = []
        while time.monotonic() < begin + seconds:
            time.sleep(1)
            status = _status(server)
            samples.append(
                {
                    name: {
                        "state": _link(status, name).get("state"),
                        "reason": _link(status, name).get("why"),
                        "height": ((_link(status, name).get("layers") or [{}])[0]).get("height"),
                    }
                    for name in rooms
                }
            )
        end = time.monotonic()
        status = _status(server)
        if camera is not None:
            produced = camera.produced()
        result: dict[str, Any] = {
            "settled_s": None if settled_s is None else round(settled_s, 1),
            "seconds": round(end - begin, 1),
            "made_layers": _made_layers(status, lesson["id"]),
        }
        for name, room in rooms.items():
            figures = watched(room, begin, end)
            figures["delay"] = _delay(delays_ms(room.video, produced, begin, end))
            states = Counter(s[name]["state"] for s in samples)
            figures["pause_reasons"] = dict(
                Counter(s[name]["reason"] for s in samples if s[name]["state"] == "audio_only")
            )
            fed = Counter(s[name]["height"] for s in samples)
            figures["server_states"] = dict(states)
            figures["heights_fed"] = {str(k): v for k, v in fed.items()}
            figures["server"] = {
                k: _link(status, name).get(k)
                for k in (
                    "state",
                    "estimate_kbps",
                    "switches",
                    "nacks",
                    "retransmitted",
                    "not_resent",
                    "keyframe_requests",
                )
            }
            if room.link is not None:
                figures["link"] = room.link.downlink.stats.as_dict()
                figures["uplink"] = room.link.uplink.stats.as_dict()
            result[name] = figures
        return result
    finally:
        for room in rooms.values():
            origin_thread.run(room.close())
        if origin is not None:
            origin_thread.run(origin.close())
        server.api("POST", f"/api/lessons/{lesson['id']}/end")
        if camera is not None:
            camera.stop()


def camera_alone(frames: list[bytes], tmp: Path, seconds: float) -> dict[str, Any]:
    """The camera's own share of the delay: its stream read as the server reads it (FFmpeg
    through PyAV, RTSP over TCP) and decoded here, no server in between."""
    camera = BenchCamera(frames, FPS, tmp)
    camera.start()
    demuxed: list[tuple[float, int | None, int]] = []
    decoded: list[tuple[float, int | None, int]] = []
    try:
        container = av.open(
            camera.url(),
            options={"rtsp_transport": "tcp", "analyzeduration": "1000000"},
            timeout=10,
        )
        try:
            stream = container.streams.video[0]
            begin = time.monotonic()
            for packet in container.demux(stream):
                arrived = time.monotonic()
                for picture in packet.decode():
                    marker = read_marker(picture)
                    number = None if marker is None else marker.index
                    demuxed.append((arrived, number, picture.height))
                    decoded.append((time.monotonic(), number, picture.height))
                if arrived > begin + seconds:
                    break
        finally:
            container.close()
        produced = camera.produced()
    finally:
        camera.stop()
    end = time.monotonic()
    return {
        "demuxed": _delay(delays_ms(demuxed, produced, begin + 2, end)),
        "decoded": _delay(delays_ms(decoded, produced, begin + 2, end)),
    }


# --- report ---------------------------------------------------------------------------------


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The weak-link lessons in one: the run whose poor classroom froze the median share
    (its delays, freezes and layers as they were), with each classroom's freeze share, frames
    per second and sound played as medians over the runs."""
    ordered = sorted(runs, key=lambda run: run["poor"]["freeze_share"])
    middle = ordered[(len(ordered) - 1) // 2]
    out = dict(middle)
    for name in ("good", "narrow", "poor"):
        row = dict(middle[name])
        for key in ("freeze_share", "video_fps", "readable_fps", "audio_played"):
            values = sorted(run[name][key] for run in runs if run[name][key] is not None)
            row[key] = statistics.median(values) if values else None
        row["freeze_shares"] = [run[name]["freeze_share"] for run in runs]
        row["audio_played_runs"] = [run[name]["audio_played"] for run in runs]
        out[name] = row
    return out


def _paused(row: dict[str, Any]) -> str:
    """Of the once-a-second samples of the server's status, how many found the classroom's
    picture paused (sound only)."""
    states = row.get("server_states", {})
    return f"{states.get('audio_only', 0)} of {sum(states.values())} s"


def _ms(delay: dict[str, Any]) -> str:
    if delay["p50_ms"] is None:
        return "–"
    return f"{delay['p50_ms']:.0f} / {delay['p95_ms']:.0f}"


def _minus(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a["p50_ms"] is None or b["p50_ms"] is None:
        return "–"
    return f"{a['p50_ms'] - b['p50_ms']:+.0f}"


def _layer(layers: list[dict[str, Any]]) -> str:
    if not layers:
        return "none"
    layer = layers[0]
    return (
        f"{layer['width']}x{layer['height']} {layer['fps']:.0f} fps "
        f"{layer['bitrate'] / 1000:.0f} kbit/s"
    )


def markdown(result: dict[str, Any]) -> str:
    cpu, whip, rtsp = result["cpu"], result["whip"], result["rtsp"]
    alone = result["camera_alone"]
    clip = result["source"]
    lines = [
        f"# School sources: RTSP ingest and the made layer ({result['started']})",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}  ",
        f"Source: {clip['width']}x{clip['height']} H.264 at {clip['fps']} fps, "
        f"{clip['mbit_s']:.2f} Mbit/s, one layer, a keyframe each second, every picture "
        "numbered; over WHIP (the benchmark origin, Opus) or from a real RTSP camera "
        "(GStreamer's RTSP server, the same clip with live AAC), pulled by the server.",
        "",
        f"## CPU (server and its child processes, cores; {result['seconds']:g} s windows, "
        "same run)",
        "",
        "| lesson | classrooms | server | cores | against | costs |",
        "|---|---|---|---|---|---|",
        f"| forwarding only (WHIP) | 1 on loopback | `--no-made-layer` "
        f"| {cpu['whip']['cores']:.3f} | | |",
        f"| RTSP ingest (camera pulled, AAC to Opus) | 1 on loopback | `--no-made-layer` "
        f"| {cpu['rtsp']['cores']:.3f} | forwarding only "
        f"| {(cpu['rtsp']['cores'] - cpu['whip']['cores']) * 1000:.0f} millicores |",
        f"| forwarding only (WHIP) | loopback + poor (sound only) | `--no-made-layer` "
        f"| {cpu['whip_poor']['cores']:.3f} | | |",
        f"| with the made layer (WHIP) | loopback + poor (on the made layer: "
        f"{_layer(cpu['made']['made_layers'])}) | default | {cpu['made']['cores']:.3f} "
        f"| the line above "
        f"| {(cpu['made']['cores'] - cpu['whip_poor']['cores']) * 1000:.0f} millicores |",
        "",
        "## Delay a source adds, glass to glass (ms, p50 / p95)",
        "",
        "From the moment the source produced a numbered frame (the origin's clip due, or the "
        "camera handing it to its pipeline) to the moment a classroom had it decoded and read "
        "the number back; same clock (CLOCK_MONOTONIC) on both sides.",
        "",
        "The classrooms are aiortc receivers: their jitter buffer hands a frame to the decoder "
        "once the next one begins, one frame (33 ms) in every row. The camera's pipeline sends "
        "a frame as soon as it is handed in (GStreamer latency 0); the rows *camera alone* "
        "read it with FFmpeg, as the server does, without the server.",
        "",
        "| path | classroom | delay p50 / p95 | frames | height |",
        "|---|---|---|---|---|",
        f"| WHIP, forwarded | loopback | {_ms(whip['good']['delay'])} "
        f"| {whip['good']['delay']['frames']} | {whip['good']['height']} |",
        f"| RTSP camera alone, read by FFmpeg here (no server): demuxed "
        f"| – | {_ms(alone['demuxed'])} | {alone['demuxed']['frames']} | |",
        f"| RTSP camera alone, read by FFmpeg here (no server): decoded "
        f"| – | {_ms(alone['decoded'])} | {alone['decoded']['frames']} | |",
        f"| RTSP camera, ingested and forwarded | loopback | {_ms(rtsp['good']['delay'])} "
        f"| {rtsp['good']['delay']['frames']} | {rtsp['good']['height']} |",
        f"| WHIP, made layer | narrow link (1 Mbit/s, no loss, no delay) "
        f"| {_ms(whip['narrow']['delay'])} | {whip['narrow']['delay']['frames']} "
        f"| {whip['narrow']['height']} |",
        f"| RTSP camera, made layer | narrow link | {_ms(rtsp['narrow']['delay'])} "
        f"| {rtsp['narrow']['delay']['frames']} | {rtsp['narrow']['height']} |",
        f"| RTSP camera, made layer | poor link (150 ms RTT, 3 % loss, 1 Mbit/s) "
        f"| {_ms(rtsp['poor']['delay'])} | {rtsp['poor']['delay']['frames']} "
        f"| {rtsp['poor']['height']} |",
        "",
        f"## Weak link, {clip['height']}p single-layer RTSP camera ({result['runs']} lessons of "
        f"{rtsp['seconds']:.0f} s, medians; the median lesson's poor classroom on the made layer "
        + (
            f"not within {SETTLE_S:.0f} s: measured from then)"
            if rtsp["settled_s"] is None
            else f"{rtsp['settled_s']:.0f} s after joining, measured from then)"
        ),
        "",
        "| classroom | height decoded | frames decoded/s | readable/s | frozen | sound played "
        "| frozen, each lesson | picture paused by the server, each lesson | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, target in (
        ("poor", "frozen ≤ 1 %, sound ≥ 99 %, made layer"),
        ("good", f"the original {clip['height']} lines"),
        ("narrow", ""),
    ):
        row = rtsp[name]
        audio = "–" if row["audio_played"] is None else f"{row['audio_played']:.1%}"
        lines.append(
            f"| {name} | {row['height']} | {row['video_fps']:.1f} | {row['readable_fps']:.1f} "
            f"| {row['freeze_share']:.1%} | {audio} "
            f"| {', '.join(f'{share:.1%}' for share in row.get('freeze_shares', []))} "
            f"| {', '.join(_paused(run[name]) for run in result['rtsp_runs'])} "
            f"| {target} |"
        )
    lines += [
        "",
        f"Made layer of the camera: {_layer(rtsp['made_layers'])}. Poor classroom's freezes "
        f"in each lesson (start s, length s): "
        f"{'; '.join(str(run['poor']['freezes'] or 'none') for run in result['rtsp_runs'])}. "
        "*picture paused*: the send gate paused the classroom's video (sound only, "
        "`audio_only`), sampled each second. *frozen*: gaps of "
        f"{FREEZE_S * 1000:.0f} ms or more between frames decoded with a readable number. "
        "*sound played*: 20 ms frames decoded over those their timestamps span.",
        "",
        "What the source adds over WHIP forwarding (p50): RTSP ingest "
        f"{_minus(rtsp['good']['delay'], whip['good']['delay'])} ms; the made layer "
        f"{_minus(whip['narrow']['delay'], whip['good']['delay'])} ms (WHIP), "
        f"{_minus(rtsp['narrow']['delay'], rtsp['good']['delay'])} ms (RTSP, over RTSP "
        "forwarding).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench school-sources",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="CPU and WHIP windows")
    parser.add_argument("--weak-seconds", type=float, default=60.0, help="the RTSP weak link")
    parser.add_argument(
        "--runs", type=int, default=3, help="RTSP weak-link lessons, one after the other"
    )
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--height", type=int, default=HEIGHT)
    parser.add_argument("--bitrate", type=int, default=BITRATE)
    args = parser.parse_args(argv)
    if not 5 <= args.seconds <= 120 or not 10 <= args.weak_seconds <= 180:
        parser.error("bounded load: 5-120 s windows, 10-180 s on the weak link")
    if not 1 <= args.runs <= 9:
        parser.error("bounded load: 1-9 runs of the weak link")
    loopback_only()
    _install_jitter_buffer()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    print("clip", flush=True)
    frames = numbered_clip(args.width, args.height, args.bitrate)
    cpu: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as name:
        tmp = Path(name)
        (tmp / "plain").mkdir()
        (tmp / "made").mkdir()
        plain = servers.start("syncclass", tmp / "plain", "--no-made-layer")
        made = servers.start("syncclass", tmp / "made")
        origin_thread = OriginThread()
        try:
            for key, server, pulled, poor, with_made in (
                ("whip", plain, False, False, False),
                ("rtsp", plain, True, False, False),
                ("whip_poor", plain, False, True, False),
                ("made", made, False, True, True),
            ):
                print(f"cpu: {key}", flush=True)
                cpu[key] = cpu_window(
                    server,
                    origin_thread,
                    frames,
                    tmp,
                    rtsp=pulled,
                    poor=poor,
                    made=with_made,
                    seconds=args.seconds,
                )
                print(f"  {cpu[key]['cores']:.3f} cores", flush=True)
            print("delay: the camera alone", flush=True)
            alone = camera_alone(frames, tmp, min(args.seconds, 10.0))
            print("delay: WHIP", flush=True)
            whip = watch_lesson(made, origin_thread, frames, tmp, rtsp=False, seconds=args.seconds)
            runs = []
            for run in range(args.runs):
                print(f"delay and weak link: RTSP camera, run {run + 1}/{args.runs}", flush=True)
                runs.append(
                    watch_lesson(
                        made, origin_thread, frames, tmp, rtsp=True, seconds=args.weak_seconds
                    )
                )
                print(f"  poor: {runs[-1]['poor']['freeze_share']:.1%} frozen", flush=True)
        finally:
            origin_thread.stop()
            plain.stop()
            made.stop()
    rtsp = median_run(runs)
    result = {
        "benchmark": "school-sources",
        "command": "scripts/bench school-sources " + " ".join(argv or []),
        "started": started,
        "machine": report.machine(),
        "seconds": args.seconds,
        "weak_seconds": args.weak_seconds,
        "runs": args.runs,
        "source": {
            "width": args.width,
            "height": args.height,
            "fps": FPS,
            "gop": GOP,
            "mbit_s": sum(len(f) for f in frames) * 8 * FPS / len(frames) / 1e6,
        },
        "cpu": cpu,
        "whip": whip,
        "rtsp": rtsp,
        "rtsp_runs": runs,
        "camera_alone": alone,
        "median_delay_ms": {
            "whip_forwarded": whip["good"]["delay"]["p50_ms"],
            "rtsp_ingested": rtsp["good"]["delay"]["p50_ms"],
            "made_layer_whip": whip["narrow"]["delay"]["p50_ms"],
            "made_layer_rtsp": rtsp["narrow"]["delay"]["p50_ms"],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "school-sources"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
