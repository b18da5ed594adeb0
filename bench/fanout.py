"""Fan-out benchmark: server CPU and memory against classrooms, join time, latency, storms.

    scripts/bench fanout [--codec VP8|H264] [--points 0,10,25,50,100] [--seconds 15] [--runs 3]

One origin plays a pre-encoded 640x480 30 fps clip at ~1 Mbit/s plus Opus, in real time,
answering keyframe requests. Sink classrooms in worker processes complete ICE/DTLS/SRTP and
send receiver reports and NACKs but do not decode (one per worker decodes, to prove the
stream). For each number of classrooms the server's CPU time (user+system, all threads) over
a steady window gives the cores it uses; a least-squares line gives the marginal millicores
per classroom. The same is measured for an aiortc MediaRelay server (decode once, encode per
classroom) on a few points, in the same run, as the baseline. Each point is measured with the
origin sending every frame in one burst and again with its video paced as a browser paces it;
latency is taken on the first and on the last classroom the server feeds. With ``--runs`` the
whole sweep is repeated and the report gives each figure's median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from . import report, servers, sinks
from .clip import opus_clip, video_clip
from .peers import Origin, loopback_only, publish

RESULTS = Path(__file__).resolve().parent / "results"
SETTLE_S = 3.0
JOIN_AT = 50


class Classrooms:
    """Sink classrooms spread over worker processes."""

    def __init__(
        self,
        lesson: servers.Lesson,
        workers: int,
        prefix: str,
        decode: bool = True,
        background: bool = True,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.lesson = lesson
        self.conns: list[Connection] = []
        self.procs = []
        for i in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=sinks.run,
                args=(child, lesson.whep_url, lesson.whep_token, f"{prefix}{i}", background),
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self.count = 0
        # one classroom per worker decodes what it gets, to prove the stream is valid
        self.decoding = 0 if decode else workers

    def _all(self, command: tuple[Any, ...]) -> list[Any]:
        for conn in self.conns:
            conn.send(command)
        return [conn.recv() for conn in self.conns]

    def join(self, count: int, concurrency: int = 4) -> None:
        """Add ``count`` classrooms, round-robin over the workers."""
        shares = [
            count // len(self.conns) + (i < count % len(self.conns)) for i in range(len(self.conns))
        ]
        for conn, share in zip(self.conns, shares, strict=True):
            decode = 1 if share and self.decoding < len(self.conns) else 0
            self.decoding += decode
            conn.send(("join", share, decode, concurrency))
        for conn in self.conns:
            if conn.recv() != "ok":
                raise RuntimeError("join failed")
        self.count += count

    def rejoin(self) -> None:
        """The oldest classroom leaves and a new one joins: it is now the last one fed."""
        self.conns[0].send(("leave", False))
        if self.conns[0].recv() == "ok":
            self.count -= 1
        self.join(1, concurrency=1)

    def reset(self) -> None:
        self._all(("reset",))

    def stats(self) -> list[dict[str, Any]]:
        return [s for worker in self._all(("stats",)) for s in worker]

    def close(self) -> None:
        self._all(("close",))
        for proc in self.procs:
            proc.join(30)


class OriginThread:
    """The origin's event loop runs in a thread so the main thread can measure and sleep."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def latencies(probe: Classrooms) -> list[float]:
    return [v for s in probe.stats() for v in s["latencies_ms"]]


def measure_point(
    server: servers.Running,
    origin: Origin,
    rooms: Classrooms,
    probes: tuple[Classrooms, Classrooms],
    seconds: float,
    paced: bool = False,
) -> dict[str, Any]:
    first, last = probes
    origin.pacer.enabled = paced
    time.sleep(SETTLE_S)
    rooms.reset()
    first.reset()
    last.reset()
    sent_before = origin.video.sent
    cpu_before, wall_before = servers.cpu_seconds(server.pid), time.monotonic()
    time.sleep(seconds)
    cpu = servers.cpu_seconds(server.pid) - cpu_before
    wall = time.monotonic() - wall_before
    sent = origin.video.sent - sent_before
    if sent == 0:
        print(
            f"  the origin sent nothing ({origin.pc.connectionState}); server log ends:\n"
            + server.log_path.read_text(errors="replace")[-3000:],
            flush=True,
        )
    stats = rooms.stats() + first.stats() + last.stats()
    rss, peak = servers.rss_mib(server.pid)
    packets = sum(s["video_packets"] + s["audio_packets"] for s in stats)
    frames = [s["frames"] for s in stats]
    decoded = [s["decoded"] for s in stats if s["decoded"] is not None]
    # from the probe classrooms only: each alone in its process, its own queueing stays out
    # of it; the first one fed and the last one fed of all the lesson's classrooms
    first_ms, last_ms = latencies(first), latencies(last)
    return {
        "classrooms": rooms.count + first.count + last.count,
        "cores": cpu / wall,
        "window_s": wall,
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "frames_sent": sent,
        "frames_delivered_min": min(frames) if frames else None,
        "frames_delivered_median": statistics.median(frames) if frames else None,
        "frames_decoded_sample": decoded,
        "lost_packets": sum(s["lost"] for s in stats),
        "packets_forwarded_per_s": packets / wall,
        "latency_ms_p50": percentile(last_ms, 50),
        "latency_ms_p99": percentile(last_ms, 99),
        "latency_first_fed_ms_p50": percentile(first_ms, 50),
        "latency_first_fed_ms_p99": percentile(first_ms, 99),
    }


