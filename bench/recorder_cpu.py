"""Recorder benchmark: CPU per recorded lesson.

    scripts/bench recorder [--seconds 30] [--codec VP8|H264]

One server, one origin (the fan-out clip: 640x480 30 fps ~1 Mbit/s + Opus) publishing first
into a lesson that is not recorded, then into one that is, each over the same window. The
difference in CPU of the server and its child processes (the recorder remuxes in a child
while the lesson runs) is the cost of recording one lesson; the time from `end` to `ready`
is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from . import report, servers
from .clip import opus_clip, video_clip
from .fanout import RESULTS, OriginThread
from .peers import loopback_only, publish


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children."""
    total = servers.cpu_seconds(pid)
    for child in _children(pid):
        try:
            total += servers.cpu_seconds(child)
        except OSError:
            continue
    return total


def window(
    server: servers.Running, record: bool, seconds: float, codec: str, origin_thread: OriginThread
) -> dict[str, Any]:
    lesson = server.api("POST", "/api/lessons", {"title": f"record={record}", "record": record})
    origin = origin_thread.run(
        publish(lesson["whip_url"], lesson["whip_token"], video_clip(codec), opus_clip())
    )
    time.sleep(3)
    cpu, start = tree_cpu(server.pid), time.monotonic()
    time.sleep(seconds)
    cores = (tree_cpu(server.pid) - cpu) / (time.monotonic() - start)
    ended = time.monotonic()
    server.api("POST", f"/api/lessons/{lesson['id']}/end")
    origin_thread.run(origin.close())
    ready_s = None
    if record:
        for _ in range(600):
            state = server.api("GET", f"/api/lessons/{lesson['id']}").get("recording") or {}
            if state.get("state") in ("ready", "failed"):
                ready_s = time.monotonic() - ended if state["state"] == "ready" else None
                break
            time.sleep(0.1)
    return {"record": record, "cores": cores, "ready_after_end_s": ready_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench recorder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--codec", choices=("VP8", "H264"), default="VP8")
    args = parser.parse_args(argv)
    if not 5 <= args.seconds <= 300:
        parser.error("bounded load: 5-300 seconds")
    loopback_only()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server = servers.start("syncclass", Path(tmp))
        origin_thread = OriginThread()
        try:
            plain = window(server, False, args.seconds, args.codec, origin_thread)
            recorded = window(server, True, args.seconds, args.codec, origin_thread)
        finally:
            origin_thread.stop()
            server.stop()
    result = {
        "benchmark": "recorder",
        "command": "scripts/bench recorder " + " ".join(argv or []),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": report.machine(),
        "codec": args.codec,
        "not_recorded": plain,
        "recorded": recorded,
        "millicores_per_recorded_lesson": (recorded["cores"] - plain["cores"]) * 1000,
    }
    ready_s = recorded["ready_after_end_s"]
    ready = "not ready" if ready_s is None else f"{ready_s:.2f} s"
    lines = [
        f"# Recorder benchmark ({args.codec}, {result['started']})",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}",
        "",
        "| lesson | server + children cores | ready after end |",
        "|---|---|---|",
        f"| origin only, not recorded | {plain['cores']:.3f} | – |",
        f"| origin only, recorded | {recorded['cores']:.3f} | {ready} |",
        "",
        f"CPU per recorded lesson: {result['millicores_per_recorded_lesson']:.1f} millicores",
    ]
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"recorder-{args.codec.lower()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
