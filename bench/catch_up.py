"""Catch-up benchmark: what readers of a live lesson's recording cost the server, and how far
behind live a classroom watching over HTTP is.

    scripts/bench catch-up [--readers 50] [--seconds 20] [--page-runs 3] [--page-seconds 20]

One server, one recorded lesson with an origin publishing the fan-out clip (640x480 30 fps
~1 Mbit/s + Opus). The server's CPU (its process and its children: the finaliser writing the
recording) is measured over a window with no reader, then over a window with ``--readers``
catch-up streams open (half of them from the start of the lesson, half from a few seconds
ago; all of them at the live edge once the window starts), then again without: the readers'
cost is the middle window against the mean of the other two.

The delay: one more reader at the live edge notes when each fragment arrives, against the
server time of its first frame (``X-Catch-Up-Origin`` + the fragment's time): how long after
a moment of the lesson a classroom watching over HTTP can show it, before its player's own
buffer (plain HTTP on loopback; TLS adds a little CPU, no delay to speak of).

Then where the pupil sees it (bench/catch_up_page.py): ``--page-runs`` classroom pages in
Chromium, one after another, on the HTTPS-only rung (no UDP, no ICE-TCP for that browser),
each on a lesson of its own, for ``--page-seconds``: how far behind what the teacher sends
the page's picture is, and how far each beep of the teacher's sound is from its picture.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from recorder.webm_fragments import WebmScanner

from . import report, servers
from .catch_up_page import page_runs
from .clip import opus_clip, video_clip
from .fanout import RESULTS, OriginThread
from .peers import loopback_only, publish
from .recorder_cpu import tree_cpu


class Readers:
    """Catch-up streams read in a thread of their own (the bench's CPU is not the server's)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.bytes = 0
        self.statuses: list[int] = []
        self.delays: list[float] = []
        self._tasks: list[concurrent.futures.Future[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def open(self, query: str, probe: bool = False) -> None:
        self._tasks.append(asyncio.run_coroutine_threadsafe(self._read(query, probe), self.loop))

    async def _read(self, query: str, probe: bool) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                headers={"Authorization": f"Bearer {self.token}"},
            )
        url = f"{self.base}/camera?{query}"
        asked_at = time.time()
        async with self._session.get(url) as response:
            self.statuses.append(response.status)
            if response.status != 200:
                return
            origin = float(response.headers["X-Catch-Up-Origin"])
            scanner = WebmScanner()
            spool = tempfile.TemporaryFile() if probe else None
            try:
                async for chunk in response.content.iter_any():
                    self.bytes += len(chunk)
                    if spool is None:
                        continue
                    arrived = time.time()
                    spool.write(chunk)
                    spool.flush()
                    for fragment in scanner.scan(spool.fileno(), spool.tell()):
                        recorded_at = origin + fragment.time
                        if recorded_at >= asked_at:  # not one recorded before it was asked
                            self.delays.append(arrived - recorded_at)
            finally:
                if spool is not None:
                    spool.close()

    def close(self) -> None:
        async def stop() -> None:
            for task in self._tasks:
                task.cancel()
            if self._session is not None:
                await self._session.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def cores(pid: int, seconds: float) -> float:
    cpu, start = tree_cpu(pid), time.monotonic()
    time.sleep(seconds)
    return (tree_cpu(pid) - cpu) / (time.monotonic() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench catch-up",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--page-runs", type=int, default=3)
    parser.add_argument("--page-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    if not 1 <= args.readers <= 200 or not 5 <= args.seconds <= 120:
        parser.error("bounded load: 1-200 readers, 5-120 seconds")
    if not 0 <= args.page_runs <= 10 or not 5 <= args.page_seconds <= 60:
        parser.error("bounded load: 0-10 page runs of 5-60 seconds")
    loopback_only()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server = servers.start(
            "syncclass", Path(tmp), "--max-catch-up-per-address", str(args.readers + 1)
        )
        origin_thread = OriginThread()
        readers: Readers | None = None
        try:
            lesson = server.api("POST", "/api/lessons", {"title": "catch-up", "record": True})
            origin = origin_thread.run(
                publish(lesson["whip_url"], lesson["whip_token"], video_clip("VP8"), opus_clip())
            )
            base = f"{server.url}/api/lessons/{lesson['id']}/catch-up"
            token = lesson["whep_token"]
            for _ in range(300):  # until 8 s are recorded
                info = server.api("GET", f"/api/lessons/{lesson['id']}/catch-up", key=token)
                camera = info["sources"].get("camera")
                if camera and camera["recorded_until"] - camera["starts_at"] >= 8:
                    break
                time.sleep(0.2)
            before = cores(server.pid, args.seconds)
            readers = Readers(base, token)
            readers.open(f"from={time.time() - 1:.3f}", probe=True)
            for i in range(args.readers):
                readers.open("offset=0" if i % 2 == 0 else f"from={time.time() - 5:.3f}")
            time.sleep(3)  # the readers from the start have read what was recorded
            read_before = readers.bytes
            with_readers = cores(server.pid, args.seconds)
            read_mbit = (readers.bytes - read_before) * 8 / args.seconds / 1e6
            readers.close()
            delays = list(readers.delays)
            statuses = list(readers.statuses)
            readers = None
            time.sleep(2)
            after = cores(server.pid, args.seconds)
            origin_thread.run(origin.close())
            pages = asyncio.run(page_runs(server, args.page_runs, args.page_seconds))
        finally:
            if readers is not None:
                readers.close()
            origin_thread.stop()
            server.stop()
    baseline = (before + after) / 2
    steady = delays
    result: dict[str, Any] = {
        "benchmark": "catch-up",
        "command": "scripts/bench catch-up " + " ".join(argv or []),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": report.machine(),
        "readers": args.readers,
        "refused": sum(1 for s in statuses if s != 200),
        "seconds": args.seconds,
        "cores_without_readers": [before, after],
        "cores_with_readers": with_readers,
        "added_cores": with_readers - baseline,
        "read_mbit_s": read_mbit,
        "delay_s": {
            "median": statistics.median(steady) if steady else None,
            "max": max(steady) if steady else None,
            "fragments": len(steady),
        },
    }
    page_delays = [r["delay_s"] for r in pages if r["delay_s"] is not None]
    offsets = [r["av_offset_ms"] for r in pages if r["av_offset_ms"] is not None]
    result["page"] = {
        "runs": pages,
        "seconds": args.page_seconds,
        "delay_s_median": statistics.median(page_delays) if page_delays else None,
        "av_offset_ms_median": statistics.median(offsets) if offsets else None,
        "av_offset_max_abs_ms": max(
            (r["av_offset_max_abs_ms"] for r in pages if r["av_offset_max_abs_ms"] is not None),
            default=None,
        ),
    }
    median = result["delay_s"]["median"]
    lines = [
        f"# Catch-up benchmark ({result['started']})",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}",
        "",
        "| window | server + children cores |",
        "|---|---|",
        f"| no reader | {before:.3f} |",
        f"| {args.readers} readers ({read_mbit:.1f} Mbit/s read) | {with_readers:.3f} |",
        f"| no reader again | {after:.3f} |",
        "",
        f"Added by {args.readers} readers: {result['added_cores']:.3f} cores "
        f"({result['refused']} refused)",
        "",
        f"Delay behind live over HTTP (fragment available to the client, median of "
        f"{len(steady)}): {'–' if median is None else f'{median:.2f} s'}"
        + ("" if median is None else f" (max {result['delay_s']['max']:.2f} s)"),
        "",
        "Classroom page in Chromium, HTTPS only (no UDP, no ICE-TCP), "
        f"{len(pages)} runs of {args.page_seconds:.0f} s:",
        "",
        "| run | behind live (median) | sound vs picture (median) | worst beep | beeps |",
        "|---|---|---|---|---|",
        *(
            f"| {i + 1} | {_num(r['delay_s'], 's', 2)} | {_num(r['av_offset_ms'], 'ms', 0)} "
            f"| {_num(r['av_offset_max_abs_ms'], 'ms', 0)} | {r['beeps_matched']} |"
            for i, r in enumerate(pages)
        ),
        f"| median | {_num(result['page']['delay_s_median'], 's', 2)} "
        f"| {_num(result['page']['av_offset_ms_median'], 'ms', 0)} "
        f"| {_num(result['page']['av_offset_max_abs_ms'], 'ms', 0)} | |",
    ]
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / "catch-up"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))
    print("\n".join(lines))


def _num(value: float | None, unit: str, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f} {unit}"