def profile(pid: int, seconds: float, top: int = 10) -> list[dict[str, Any]]:
    """Sample the server with py-spy; the functions where it spends its own time, heaviest
    first (as shares of the samples taken while it was running)."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        subprocess.run(
            [
                spy,
                "record",
                "-p",
                str(pid),
                "-d",
                str(int(seconds)),
                "-r",
                "100",
                "-f",
                "raw",
                "-o",
                out.name,
                "--nonblocking",
            ],
            capture_output=True,
            check=True,
        )
        own: dict[str, int] = {}
        total = 0
        for line in Path(out.name).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frame = stack.split(";")[-1]
            own[frame] = own.get(frame, 0) + int(count)
            total += int(count)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    return [{"function": name, "share": n / total} for name, n in ranked]


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line: (intercept, slope)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, slope


def sweep(
    kind: str,
    codec: str,
    points: list[int],
    seconds: float,
    workers: int,
    profile_s: float = 0,
    options: tuple[str, ...] = (),
) -> dict[str, Any]:
    clip, opus = video_clip(codec), opus_clip()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server = servers.start(kind, Path(tmp), *options)
        origin_thread = OriginThread()
        rooms: Classrooms | None = None
        first: Classrooms | None = None
        last: Classrooms | None = None
        try:
            lesson = server.lesson(f"fanout {codec}")
            origin = origin_thread.run(publish(lesson.whip_url, lesson.whip_token, clip, opus))
            rooms = Classrooms(lesson, workers, f"{kind}-")
            # latency is measured on the first and on the last classroom the server feeds
            first = Classrooms(lesson, 1, f"{kind}-first-", decode=False, background=False)
            last = Classrooms(lesson, 1, f"{kind}-last-", decode=False, background=False)
            probes = (first, last)
            results = []
            profiled: list[dict[str, Any]] = []
            extra: dict[str, Any] = {}
            # joins and the storm are measured on top of JOIN_AT classrooms (or fewer)
            join_at = max((n for n in points if n <= JOIN_AT), default=points[0])
            for n in points:
                if n and not first.count:
                    first.join(1)
                if n - 2 > rooms.count:
                    rooms.join(n - 2 - rooms.count)
                if n > 1:
                    last.rejoin()
                # as the reference figures were measured: each frame sent in one burst
                point = measure_point(server, origin, rooms, probes, seconds)
                if kind == "syncclass":  # and as a browser sends: paced
                    point["paced"] = measure_point(server, origin, rooms, probes, seconds, True)
                print(
                    f"  {kind} {n:4d} classrooms: {point['cores']:.3f} cores"
                    + (f", paced {point['paced']['cores']:.3f}" if "paced" in point else ""),
                    flush=True,
                )
                results.append(point)
                if kind == "syncclass" and n == join_at:
                    extra = joins_and_storm(server, origin, rooms, clip, opus, origin_thread)
            if profile_s and kind == "syncclass":
                profiled = profile(server.pid, profile_s)
            origin_thread.run(origin.close())
        finally:
            for group in (rooms, first, last):
                if group is not None:
                    group.close()
            origin_thread.stop()
            server.stop()
    # the line is fitted where every classroom got (nearly) every frame: past that point the
    # machine, shared with the load clients, is saturated and the figures say nothing
    for p in results:
        delivered = p["frames_delivered_min"]
        p["saturated"] = delivered is not None and delivered < 0.97 * p["frames_sent"]
    fitted = [p for p in results if not p["saturated"]] or results
    paced = [p["paced"] for p in fitted if "paced" in p]
    return {
        "server": kind,
        "points": results,
        "fit": fit_points(fitted),
        **({"fit_paced": fit_points(paced)} if paced else {}),
        "profile_at_largest_point": profiled,
        **extra,
    }


def fit_points(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Cores, memory and packets forwarded against classrooms: per-classroom slopes."""
    xs = [float(p["classrooms"]) for p in points]
    intercept, slope = fit(xs, [p["cores"] for p in points])
    _, rss_slope = fit(xs, [p["rss_mib"] for p in points])
    _, pps_slope = fit(xs, [p["packets_forwarded_per_s"] for p in points])
    return {
        "idle_cores": intercept,
        "millicores_per_classroom": slope * 1000,
        "us_cpu_per_forwarded_packet": slope / pps_slope * 1e6 if pps_slope else None,
        "rss_mib_per_classroom": rss_slope,
    }


