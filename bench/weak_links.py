"""Weak-link benchmark: what classrooms on rural links hear and see, adapted and not.

    scripts/bench weak-links [--seconds 60] [--runs 3]

A teacher publishes a moving, textured 1280x720 VP8 picture at ~1.6 Mbit/s with Opus (the
benchmark origin: pre-encoded, paced as a browser paces, answering keyframe requests). Five
aiortc classrooms watch it at once, each behind its own link emulator
(tests/support/link_emulator.py): good, rural, poor, satellite, and collapse (good, fallen to
300 kbit/s for 20 s). The classrooms are real WebRTC receivers on the wire (ICE, DTLS, SRTP,
receiver reports, NACK, REMB from aiortc's own estimator, PLI) with a stand-in for the video
decoder: it hands on every complete frame aiortc's jitter buffer gives it, and refuses (like a
real decoder, which then asks for a keyframe) a frame whose reference was lost. Sound is
decoded for real.

Per classroom: the share of 20 ms audio frames played and the time concealed, decoded video
frames per second, freeze time (gaps of 500 ms or more between frames), the datagrams and bytes
the server sent into the link (retransmissions, keyframes and probes included), the queueing
delay of frames (above the fastest one), and the server's own view (state, estimate,
switches). The same is run against a server with ``--no-adaptation`` in each run, as the
baseline; figures are medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tests.support.link_emulator import (
    GOOD,
    POOR,
    RURAL,
    SATELLITE,
    LinkEmulator,
    Profile,
)

from . import report, servers
from .clip import opus_clip, video_clip
from .fanout import OriginThread
from .peers import loopback_only, new_pc, post, publish

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT, BITRATE = 1280, 720, 1_600_000
FREEZE_S = 0.5
AUDIO_FRAME_S = 0.02
VIDEO_TICKS = 3000  # 90 kHz ticks between frames at 30 fps
PROFILES = ("good", "rural", "poor", "satellite", "collapse")
COLLAPSE_RATE = 300e3


# --- the classroom's video decoder stand-in ------------------------------------------------


class ChainDecoder:
    """Takes aiortc's complete VP8 frames: a keyframe starts a chain, a frame whose
    predecessor is missing breaks it (refused, so aiortc asks for a keyframe)."""

    def __init__(self) -> None:
        self.last_ts: int | None = None
        self.broken = True

    def decode(self, encoded: Any) -> list[av.VideoFrame]:
        data, ts = encoded.data, encoded.timestamp
        keyframe = bool(data) and not data[0] & 0x01
        follows = self.last_ts is not None and 0 < (ts - self.last_ts) & 0xFFFFFFFF <= VIDEO_TICKS
        self.last_ts = ts
        if keyframe:
            self.broken = False
        elif self.broken or not follows:
            self.broken = True
            raise av.error.InvalidDataError(1094995529, "reference frame lost")
        frame = av.VideoFrame(2, 2, "yuv420p")
        frame.pts = ts
        return [frame]


def _install_decoder() -> None:
    import aiortc.rtcrtpreceiver as receiver_module

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
    audio: int = 0
    audio_delay: list[float] = field(default_factory=list)


class Room:
    def __init__(self, name: str, profile: Profile, seed: int) -> None:
        self.name = name
        self.link = LinkEmulator(profile, seed=seed)
        self.pc = new_pc()
        self.seen = Seen()
        self._tasks: list[asyncio.Task[None]] = []

    async def join(self, whep_url: str, token: str) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        relay = await self.link.open_relay()
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
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            delay = now - (frame.pts or 0) / rate
            if kind == "video":
                self.seen.video.append(now)
                self.seen.video_delay.append(delay)
            else:
                self.seen.audio += 1
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
    points = [begin, *frames, end]
    freeze = sum(b - a for a, b in zip(points, points[1:], strict=False) if b - a >= FREEZE_S)
    played = min(room.seen.audio, audio_sent)
    down = room.link.downlink.stats.as_dict()
    return {
        "audio_played": played / audio_sent if audio_sent else None,
        "audio_concealed_s": round((audio_sent - played) * AUDIO_FRAME_S, 2),
        "video_fps": len(frames) / seconds,
        "freeze_share": freeze / seconds,
        "server_datagrams": down["datagrams_in"] - link_before["datagrams_in"],
        "server_kbit_s": (down["bytes_in"] - link_before["bytes_in"]) * 8 / seconds / 1000,
        "link_dropped": sum(down[k] - link_before[k] for k in ("lost", "overflow")),
        "video_delay_ms": _delay_ms(room.seen.video_delay),
        "audio_delay_ms": _delay_ms(room.seen.audio_delay),
    }


# --- one run ------------------------------------------------------------------------------


def _profile(name: str) -> Profile:
    return {"good": GOOD, "rural": RURAL, "poor": POOR, "satellite": SATELLITE}.get(name, GOOD)


async def _watch(
    server: servers.Running, rooms: list[Room], origin: Any, seconds: float
) -> dict[str, Any]:
    for room in rooms:
        room.seen = Seen()
    collapse_room = next(r for r in rooms if r.name == "collapse")
    squeeze_at, squeeze_s = seconds / 6, min(20.0, seconds / 3)
    before = {r.name: r.link.downlink.stats.as_dict() for r in rooms}
    audio_before = origin.audio.sent
    begin = time.monotonic()
    states: dict[str, list[tuple[float, str]]] = {r.name: [] for r in rooms}
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
        status = await asyncio.to_thread(
            server.api, "GET", "/api/status", None, 10, servers.ADMIN_KEY
        )
        for link in status["classrooms"]:
            if link["name"] in states:
                states[link["name"]].append((time.monotonic() - begin, link["state"]))
        await asyncio.sleep(1.0)
    end = time.monotonic()
    audio_sent = origin.audio.sent - audio_before
    status = await asyncio.to_thread(server.api, "GET", "/api/status", None, 10, servers.ADMIN_KEY)
    final = {link["name"]: link for link in status["classrooms"]}
    result = {}
    for room in rooms:
        figures = summarise(room, begin, end, audio_sent, before[room.name])
        seen = states[room.name]
        audio_only = sum(1 for _, s in seen if s == "audio_only")
        figures["audio_only_share"] = audio_only / len(seen) if seen else 0.0
        figures["switches"] = sum(1 for a, b in zip(seen, seen[1:], strict=False) if a[1] != b[1])
        if room.name == "collapse" and recovered is not None:
            back = next((t for t, s in seen if t >= recovered and s == "full"), None)
            figures["collapse_s"] = [round(squeezed or 0, 1), round(recovered, 1)]
            figures["full_again_after_s"] = None if back is None else round(back - recovered, 1)
        figures["server"] = {
            k: final.get(room.name, {}).get(k)
            for k in ("state", "why", "estimate_kbps", "switches", "audio_repeat")
        }
        result[room.name] = figures
    return result


def run_once(adaptive: bool, clip: Any, opus: Any, seconds: float, seed: int) -> dict[str, Any]:
    options = () if adaptive else ("--no-adaptation",)
    with tempfile.TemporaryDirectory(prefix="bench-weak-") as tmp:
        server = servers.start("syncclass", Path(tmp), *options)
        origin_thread = OriginThread()
        try:
            lesson = server.lesson("weak links")
            origin = origin_thread.run(publish(lesson.whip_url, lesson.whip_token, clip, opus))

            async def lesson_run() -> dict[str, Any]:
                rooms = [Room(n, _profile(n), seed * 10 + i) for i, n in enumerate(PROFILES)]
                try:
                    for room in rooms:
                        await room.join(lesson.whep_url, lesson.whep_token)
                    await asyncio.sleep(5.0)  # connected, first keyframe, first estimates
                    return await _watch(server, rooms, origin, seconds)
                finally:
                    for room in rooms:
                        await room.close()

            result = asyncio.run(lesson_run())
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
    ("audio_only_share", "sound only", "{:.0%}"),
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
            back = [
                r["full_again_after_s"] for r in rows if r.get("full_again_after_s") is not None
            ]
            if name == "collapse":
                figures["full_again_after_s"] = statistics.median(back) if back else None
            out[mode][name] = figures
        good = out[mode]["good"]["server_datagrams"] or 1
        for name in PROFILES:
            datagrams = out[mode][name]["server_datagrams"]
            out[mode][name]["datagrams_vs_good"] = None if datagrams is None else datagrams / good
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Weak links",
        "",
        f"`{result['command']}` — {result['started']}, {result['machine']['cpus']} CPUs, "
        f"{len(result['runs'])} runs of {result['seconds']:.0f} s, medians. Teacher: "
        f"{WIDTH}x{HEIGHT} VP8 at {result['clip_mbit_s']:.2f} Mbit/s + Opus. Classrooms: aiortc "
        "receivers (REMB, RR, NACK, PLI) behind the link emulator. *adapted*: this server; "
        "*baseline*: the same server with `--no-adaptation` (everybody gets everything), same run.",
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
    collapse = result["medians"]["adapted"]["collapse"].get("full_again_after_s")
    lines += [
        "",
        "*sound only*: share of the window the server sent the classroom sound only (仅声音). "
        "*datagrams sent*: what the server sent into the classroom's link (retransmissions, "
        "keyframes, probes and repeated sound included); *vs good*: the same over the good "
        "classroom's. *delay p95*: above the fastest frame (queueing and jitter).",
        "",
        f"Collapse (300 kbit/s for {min(20.0, result['seconds'] / 3):.0f} s, from "
        f"{result['seconds'] / 6:.0f} s): video full again "
        + ("never within the window" if collapse is None else f"{collapse:.0f} s")
        + " after the link came back (adapted).",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    xs = range(len(PROFILES))
    for axis, (key, label, scale) in zip(
        axes,
        (
            ("audio_played", "audio frames played (%)", 100),
            ("freeze_share", "video frozen (%)", 100),
            ("datagrams_vs_good", "datagrams sent vs good", 1),
        ),
        strict=True,
    ):
        for offset, mode, colour in ((-0.2, "adapted", "tab:blue"), (0.2, "baseline", "tab:red")):
            values = [(result["medians"][mode][n][key] or 0) * scale for n in PROFILES]
            axis.bar([x + offset for x in xs], values, 0.4, label=mode, color=colour)
        axis.set_xticks(list(xs), PROFILES)
        axis.set_title(label)
    axes[0].legend()
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
    args = parser.parse_args(argv)
    if not 10 <= args.seconds <= 300 or not 1 <= args.runs <= 5:
        parser.error("bounded load: 10-300 s windows, 1 to 5 runs")
    loopback_only()
    _install_decoder()
    clip = video_clip("VP8", 10, WIDTH, HEIGHT, BITRATE)
    opus = opus_clip()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    runs = []
    for run in range(args.runs):
        one = {}
        for mode, adaptive in (("adapted", True), ("baseline", False)):
            print(f"run {run + 1} of {args.runs}, {mode}:", flush=True)
            one[mode] = run_once(adaptive, clip, opus, args.seconds, seed=run + 1)
            for name in PROFILES:
                f = one[mode][name]
                print(
                    f"  {name:9s} audio {f['audio_played']:.1%} video {f['video_fps']:.1f} fps "
                    f"frozen {f['freeze_share']:.0%} sound-only {f['audio_only_share']:.0%} "
                    f"sent {f['server_datagrams']} datagrams, {f['server_kbit_s']:.0f} kbit/s",
                    flush=True,
                )
        runs.append(one)
    result = {
        "benchmark": "weak-links",
        "command": "scripts/bench weak-links " + " ".join(argv if argv is not None else []),
        "started": started,
        "machine": report.machine(),
        "seconds": args.seconds,
        "clip_mbit_s": clip.bitrate / 1e6,
        "runs": runs,
        "medians": medians(runs),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "weak-links"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    plot(result, stem.with_suffix(".png"))
    print(markdown(result))
