"""Server CPU with one origin and N decoding classrooms, measured from /proc over a window.

    scripts/bench server-cpu --classrooms 10 --seconds 30

Runs a real server process, one WHIP publisher (pre-encoded 640x480 30 fps VP8 at ~1 Mbit/s
plus Opus, paced in real time) and N WHEP classrooms spread over worker processes that decode
everything they get. Reports the server's user+system CPU time per wall second (cores used)
with 0 classrooms and with N, so each report carries its own baseline, plus frames decoded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import time
from pathlib import Path
from typing import Any

from tests.server import start_server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import use_loopback_only, whep_subscribe, whip_publish

RESULTS = Path(__file__).resolve().parent / "results"
CLIP_SECONDS = 10.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _classrooms(whep_url: str, token: str, count: int, seconds: float, queue: Any) -> None:
    use_loopback_only()

    async def run() -> list[int]:
        rooms = [await whep_subscribe(whep_url, token, name=f"bench-{i}") for i in range(count)]
        await asyncio.sleep(seconds)
        frames = [room.video_frames for room in rooms]
        for room in rooms:
            await room.close()
        return frames

    queue.put(asyncio.run(run()))


def measure(server_pid: int, seconds: float) -> dict[str, float]:
    start_cpu, start = cpu_seconds(server_pid), time.monotonic()
    time.sleep(seconds)
    cpu, wall = cpu_seconds(server_pid) - start_cpu, time.monotonic() - start
    return {"cores": cpu / wall, "cpu_s": cpu, "wall_s": wall, "rss_mib": rss_mib(server_pid)}


async def _publish(lesson: dict[str, Any]) -> Any:
    video = encode_vp8_clip(CLIP_SECONDS, width=640, height=480, bitrate=1_000_000, gop=60)
    audio = encode_opus_clip(CLIP_SECONDS)
    publisher = await whip_publish(
        lesson["whip_url"], lesson["whip_token"], video=video, audio=audio
    )
    await publisher.wait_connected()
    return publisher


def run(classrooms: int, seconds: float, workers: int, data_dir: Path) -> dict[str, Any]:
    use_loopback_only()
    server = start_server(data_dir)
    loop = asyncio.new_event_loop()
    try:
        lesson = server.create_lesson("bench")
        publisher = loop.run_until_complete(_publish(lesson))
        # the publisher runs on this loop in a thread while we measure
        import threading

        threading.Thread(target=loop.run_forever, daemon=True).start()
        time.sleep(3)
        idle = measure(server.process.pid, seconds)

        queue: Any = multiprocessing.get_context("spawn").Queue()
        per_worker = [classrooms // workers + (i < classrooms % workers) for i in range(workers)]
        join_s, settle_s = 5.0, 3.0
        procs = [
            multiprocessing.get_context("spawn").Process(
                target=_classrooms,
                args=(
                    lesson["whep_url"],
                    lesson["whep_token"],
                    n,
                    join_s + settle_s + seconds,
                    queue,
                ),
            )
            for n in per_worker
            if n
        ]
        for proc in procs:
            proc.start()
        time.sleep(join_s + settle_s)
        status = server.status()
        busy = measure(server.process.pid, seconds)
        frames = [f for _ in procs for f in queue.get(timeout=60)]
        for proc in procs:
            proc.join(30)
        asyncio.run_coroutine_threadsafe(publisher.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    finally:
        server.stop()
    marginal = (busy["cores"] - idle["cores"]) / classrooms * 1000 if classrooms else 0.0
    return {
        "benchmark": "server-cpu",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "classrooms": classrooms,
        "seconds": seconds,
        "consumers_on_server": status["consumers"],
        "idle": idle,
        "busy": busy,
        "marginal_millicores_per_classroom": marginal,
        "frames_decoded_per_classroom": frames,
        "expected_frames_per_classroom": round((join_s + settle_s + seconds) * 30),
    }


def table(result: dict[str, Any]) -> str:
    frames = result["frames_decoded_per_classroom"]
    return "\n".join(
        [
            "| classrooms | server cores used | server RSS MiB | frames decoded per classroom |",
            "|---|---|---|---|",
            f"| 0 (origin only) | {result['idle']['cores']:.3f} | "
            f"{result['idle']['rss_mib']:.1f} | - |",
            f"| {result['classrooms']} | {result['busy']['cores']:.3f} | "
            f"{result['busy']['rss_mib']:.1f} | min {min(frames)}, median "
            f"{sorted(frames)[len(frames) // 2]} (of ~{result['expected_frames_per_classroom']}) |",
            "",
            f"marginal: {result['marginal_millicores_per_classroom']:.2f} millicores per classroom "
            f"({result['seconds']:.0f} s windows, {result['date']})",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench server-cpu", description=__doc__)
    parser.add_argument("--classrooms", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not 1 <= args.classrooms <= 50 or not 5 <= args.seconds <= 300:
        parser.error("bounded load: 1-50 classrooms, 5-300 seconds")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        result = run(args.classrooms, args.seconds, args.workers, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"server-cpu-{args.classrooms}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(table(result) + "\n")
    print(json.dumps(result))
    print(table(result))
