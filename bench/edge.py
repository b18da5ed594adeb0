"""Edge benchmark: what relaying a lesson through an edge server adds, and what it asks of
the teacher.

    scripts/bench edge [--seconds 8] [--runs 3] [--joins 50]

Two servers on loopback: the origin, where the benchmark's teacher publishes a pre-encoded
640x480 VP8 clip at ~1 Mbit/s with Opus (paced as a browser paces it, a keyframe only when
asked: bench/peers.py), and an edge whose lesson's ``source_url`` is the origin's WHEP URL.

1. **Delay per hop.** One sink classroom on the origin and one on the edge, in the same
   process (one clock): every video packet is known by the tail of its payload, which no
   server rewrites; the hop's delay is when the edge's classroom got a packet less when the
   origin's got it. p50 and p99 over ``--seconds``, the medians of ``--runs`` runs.
2. **Keyframe requests reaching the teacher** while ``--joins`` sink classrooms (worker
   processes, bench/sinks.py) join the edge at once, each needing a keyframe to start: the
   keyframe requests (PLI/FIR) the teacher's sender receives per second, over the joins and
   the 3 s after, and the most in any one second; and how many classrooms started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from . import servers
from .clip import opus_clip, video_clip
from .fanout import RESULTS, Classrooms, OriginThread, percentile
from .peers import Origin, Sink, loopback_only, publish

TAIL = 24  # payload bytes that tell a packet apart: the end of a compressed frame's slice
SETTLE_S = 2.0
AFTER_JOINS_S = 3.0


class StampingSink(Sink):
    """A sink classroom that notes when each video packet first arrived, by its payload's
    tail (a retransmission carries the same tail: the first arrival counts)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.arrivals: dict[bytes, float] = {}
        self.recording = False

    def _hook(self, receiver: Any, kind: str) -> Any:
        count = super()._hook(receiver, kind)
        if kind != "video":
            return count

        def stamp(packet: Any) -> None:
            if self.recording and len(packet.payload) > 2 * TAIL:
                self.arrivals.setdefault(packet.payload[-TAIL:], time.monotonic())
            count(packet)

        return stamp


async def hop_delays(origin_whep: servers.Lesson, edge_whep: servers.Lesson, seconds: float) -> Any:
    at_origin = StampingSink("bench-origin-probe")
    at_edge = StampingSink("bench-edge-probe")
    try:
        await at_origin.join(origin_whep.whep_url, origin_whep.whep_token)
        await at_edge.join(edge_whep.whep_url, edge_whep.whep_token)
        deadline = time.monotonic() + 20
        while at_edge.stats.video_packets == 0 or at_origin.stats.video_packets == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("no video reached the probes")
            await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE_S)
        at_origin.recording = at_edge.recording = True
        await asyncio.sleep(seconds)
        at_origin.recording = at_edge.recording = False
        delays = [
            (at_edge.arrivals[key] - first) * 1000
            for key, first in at_origin.arrivals.items()
            if key in at_edge.arrivals
        ]
        return {
            "packets_origin": len(at_origin.arrivals),
            "packets_edge": len(at_edge.arrivals),
            "matched": len(delays),
            "p50_ms": percentile(delays, 50),
            "p99_ms": percentile(delays, 99),
            "max_ms": max(delays) if delays else None,
        }
    finally:
        await at_origin.close()
        await at_edge.close()


