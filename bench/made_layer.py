"""Made-layer benchmark: what a lighter layer made once per lesson costs the server.

    scripts/bench made-layer [--seconds 20] [--sources h264-1080p,vp8-720p]

For each single-layer source (a pre-encoded clip the origin sends over WHIP), the same lesson
runs on two servers started side by side: one with ``--no-made-layer`` (forwarding only), one
as by default. Each lesson has a classroom on loopback (counts packets, decodes nothing) and
one behind the link emulator's poor profile (1 Mbit/s, 3 % loss, 150 ms: it decodes what it
gets, in this process). On the default server the poor classroom ends up on the made layer;
once it does (or once the baseline has paused its picture), the CPU of each server (with its
child processes: the made layer's) is measured over the same window. The difference is the
cost of the made layer: decoding the source once, scaling it and encoding 360 lines once,
whatever the number of classrooms fed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.link_emulator import POOR

from . import report, servers
from .clip import opus_clip, video_clip
from .fanout import RESULTS, OriginThread
from .peers import Sink, loopback_only, publish
from .recorder_cpu import tree_cpu
from .weak_links import Room, _install_decoder

# name: (codec, width, height, bitrate)
SOURCES = {
    "h264-1080p": ("H264", 1920, 1080, 2_500_000),
    "h264-720p": ("H264", 1280, 720, 1_500_000),
    "vp8-720p": ("VP8", 1280, 720, 1_500_000),
}
SETTLE_S = 60.0  # the most a lesson waits for its poor classroom to settle


def _status(server: servers.Running) -> dict[str, Any]:
    answer: dict[str, Any] = server.api("GET", "/api/status", None, 10, servers.ADMIN_KEY)
    return answer


def _lesson_layers(status: dict[str, Any], lesson_id: str) -> list[dict[str, Any]]:
    for entry in status["video_layers"]:
        if entry["lesson"] == lesson_id and entry["source"] == "camera":
            return list(entry["layers"])
    return []


def _poor_link(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status["classrooms"] if c["name"] == "poor"), {})


def _settled(status: dict[str, Any], lesson_id: str, made: bool) -> bool:
    link = _poor_link(status)
    if not made:
        return link.get("state") == "audio_only"
    fed = link.get("layers") or []
    layers = _lesson_layers(status, lesson_id)
    return any(layer["made"] for layer in layers) and bool(fed) and fed[0]["height"] <= 360


def lesson(
    server: servers.Running,
    made: bool,
    source: str,
    seconds: float,
    origin_thread: OriginThread,
) -> dict[str, Any]:
    codec, width, height, bitrate = SOURCES[source]
    body = server.api("POST", "/api/lessons", {"title": f"{source} made={made}", "record": False})
    lesson_id = body["id"]
    origin = origin_thread.run(
        publish(
            body["whip_url"],
            body["whip_token"],
            video_clip(codec, 10, width, height, bitrate),
            opus_clip(),
        )
    )
    good = Sink("good")
    poor = Room("poor", POOR, seed=1)
    try:
        origin_thread.run(good.join(body["whep_url"], body["whep_token"]))
        origin_thread.run(poor.join(body["whep_url"], body["whep_token"]))
        began = time.monotonic()
        status = _status(server)
        while not _settled(status, lesson_id, made):
            if time.monotonic() - began > SETTLE_S:
                raise RuntimeError(f"{source}: the poor classroom never settled: {status}")
            time.sleep(0.5)
            status = _status(server)
        settled_s = time.monotonic() - began
        time.sleep(2)  # the switch's keyframe and what the link had queued play out
        frames, audio = len(poor.seen.video), poor.seen.audio
        good.reset()
        cpu, start = tree_cpu(server.pid), time.monotonic()
        time.sleep(seconds)
        took = time.monotonic() - start
        cores = (tree_cpu(server.pid) - cpu) / took
        status = _status(server)
        heights = poor.seen.heights[frames:]
        return {
            "made_layer": made,
            "cores": cores,
            "settled_s": round(settled_s, 1),
            "layers": _lesson_layers(status, lesson_id),
            "poor": {
                "state": _poor_link(status).get("state"),
                "video_fps": (len(poor.seen.video) - frames) / took,
                "audio_fps": (poor.seen.audio - audio) / took,
                "height": max(set(heights), key=heights.count) if heights else 0,
            },
            "good_frames_per_s": good.stats.frames / took,
        }
    finally:
        origin_thread.run(poor.close())
        origin_thread.run(good.close())
        origin_thread.run(origin.close())
        server.api("POST", f"/api/lessons/{lesson_id}/end")


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Made-layer benchmark ({result['started']})",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}  ",
        f"Window: {result['seconds']:g} s per lesson; CPU of the server and its child "
        "processes (cores), same run",
        "",
        "| source | forwarding only | with the made layer | made layer costs | made layer "
        "| poor classroom on it |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["sources"].items():
        plain, made = row["forwarding_only"], row["made_layer"]
        layer = next((layer for layer in made["layers"] if layer["made"]), None)
        described = (
            f"{layer['width']}x{layer['height']} {layer['fps']:.0f} fps "
            f"{layer['bitrate'] / 1000:.0f} kbit/s"
            if layer
            else "none"
        )
        poor = made["poor"]
        lines.append(
            f"| {name} | {plain['cores']:.3f} | {made['cores']:.3f} "
            f"| {row['made_layer_millicores']:.0f} millicores | {described} "
            f"| {poor['height']} lines, {poor['video_fps']:.1f} fps, sound "
            f"{poor['audio_fps']:.1f} frames/s (after {made['settled_s']:.0f} s) |"
        )
    lines += [
        "",
        "Forwarding only: the same lesson on a server with `--no-made-layer` (the poor "
        "classroom gets sound only).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench made-layer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sources", default="h264-1080p,vp8-720p")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.sources.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SOURCES]
    if unknown or not chosen:
        parser.error(f"sources among {', '.join(SOURCES)}")
    if not 5 <= args.seconds <= 120:
        parser.error("bounded load: 5-120 seconds")
    loopback_only()
    _install_decoder()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        plain_dir, made_dir = Path(tmp) / "plain", Path(tmp) / "made"
        plain_dir.mkdir()
        made_dir.mkdir()
        plain = servers.start("syncclass", plain_dir, "--no-made-layer")
        made = servers.start("syncclass", made_dir)
        origin_thread = OriginThread()
        try:
            for name in chosen:
                print(f"{name}: forwarding only", flush=True)
                baseline = lesson(plain, False, name, args.seconds, origin_thread)
                print(f"{name}: with the made layer", flush=True)
                with_made = lesson(made, True, name, args.seconds, origin_thread)
                rows[name] = {
                    "source": dict(
                        zip(("codec", "width", "height", "bitrate"), SOURCES[name], strict=True)
                    ),
                    "forwarding_only": baseline,
                    "made_layer": with_made,
                    "made_layer_millicores": (with_made["cores"] - baseline["cores"]) * 1000,
                }
                print(f"  {baseline['cores']:.3f} -> {with_made['cores']:.3f} cores", flush=True)
        finally:
            origin_thread.stop()
            plain.stop()
            made.stop()
    result = {
        "benchmark": "made-layer",
        "command": "scripts/bench made-layer " + " ".join(argv or []),
        "started": started,
        "machine": report.machine(),
        "seconds": args.seconds,
        "sources": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "made-layer"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
