"""Soak benchmark: one long recorded lesson with classrooms coming and going all the time.

    scripts/bench soak [--minutes 20] [--classrooms 30] [--churn-s 2] [--workers 3]

One origin plays the fan-out clip (640x480 30 fps VP8 ~1 Mbit/s + Opus, answering keyframe
requests) into a recorded lesson watched by 30 sink classrooms in worker processes. Every
2 s one classroom leaves or one joins, so the lesson goes 30, 29, 30, ...; one leave in five
is a classroom that vanishes without a goodbye (its packets simply stop), the others DELETE
their session. A short lesson first warms the server up; its idle state afterwards is the
baseline. Every 10 s the server's RSS, CPU time, asyncio tasks, file descriptors and UDP
sockets (from /api/status) are sampled.

It reports: unhandled exceptions in the server log (target 0), RSS growth from the end of the
warm-up (the first quarter of the lesson, at most 5 minutes) to the end (target < 10 %),
tasks, file descriptors and UDP sockets once the lesson has ended against the baseline
(target: back to it), and the recording's duration, read from the file with PyAV, against the
lesson's (target ± 1 s). Results: bench/results/soak.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import av

from . import report, servers, sinks
from .clip import opus_clip, video_clip
from .fanout import RESULTS, OriginThread
from .peers import loopback_only, publish

SAMPLE_S = 10.0
VANISH_EVERY = 5  # one leave in this many vanishes without a goodbye
WARMUP_LESSON_S = 20.0
SETTLE_S = 5.0
TARGETS = {"exceptions": 0, "rss_growth_pct": 10.0, "recording_diff_s": 1.0}
# what an unhandled exception leaves in the log, whatever the log level
_TROUBLE = re.compile(
    r"Traceback|Exception in callback|exception was never retrieved|Unhandled|\bERROR\b"
)


class Workers:
    """Sink classrooms of one lesson in worker processes (bench/sinks.py), each one driven
    on its own: join one here, let the oldest leave there."""

    def __init__(self, lesson: dict[str, Any], workers: int, prefix: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        self.counts = [0] * workers
        for i in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=sinks.run,
                args=(child, lesson["whep_url"], lesson["whep_token"], f"{prefix}{i}-", False),
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def join(self) -> bool:
        """One more classroom, on the worker holding fewest."""
        worker = self.counts.index(min(self.counts))
        self.conns[worker].send(("join", 1, 0, 1))
        if self.conns[worker].recv() != "ok":
            return False
        self.counts[worker] += 1
        return True

    def leave(self, vanish: bool) -> bool:
        """The oldest classroom of the worker holding most leaves."""
        worker = self.counts.index(max(self.counts))
        self.conns[worker].send(("leave", vanish))
        if self.conns[worker].recv() != "ok":
            return False
        self.counts[worker] -= 1
        return True

    def stats(self) -> list[dict[str, Any]]:
        for conn in self.conns:
            conn.send(("stats",))
        return [s for conn in self.conns for s in conn.recv()]

    def close(self) -> None:
        for conn in self.conns:
            conn.send(("close",))
        for conn in self.conns:
            conn.recv()
        for proc in self.procs:
            proc.join(30)


def sample(server: servers.Running, started: float) -> dict[str, Any]:
    status = server.api("GET", "/api/status", key=servers.ADMIN_KEY)
    rss, _ = servers.rss_mib(server.pid)
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mib": round(rss, 2),
        "cpu_s": round(servers.cpu_seconds(server.pid), 2),
        **{key: status.get(key) for key in ("tasks", "fds", "udp_sockets", "peers", "sessions")},
    }


def hold_lesson(
    server: servers.Running,
    origin_thread: OriginThread,
    seconds: float,
    classrooms: int,
    churn_s: float,
    workers: int,
    samples: list[dict[str, Any]] | None = None,
    prefix: str = "soak",
) -> dict[str, Any]:
    """Hold one recorded lesson for ``seconds`` with churning classrooms; end it, wait for
    its recording, and return what happened."""
    lesson = server.api(
        "POST",
        "/api/lessons",
        {"title": f"soak {classrooms} classrooms", "max_classrooms": 1000},
    )
    origin = origin_thread.run(
        publish(lesson["whip_url"], lesson["whip_token"], video_clip("VP8"), opus_clip())
    )
    rooms = Workers(lesson, workers, prefix)
    counts = {"joins": 0, "leaves": 0, "vanished": 0, "failed": 0}
    began = time.monotonic()
    try:
        for _ in range(classrooms):
            counts["joins" if rooms.join() else "failed"] += 1
        next_churn, next_sample, leaves = began, began, 0
        while (now := time.monotonic()) < began + seconds:
            if samples is not None and now >= next_sample:
                samples.append(sample(server, began))
                next_sample += SAMPLE_S
            if now >= next_churn:
                if rooms.total >= classrooms:
                    leaves += 1
                    vanish = leaves % VANISH_EVERY == 0
                    if rooms.leave(vanish):
                        counts["vanished" if vanish else "leaves"] += 1
                else:
                    counts["joins" if rooms.join() else "failed"] += 1
                next_churn += churn_s
            time.sleep(max(0.0, min(next_churn, next_sample) - time.monotonic()))
        receiving = sum(1 for s in rooms.stats() if s["video_packets"] > 0)
        frames_sent = origin.video.sent
        ended = server.api("POST", f"/api/lessons/{lesson['id']}/end")
    finally:
        rooms.close()
        origin_thread.run(origin.close())
    recording = wait_ready(server, lesson["id"])
    return {
        "id": lesson["id"],
        "duration_s": ended["ended_at"] - ended["started_at"],
        "classrooms_at_end": rooms.total,
        "receiving_at_end": receiving,
        "origin_frames_sent": frames_sent,
        **counts,
        "recording": recording,
    }


def wait_ready(server: servers.Running, lesson_id: str, within: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        recording = server.api("GET", f"/api/lessons/{lesson_id}")["recording"] or {}
        if recording.get("state") in ("ready", "failed"):
            return dict(recording)
        time.sleep(0.5)
    return {"state": "not ready", "error": f"not ready within {within:.0f} s"}


def recorded_duration(server: servers.Running, url: str, to: Path) -> float:
    """The recording's length as a player sees it: first to last video frame, from the file."""
    request = urllib.request.Request(
        server.url + url, headers={"Authorization": f"Bearer {servers.TEACHER_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        to.write_bytes(response.read())
    with av.open(str(to)) as container:
        stream = container.streams.video[0]
        first = last = None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            first = packet.pts if first is None else min(first, packet.pts)
            last = packet.pts if last is None else max(last, packet.pts)
        if first is None or last is None or stream.time_base is None:
            return 0.0
        # the last frame lasts one frame interval
        return float((last - first) * stream.time_base) + 1 / 30


def settle(server: servers.Running, within: float = 60.0) -> dict[str, Any]:
    """The idle server once every peer of the last lesson is gone."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = server.api("GET", "/api/status", key=servers.ADMIN_KEY)
        if status["peers"] == 0 and status["sessions"] == 0:
            break
        time.sleep(1.0)
    time.sleep(SETTLE_S)
    return sample(server, time.monotonic())


def log_trouble(path: Path) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if _TROUBLE.search(line)]


def rss_growth(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """RSS at the end of the warm-up (median of the minute after it) against the end (median
    of the last minute), and the slope of a line through everything after the warm-up."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    reference = [s["rss_mib"] for s in after if s["t_s"] < warmup_s + 60] or [after[0]["rss_mib"]]
    last_t = samples[-1]["t_s"]
    final = [s["rss_mib"] for s in samples if s["t_s"] > last_t - 60]
    ref, end = statistics.median(reference), statistics.median(final)
    xs = [s["t_s"] for s in after]
    ys = [s["rss_mib"] for s in after]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return {
        "warmup_s": warmup_s,
        "after_warmup_mib": ref,
        "at_end_mib": end,
        "growth_pct": (end - ref) / ref * 100,
        "slope_mib_per_10_min": slope * 600,
        "peak_mib": max(s["rss_mib"] for s in samples),
    }


def markdown(result: dict[str, Any]) -> str:
    lesson, rss, rec = result["lesson"], result["rss"], result["recording"]
    base, end = result["baseline"], result["after_lesson"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    def back(key: str) -> str:
        return f"{base[key]} → {end[key]} ({end[key] - base[key]:+d})"

    lines = [
        f"# Soak benchmark ({result['started']})",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}, "
        f"Python {result['machine']['python']}  ",
        f"One origin (640x480 30 fps VP8 ~1 Mbit/s + Opus), {result['classrooms']} sink "
        f"classrooms, one leaving or joining every {result['churn_s']:g} s (one leave in "
        f"{VANISH_EVERY} without a goodbye), recorded, for {lesson['duration_s'] / 60:.1f} min.",
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
        f"| unhandled exceptions in the server log | {len(result['log_trouble'])} | 0 | "
        f"{verdict(result['checks']['exceptions'])} |",
        f"| RSS growth after warm-up ({rss['warmup_s'] / 60:.0f} min) | "
        f"{rss['growth_pct']:+.1f} % ({rss['after_warmup_mib']:.1f} → {rss['at_end_mib']:.1f} MiB)"
        f" | < 10 % | {verdict(result['checks']['rss'])} |",
        f"| asyncio tasks, baseline → after the lesson | {back('tasks')} | back to baseline | "
        f"{verdict(result['checks']['tasks'])} |",
        f"| file descriptors, baseline → after the lesson | {back('fds')} | back to baseline | "
        f"{verdict(result['checks']['fds'])} |",
        f"| UDP sockets, baseline → after the lesson | {back('udp_sockets')} | back to baseline | "
        f"{verdict(result['checks']['udp_sockets'])} |",
        f"| recording duration vs lesson | {rec['file_duration_s']:.2f} s vs "
        f"{lesson['duration_s']:.2f} s ({rec['diff_s']:+.2f} s) | ± 1 s | "
        f"{verdict(result['checks']['recording'])} |",
        "",
        f"Classrooms joined {lesson['joins']}, left with a goodbye {lesson['leaves']}, vanished "
        f"{lesson['vanished']}, failed to join {lesson['failed']}; at the end "
        f"{lesson['receiving_at_end']} of {lesson['classrooms_at_end']} were receiving video. "
        f"Peak RSS {rss['peak_mib']:.1f} MiB; slope after warm-up "
        f"{rss['slope_mib_per_10_min']:+.2f} MiB per 10 min. Server CPU over the lesson: "
        f"{result['cpu_cores']:.3f} cores. Recording: {rec['state']}, "
        f"{rec.get('size_bytes', 0) / 1e6:.0f} MB, API duration {rec.get('duration_s')} s.",
        "",
        "| minute | RSS MiB | tasks | fds | UDP sockets | peers |",
        "|---|---|---|---|---|---|",
    ]
    for s in result["samples"]:
        if s["t_s"] % 120 < SAMPLE_S:  # one row every two minutes
            lines.append(
                f"| {s['t_s'] / 60:.0f} | {s['rss_mib']:.1f} | {s['tasks']} | {s['fds']} | "
                f"{s['udp_sockets']} | {s['peers']} |"
            )
    if result["log_trouble"]:
        lines += ["", "First lines of trouble in the server log:", "", "```"]
        lines += result["log_trouble"][:20]
        lines.append("```")
    lines += ["", f"Plot: {result['out']}.png"]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    minutes = [s["t_s"] / 60 for s in samples]
    figure, rss_axis = plt.subplots(figsize=(8, 4.5))
    rss_axis.plot(minutes, [s["rss_mib"] for s in samples], color="tab:blue", label="RSS (MiB)")
    rss_axis.axvline(result["rss"]["warmup_s"] / 60, color="grey", linestyle=":", label="warm-up")
    rss_axis.set_xlabel("minutes into the lesson")
    rss_axis.set_ylabel("server RSS (MiB)")
    rss_axis.set_ylim(bottom=0)
    count_axis = rss_axis.twinx()
    count_axis.plot(minutes, [s["tasks"] for s in samples], color="tab:orange", label="tasks")
    count_axis.plot(minutes, [s["fds"] for s in samples], color="tab:green", label="fds")
    count_axis.set_ylabel("asyncio tasks, file descriptors")
    count_axis.set_ylim(bottom=0)
    handles = rss_axis.get_legend_handles_labels()
    more = count_axis.get_legend_handles_labels()
    rss_axis.legend(handles[0] + more[0], handles[1] + more[1], loc="center right")
    rss_axis.set_title(
        f"Soak: {result['classrooms']} classrooms, one joining or leaving every "
        f"{result['churn_s']:g} s ({result['started'][:10]})"
    )
    rss_axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20.0, help="20, or 45 for a long lesson")
    parser.add_argument("--classrooms", type=int, default=30)
    parser.add_argument("--churn-s", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--out", default="soak", help="file name stem under bench/results")
    args = parser.parse_args(argv)
    if not (1 <= args.minutes <= 90 and 1 <= args.classrooms <= 100 and args.churn_s >= 0.5):
        parser.error("bounded load: 1-90 minutes, 1-100 classrooms, churn every >= 0.5 s")
    loopback_only()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    seconds = args.minutes * 60
    warmup_s = min(seconds / 4, 300.0)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server = servers.start("syncclass", Path(tmp))
        origin_thread = OriginThread()
        try:
            cold = settle(server, within=5)
            print("warm-up lesson", flush=True)
            hold_lesson(server, origin_thread, WARMUP_LESSON_S, 3, args.churn_s, 1, prefix="warm")
            baseline = settle(server)
            print(f"baseline: {baseline}; soak lesson for {args.minutes:g} min", flush=True)
            samples: list[dict[str, Any]] = []
            cpu_before, wall_before = servers.cpu_seconds(server.pid), time.monotonic()
            lesson = hold_lesson(
                server, origin_thread, seconds, args.classrooms, args.churn_s, args.workers, samples
            )
            cpu_cores = (servers.cpu_seconds(server.pid) - cpu_before) / (
                time.monotonic() - wall_before
            )
            after = settle(server)
            print(f"after the lesson: {after}", flush=True)
            recording = lesson.pop("recording")
            file_s = 0.0
            if recording.get("state") == "ready":
                file_s = recorded_duration(server, recording["url"], Path(tmp) / "soak.webm")
        finally:
            origin_thread.stop()
            server.stop()
        trouble = log_trouble(server.log_path)
    recording["file_duration_s"] = file_s
    recording["diff_s"] = file_s - lesson["duration_s"]
    rss = rss_growth(samples, warmup_s)
    result = {
        "benchmark": "soak",
        "command": " ".join(["scripts/bench soak", *(argv or [])]),
        "started": started,
        "machine": report.machine(),
        "minutes": args.minutes,
        "classrooms": args.classrooms,
        "churn_s": args.churn_s,
        "out": args.out,
        "lesson": lesson,
        "recording": recording,
        "cold_start": cold,
        "baseline": baseline,
        "after_lesson": after,
        "rss": rss,
        "cpu_cores": cpu_cores,
        "log_trouble": trouble,
        "samples": samples,
    }
    result["checks"] = {
        "exceptions": len(trouble) == TARGETS["exceptions"],
        "rss": rss["growth_pct"] < TARGETS["rss_growth_pct"],
        "tasks": after["tasks"] <= baseline["tasks"],
        "fds": after["fds"] <= baseline["fds"],
        "udp_sockets": after["udp_sockets"] <= baseline["udp_sockets"],
        "recording": recording.get("state") == "ready"
        and abs(recording["diff_s"]) <= TARGETS["recording_diff_s"],
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / args.out
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    plot(result, stem.with_suffix(".png"))
    print(markdown(result))