def wait_live(edge: servers.Running, lesson_id: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = edge.api("GET", f"/api/lessons/{lesson_id}")
        source = body.get("camera_source") or {}
        if source.get("state") == "live":
            return
        time.sleep(0.2)
    raise RuntimeError(f"the edge never relayed the lesson: {body.get('camera_source')}")


def keyframe_storm(
    edge: servers.Running, lesson: servers.Lesson, origin: Origin, joins: int
) -> dict[str, Any]:
    rooms = Classrooms(lesson, workers=2, prefix="bench-edge", decode=False, background=False)
    try:
        time.sleep(1.0)  # the workers' imports, before the clock starts
        before = len(origin.video.keyframe_requests)
        started = time.monotonic()
        rooms.join(joins, concurrency=joins)
        joined = time.monotonic()
        time.sleep(AFTER_JOINS_S)
        ended = time.monotonic()
        requests = [t for t in origin.video.keyframe_requests[before:] if started <= t <= ended]
        most = max(
            (sum(1 for u in requests if t <= u < t + 1.0) for t in requests),
            default=0,
        )
        stats = rooms.stats()
        window = ended - started
        return {
            "classrooms": joins,
            "joins_s": round(joined - started, 2),
            "window_s": round(window, 2),
            "requests": len(requests),
            "per_s": len(requests) / window,
            "most_in_1s": most,
            "started": sum(1 for s in stats if s["video_packets"] > 0),
            "keyframe_first": sum(1 for s in stats if s["keyframe_first"]),
        }
    finally:
        rooms.close()


def run(seconds: float, runs: int, joins: int) -> dict[str, Any]:
    loopback_only()
    clip, opus = video_clip("VP8"), opus_clip()
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        for name in ("origin", "edge"):
            Path(tmp, name).mkdir()
        origin_server = servers.start("syncclass", Path(tmp, "origin"))
        edge_server = servers.start("syncclass", Path(tmp, "edge"))
        thread = OriginThread()
        try:
            lesson = origin_server.lesson("edge bench")
            teacher: Origin = thread.run(publish(lesson.whip_url, lesson.whip_token, clip, opus))
            port = origin_server.url.rsplit(":", 1)[1]
            lesson_id = lesson.whep_url.rsplit("/", 1)[1]
            source = f"http://bench-edge:{lesson.whep_token}@127.0.0.1:{port}/whep/{lesson_id}"
            body = edge_server.api(
                "POST",
                "/api/lessons",
                {
                    "title": "edge bench",
                    "max_classrooms": 1000,
                    "record": False,
                    "source_url": source,
                },
            )
            at_edge = servers.Lesson(
                body["whip_url"], body["whip_token"], body["whep_url"], body["whep_token"]
            )
            wait_live(edge_server, body["id"])
            hops = []
            for run_index in range(runs):
                # the probes on a loop of their own, beside the teacher's
                hop = asyncio.run(hop_delays(lesson, at_edge, seconds))
                print(
                    f"run {run_index + 1}: hop p50 {hop['p50_ms']:.2f} ms, "
                    f"p99 {hop['p99_ms']:.2f} ms ({hop['matched']} packets)",
                    flush=True,
                )
                hops.append(hop)
            storm = keyframe_storm(edge_server, at_edge, teacher, joins)
            print(f"joins: {storm}", flush=True)
            relay = edge_server.api("GET", f"/api/lessons/{body['id']}")["camera_source"]
            thread.run(teacher.close())
        finally:
            thread.stop()
            edge_server.stop()
            origin_server.stop()
    return {
        "seconds": seconds,
        "runs": hops,
        "hop_p50_ms": statistics.median(h["p50_ms"] for h in hops),
        "hop_p99_ms": statistics.median(h["p99_ms"] for h in hops),
        "storm": storm,
        "edge_keyframe_requests_upstream": relay["keyframe_requests"],
    }


def markdown(result: dict[str, Any]) -> str:
    storm = result["storm"]
    p99_ok = result["hop_p99_ms"] <= 5
    rate_ok = storm["per_s"] <= 2
    lines = [
        "# Edge: one hop origin → edge",
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
        f"| added delay per hop, p50 | {result['hop_p50_ms']:.2f} ms | | |",
        f"| added delay per hop, p99 | {result['hop_p99_ms']:.2f} ms | ≤ 5 ms | "
        f"{'ok' if p99_ok else 'MISSED'} |",
        f"| keyframe requests reaching the teacher while {storm['classrooms']} classrooms "
        f"join the edge | {storm['per_s']:.2f}/s ({storm['requests']} in "
        f"{storm['window_s']:.1f} s, at most {storm['most_in_1s']} in 1 s) | ≤ 2/s | "
        f"{'ok' if rate_ok else 'MISSED'} |",
        f"| classrooms that started (first packet a keyframe) | {storm['started']} "
        f"({storm['keyframe_first']}) of {storm['classrooms']}, joins took "
        f"{storm['joins_s']:.1f} s | | |",
        "",
        "Runs (p50 / p99 / max ms, packets matched): "
        + "; ".join(
            f"{h['p50_ms']:.2f} / {h['p99_ms']:.2f} / {h['max_ms']:.2f} ({h['matched']})"
            for h in result["runs"]
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench edge", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--joins", type=int, default=50)
    args = parser.parse_args(argv)
    result = run(args.seconds, args.runs, args.joins)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "edge"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    print(markdown(result))