def joins_and_storm(
    server: servers.Running,
    origin: Origin,
    rooms: Classrooms,
    clip: Any,
    opus: Any,
    origin_thread: OriginThread,
) -> dict[str, Any]:
    """Join times on top of the classrooms already there, and a keyframe-request storm."""
    base = rooms.count + 2  # and the two probes
    # the joiners are measured, so they run at normal priority, apart from the load
    joiners = Classrooms(rooms.lesson, 2, "joiner-", decode=False, background=False)
    try:
        single: list[float] = []
        for _ in range(10):  # one joiner at a time
            joiners.join(1, concurrency=1)
            time.sleep(1.5)
        single = [s["join_s"] for s in joiners.stats() if s["join_s"]]
        before = {s["name"] for s in joiners.stats()}
        joiners.join(10, concurrency=10)  # ten at once (spread over the joiners' processes)
        time.sleep(3.0)
        concurrent = [
            s["join_s"] for s in joiners.stats() if s["name"] not in before and s["join_s"]
        ]
    finally:
        joiners.close()

    storm_lesson = server.lesson("storm")
    storm_origin = origin_thread.run(
        publish(storm_lesson.whip_url, storm_lesson.whip_token, clip, opus)
    )
    time.sleep(2.0)
    storm_rooms = Classrooms(storm_lesson, len(rooms.conns), "storm-")
    try:
        started = time.monotonic()
        storm_rooms.join(50, concurrency=50)
        time.sleep(5.0)
        requests = [t - started for t in storm_origin.video.keyframe_requests if t >= started]
        window = time.monotonic() - started
        per_second = [sum(1 for t in requests if s <= t < s + 1) for s in range(int(window))]
        storm_first = [s["keyframe_first"] for s in storm_rooms.stats()]
    finally:
        storm_rooms.close()
        origin_thread.run(storm_origin.close())

    def summary(values: list[float]) -> dict[str, Any]:
        ms = [v * 1000 for v in values]
        return {
            "count": len(ms),
            "p50_ms": percentile(ms, 50),
            "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99),
        }

    return {
        "join": {
            "on_top_of": base,
            "one_joiner": summary(single),
            "ten_concurrent": summary(concurrent),
        },
        "storm": {
            "classrooms": 50,
            "keyframe_requests_per_second": per_second,
            "max_per_second": max(per_second, default=0),
            "all_started_on_keyframe": all(storm_first),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench fanout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--codec", choices=("VP8", "H264"), default="VP8")
    parser.add_argument("--points", default="0,10,25,50,100")
    parser.add_argument("--baseline-points", default="0,2,4,6")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument(
        "--profile",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="py-spy the server this long at the largest point (0: don't)",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="repeat the whole sweep; figures are the medians"
    )
    parser.add_argument(
        "--adaptation-cost",
        action="store_true",
        help="also sweep this server with --no-adaptation, in the same run: what the "
        "per-classroom estimate, gate and layer choice cost",
    )
    args = parser.parse_args(argv)
    points = sorted({int(p) for p in args.points.split(",")})
    baseline_points = sorted({int(p) for p in args.baseline_points.split(",")})
    if max(points) > 300 or max(baseline_points) > 12 or not 5 <= args.seconds <= 120:
        parser.error("bounded load: at most 300 classrooms (12 on the baseline), 5-120 s windows")
    if not 1 <= args.runs <= 5:
        parser.error("bounded load: 1 to 5 runs")
    loopback_only()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    runs = []
    for run in range(args.runs):
        last = run == args.runs - 1
        print(f"run {run + 1} of {args.runs}, syncclass, {args.codec}:", flush=True)
        profile_s = args.profile if last else 0
        ours = sweep("syncclass", args.codec, points, args.seconds, args.workers, profile_s)
        print("baseline (aiortc MediaRelay):", flush=True)
        baseline = sweep("relay", args.codec, baseline_points, args.seconds, min(args.workers, 2))
        headline = report.headline({"syncclass": ours, "baseline": baseline})
        if args.adaptation_cost:
            print("syncclass --no-adaptation:", flush=True)
            plain = sweep(
                "syncclass", args.codec, points, args.seconds, args.workers, 0, ("--no-adaptation",)
            )
            headline["millicores_no_adaptation"] = plain["fit"]["millicores_per_classroom"]
            headline["adaptation_cost"] = (
                headline["millicores"] / headline["millicores_no_adaptation"] - 1
            )
        runs.append(headline)
    result = {
        "benchmark": "fanout",
        "command": "scripts/bench fanout " + " ".join(argv if argv is not None else []),
        "started": started,
        "machine": report.machine(),
        "codec": args.codec,
        "clip": {
            "width": 640,
            "height": 480,
            "fps": 30,
            "video_mbit_s": round(video_clip(args.codec).bitrate / 1e6, 3),
            "audio": "opus",
        },
        "syncclass": ours,
        "baseline": baseline,
        "runs": runs,
        "medians": report.medians(runs),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"fanout-{args.codec.lower()}{'-adaptation' if args.adaptation_cost else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(report.markdown(result))
    report.plot(result, stem.with_suffix(".png"))
    print(report.markdown(result))
