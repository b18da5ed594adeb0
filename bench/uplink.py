"""Uplink ramp-up: how fast the teacher page in Chromium sends its best picture after 开始上课.

    scripts/bench uplink [--runs 3] [--seconds 20] [--limited-seconds 30]

For each server (transport-wide congestion feedback on, the default; and off,
``--no-transport-cc``, the baseline) and each camera (Chromium's fake camera; a moving,
textured 1280x720 ``.y4m``), ``--runs`` lessons are started and the teacher's own
``getStats()`` is sampled every 250 ms: when its estimate of the uplink
(availableOutgoingBitrate), the encoder's target, what it sends, and the picture first reach
1.5 Mbit/s and 1280x720. Medians over the runs. Then, with the teacher's uplink limited to
1.5 Mbit/s by the link emulator (tests/support/link_emulator.py), where the estimate settles
and how much was lost. Results: bench/results/uplink.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, async_playwright

from tests.support.browser import launch, open_page
from tests.support.link_emulator import GOOD, LinkEmulator
from tests.support.uplink import watch_ramp, write_y4m

from . import report, servers
from .fanout import RESULTS

LIMIT = 1.5e6


async def one_ramp(
    browser: Browser, server: servers.Running, seconds: float, link: LinkEmulator | None = None
) -> dict[str, Any]:
    lesson = server.api("POST", "/api/lessons", {"title": "uplink"})
    page = await open_page(browser, None)
    if link is not None:
        await link.route(page)
    await page.goto(lesson["teacher_url"])
    await page.wait_for_selector("#state[data-state=ready]", timeout=20000)
    await page.click("#start")
    ramp = await watch_ramp(page, lambda r: False, within=seconds)
    await page.context.close()
    return {"times": ramp.times(), "trace": ramp.trace()}


def _median(values: list[float | None], cap: float) -> float | None:
    """The median, counting a run that never got there as ``cap`` (reported as '>cap')."""
    if not values:
        return None
    return statistics.median(cap if v is None else v for v in values)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        picture = write_y4m(Path(tmp) / "textured.y4m")
        async with async_playwright() as playwright:
            cameras = {
                "fake camera": await launch(playwright),
                "textured y4m": await launch(
                    playwright, extra=[f"--use-file-for-fake-video-capture={picture}"]
                ),
            }
            for name, options in (
                ("transport-cc", ()),
                ("no transport-cc", ("--no-transport-cc",)),
            ):
                data = Path(tmp) / name.replace(" ", "-")
                data.mkdir()
                server = servers.start("syncclass", data, *options)
                try:
                    for camera, browser in cameras.items():
                        runs = [
                            await one_ramp(browser, server, args.seconds) for _ in range(args.runs)
                        ]
                        keys = runs[0]["times"].keys()
                        result["configs"][f"{name} / {camera}"] = {
                            "median_s": {
                                k: _median([r["times"][k] for r in runs], args.seconds)
                                for k in keys
                            },
                            "runs": runs,
                        }
                    if name == "transport-cc":
                        link = LinkEmulator(
                            replace(GOOD, name="1.5M up", uplink_rate=LIMIT), own_thread=True
                        )
                        try:
                            limited = await one_ramp(
                                cameras["textured y4m"], server, args.limited_seconds, link
                            )
                        finally:
                            link.close()
                        tail = [s for s in limited["trace"] if s[0] >= args.limited_seconds - 10]
                        estimates = [s[4] * 1e3 for s in tail]
                        result["limited"] = {
                            "uplink_bps": LIMIT,
                            "estimate_last_10s_median_bps": statistics.median(estimates)
                            if estimates
                            else None,
                            "estimate_last_10s_range_bps": [min(estimates), max(estimates)]
                            if estimates
                            else None,
                            "uplink_lane": link.stats()["uplink"],
                            "trace": limited["trace"],
                        }
                finally:
                    server.process.terminate()
                    server.process.wait(10)
            for browser in cameras.values():
                await browser.close()
    return result


def _fmt(value: float | None, cap: float) -> str:
    if value is None:
        return "–"
    return f">{cap:.0f} s" if value >= cap else f"{value:.1f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench uplink",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--limited-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if not (
        1 <= args.runs <= 10 and 5 <= args.seconds <= 120 and 15 <= args.limited_seconds <= 300
    ):
        parser.error("bounded load: 1-10 runs, 5-120 s per run, 15-300 s limited")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    result = asyncio.run(run(args))
    result.update(
        benchmark="uplink",
        command="scripts/bench uplink " + " ".join(argv or []),
        started=started,
        machine=report.machine(),
        runs=args.runs,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "uplink.json").write_text(json.dumps(result, indent=2))
    cap = args.seconds
    lines = [
        f"# Uplink ramp-up ({started})",
        "",
        f"Command: `{result['command'].strip()}`  ",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}",
        "",
        f"Seconds after 开始上课 until the teacher page's own getStats() first shows 1.5 Mbit/s "
        f"(estimate = availableOutgoingBitrate, target = the encoder's targetBitrate, sent = "
        f"bytes over the last second) and a 1280x720 picture; median of {args.runs} runs, "
        f"a run that never got there counts as >{cap:.0f} s.",
        "",
        "| server / camera | estimate | target | sent | 1280x720 | 1280x720 + target |",
        "|---|---|---|---|---|---|",
    ]
    for name, config in result["configs"].items():
        m = config["median_s"]
        lines.append(
            f"| {name} | {_fmt(m['estimate_s'], cap)} | {_fmt(m['target_s'], cap)} | "
            f"{_fmt(m['sent_s'], cap)} | {_fmt(m['hd_s'], cap)} | "
            f"{_fmt(m['hd_and_target_s'], cap)} |"
        )
    limited = result.get("limited")
    if limited and limited["estimate_last_10s_median_bps"]:
        low, high = limited["estimate_last_10s_range_bps"]
        lane = limited["uplink_lane"]
        lines += [
            "",
            f"Teacher's uplink limited to {LIMIT / 1e6:.1f} Mbit/s (link emulator, textured "
            f"camera, {args.limited_seconds:.0f} s): estimate over the last 10 s, median "
            f"**{limited['estimate_last_10s_median_bps'] / 1e6:.2f} Mbit/s** "
            f"(range {low / 1e6:.2f}–{high / 1e6:.2f}); the emulator dropped "
            f"{lane['overflow']} of {lane['datagrams_in']} datagrams at its queue, longest "
            f"queueing {lane['queue_delay_max_ms']} ms.",
        ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "uplink.md").write_text(text)
    print(text)
