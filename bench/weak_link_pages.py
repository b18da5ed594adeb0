"""Weak-link benchmark with browsers: what classroom pages on rural links hear and see.

    scripts/bench weak-link-pages [--seconds 60] [--runs 3] [--profiles …] [--one-at-a-time]

The teacher page in headless Chromium publishes a moving, textured 1280x720 picture (a
``.y4m`` file played by Chromium's fake camera) as any teacher's browser does: three VP8
simulcast layers and Opus. Five classroom pages in Chromium watch the lesson, each through its
own link emulator (tests/support/link_emulator.py, on a thread of its own): good, rural, poor,
satellite, and collapse (good, fallen to 300 kbit/s for 20 s). Everything a classroom is
measured by comes from its own ``getStats()``, as chrome://webrtc-internals shows it: sound
samples received and concealed, frames decoded, the browser's own freeze count and time, the
picture's height. The server's view (/api/status, once a second) gives the layer it fed and
its state. The same is run against a server with ``--no-adaptation`` in each run, as the
baseline; figures are medians over the runs.

``--one-at-a-time`` gives each weak classroom a lesson window of its own beside the good one:
on a 2-core machine the teacher's browser encoding three layers and five pages decoding at once
measure the machine (the good page itself freezes), not the links.

Where ``scripts/bench weak-links`` (aiortc receivers) can run many runs cheaply, this one shows
what a school sees: Chromium's jitter buffer, its estimator and its decoder.
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

from playwright.async_api import Browser, Page, async_playwright

from bench import report, servers
from bench.weak_links import (
    COLLAPSE_RATE,
    PROFILES,
    _layer_figures,
    _profile,
    _sample,
    _status,
)
from tests.support.browser import RECEIVED, launch, open_page
from tests.support.link_emulator import GOOD, LinkEmulator
from tests.support.uplink import write_y4m

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {
    "good": "城区学校",
    "rural": "乡村学校",
    "poor": "山区学校",
    "satellite": "卫星学校",
    "collapse": "断网学校",
}
TEACHER_TOP_WAIT_S = 60.0  # the teacher's browser climbs to 720p by itself
SETTLE_S = 10.0  # joined: connected, first keyframe, first estimates

EMPTY = {
    "video": {"framesDecoded": 0, "freezeCount": 0, "freezes": 0.0, "height": 0, "nacks": 0},
    "audio": {"samples": 0, "concealed": 0, "delay": 0.0, "emitted": 0},
}


async def _received(page: Page) -> dict[str, Any]:
    try:
        answer = await page.evaluate(RECEIVED)
    except Exception:  # noqa: BLE001 - a page that is reloading has nothing to tell
        return EMPTY
    return {kind: answer.get(kind) or EMPTY[kind] for kind in ("video", "audio")}


async def _teacher(browser: Browser, server: servers.Running, url: str) -> Page:
    page = await open_page(browser, url)
    await page.wait_for_selector("#state[data-state='ready']", timeout=30_000)
    await page.click("#start")
    await page.wait_for_selector("#state[data-state='live']", timeout=30_000)
    deadline = time.monotonic() + TEACHER_TOP_WAIT_S
    while time.monotonic() < deadline:
        if _top(await _status(server)) >= 720:
            break
        await asyncio.sleep(0.5)
    return page


def _top(status: dict[str, Any]) -> int:
    return max(
        (
            int(layer.get("height") or 0)
            for entry in status.get("video_layers", [])
            if entry.get("source") == "camera"
            for layer in entry.get("layers", [])
        ),
        default=0,
    )


async def _classroom(browser: Browser, url: str, name: str, link: LinkEmulator) -> Page:
    page = await open_page(browser, None)
    await link.route(page)
    await page.goto(url)
    await page.fill("#name-input", name)
    await page.click("#name-form [type=submit]")
    return page


def _figures(
    before: dict[str, Any], after: dict[str, Any], seconds: float, heights: list[int]
) -> dict[str, Any]:
    video = {k: after["video"][k] - before["video"][k] for k in ("framesDecoded", "freezes")}
    samples = after["audio"]["samples"] - before["audio"]["samples"]
    concealed = after["audio"]["concealed"] - before["audio"]["concealed"]
    emitted = after["audio"]["emitted"] - before["audio"]["emitted"]
    delay = after["audio"]["delay"] - before["audio"]["delay"]
    shown = [h for h in heights if h]
    return {
        "audio_played": 1 - concealed / samples if samples else 0.0,
        "audio_concealed_s": concealed / 48_000,
        "audio_buffer_ms": 1000 * delay / emitted if emitted else None,
        "video_fps": video["framesDecoded"] / seconds,
        "freeze_share": video["freezes"] / seconds,
        "freezes": after["video"]["freezeCount"] - before["video"]["freezeCount"],
        "height_shown": statistics.median(shown) if shown else 0,
        "nacks": after["video"]["nacks"] - before["video"]["nacks"],
        "video_detail": _video_detail(before["video"], after["video"]),
    }


def _video_detail(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the page's video counters did in the window, for reading a freeze: frames
    received against decoded and dropped, keyframes, packets lost, the jitter buffer's delay."""
    counts = ("framesReceived", "framesDropped", "keyFrames", "packets", "packetsLost", "plis")
    out: dict[str, Any] = {k: after.get(k, 0) - before.get(k, 0) for k in counts}
    emitted = after.get("bufferEmitted", 0) - before.get("bufferEmitted", 0)
    delay = after.get("bufferDelay", 0.0) - before.get("bufferDelay", 0.0)
    out["buffer_ms"] = round(1000 * delay / emitted, 1) if emitted else None
    return out


async def _run(
    adaptive: bool, seconds: float, picture: Path, seed: int, profiles: list[str]
) -> dict[str, Any]:
    options = () if adaptive else ("--no-adaptation",)
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        server = servers.start("syncclass", Path(tmp), *options)
        links = {
            name: LinkEmulator(_profile(name), seed=seed * 10 + i, own_thread=True)
            for i, name in enumerate(profiles)
        }
        try:
            lesson = await asyncio.to_thread(
                server.api,
                "POST",
                "/api/lessons",
                {"title": "弱网", "max_classrooms": 30, "record": False},
            )
            async with async_playwright() as playwright:
                browser = await launch(
                    playwright, extra=[f"--use-file-for-fake-video-capture={picture}"]
                )
                try:
                    await _teacher(browser, server, lesson["teacher_url"])
                    pages = {
                        name: await _classroom(browser, lesson["join_url"], NAMES[name], link)
                        for name, link in links.items()
                    }
                    await asyncio.sleep(SETTLE_S)
                    return await _watch(server, pages, links, seconds)
                finally:
                    await browser.close()
        finally:
            for link in links.values():
                link.close()
            server.stop()


async def _watch(
    server: servers.Running,
    pages: dict[str, Page],
    links: dict[str, LinkEmulator],
    seconds: float,
) -> dict[str, Any]:
    profiles = list(pages)
    by_name = {NAMES[name]: name for name in profiles}
    squeeze_at, squeeze_s = seconds / 6, min(20.0, seconds / 3)
    before = {name: await _received(page) for name, page in pages.items()}
    first = {c["name"]: c for c in (await _status(server))["classrooms"]}
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in profiles}
    heights: dict[str, list[int]] = {name: [] for name in profiles}
    begin = time.monotonic()
    squeezed = recovered = None
    while (now := time.monotonic()) - begin < seconds:
        if "collapse" in links and squeezed is None and now - begin >= squeeze_at:
            links["collapse"].set_profile(
                replace(GOOD, name="collapse", rate=COLLAPSE_RATE, uplink_rate="same")
            )
            squeezed = now - begin
        if squeezed is not None and recovered is None and now - begin >= squeeze_at + squeeze_s:
            links["collapse"].set_profile(GOOD)
            recovered = now - begin
        status = await _status(server)
        for shown_name, sample in _sample(status, time.monotonic() - begin).items():
            if shown_name in by_name:
                samples[by_name[shown_name]].append(sample)
        for name, page in pages.items():
            heights[name].append((await _received(page))["video"]["height"])
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
    took = time.monotonic() - begin
    after = {name: await _received(page) for name, page in pages.items()}
    final_status = await _status(server)
    final = {c["name"]: c for c in final_status["classrooms"]}
    # the teacher's browser drops its top layer when its machine is busy: say what it sent
    result: dict[str, Any] = {"teacher_top": _top(final_status)}
    for name in profiles:
        figures = _figures(before[name], after[name], took, heights[name])
        is_collapse = name == "collapse" and recovered is not None
        figures.update(_layer_figures(samples[name], recovered if is_collapse else None))
        if is_collapse:
            figures["collapse_s"] = [round(squeezed or 0, 1), round(recovered or 0, 1)]
        shown = NAMES[name]
        view = final.get(shown, {})
        figures["server_switches"] = (view.get("switches") or 0) - (
            first.get(shown, {}).get("switches") or 0
        )
        figures["server"] = {
            k: view.get(k)
            for k in (
                "state",
                "why",
                "estimate_kbps",
                "remb_kbps",
                "loss",
                "audio_repeat",
                "video_repeat",
                "paced_kbps",
                "layers",
            )
        }
        figures["link_dropped"] = links[name].downlink.stats.as_dict()
        figures["samples"] = samples[name]
        result[name] = figures
    return result


FIGURES = (
    ("audio_played", "audio played", "{:.1%}"),
    ("audio_concealed_s", "audio concealed (s)", "{:.1f}"),
    ("audio_buffer_ms", "audio buffer (ms)", "{:.0f}"),
    ("video_fps", "video fps", "{:.1f}"),
    ("freeze_share", "frozen", "{:.1%}"),
    ("freezes", "freezes", "{:.0f}"),
    ("full_share", "full", "{:.0%}"),
    ("reduced_share", "reduced", "{:.0%}"),
    ("audio_only_share", "sound only", "{:.0%}"),
    ("height_fed", "height fed", "{:.0f}"),
    ("height_shown", "height shown", "{:.0f}"),
    ("switches", "switches", "{:.0f}"),
)


def medians(runs: list[dict[str, Any]], profiles: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("adapted", "baseline"):
        out[mode] = {}
        for name in profiles:
            rows = [run[mode][name] for run in runs]
            figures: dict[str, Any] = {}
            for key, _, _ in FIGURES:
                values = [r[key] for r in rows if r.get(key) is not None]
                figures[key] = statistics.median(values) if values else None
            if name == "collapse":
                back = [r["full_again_after_s"] for r in rows if r.get("full_again_after_s")]
                figures["full_again_after_s"] = statistics.median(back) if back else None
                figures["came_back"] = len(back)
            out[mode][name] = figures
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Weak links, in browsers",
        "",
        f"`{result['command']}` — {result['started']}, {result['machine']['cpus']} CPUs, "
        f"{len(result['runs'])} runs of {result['seconds']:.0f} s, medians. Teacher: the "
        "teacher page in Chromium, camera = a textured 1280x720 y4m (VP8 simulcast, three "
        "layers, and Opus). Classrooms: classroom pages in Chromium, each behind its link "
        "emulator; their figures from their own getStats(). *adapted*: this server; "
        "*baseline*: the same server with `--no-adaptation`, same run."
        + (
            " Each weak classroom watched in a window of its own beside the good one (the "
            "good one's figures: medians over those windows)."
            if result.get("one_at_a_time")
            else ""
        ),
        "",
        "| link | | " + " | ".join(label for _, label, _ in FIGURES) + " |",
        "|---|---|" + "---|" * len(FIGURES),
    ]
    for name in result["profiles"]:
        for mode in ("adapted", "baseline"):
            row = result["medians"][mode][name]
            cells = ["–" if row[key] is None else fmt.format(row[key]) for key, _, fmt in FIGURES]
            lines.append(
                f"| {name if mode == 'adapted' else ''} | {mode} | " + " | ".join(cells) + " |"
            )
    collapse = result["medians"]["adapted"].get("collapse", {})
    back = collapse.get("full_again_after_s")
    tops = [run[mode]["teacher_top"] for run in result["runs"] for mode in ("adapted", "baseline")]
    lines += [
        "",
        f"The teacher's top layer at the end of each window: {tops} lines.",
        "",
        "*audio played*: 1 − concealed / received samples; *audio buffer*: the jitter buffer's "
        "mean delay; *frozen*: Chromium's totalFreezesDuration over the window; *freezes*: its "
        "freezeCount. *full / reduced / sound only*, *height fed*, *switches*: from "
        "/api/status once a second, as in `scripts/bench weak-links`; *height shown*: the "
        "median frameHeight the page decoded.",
    ]
    if "collapse" in result["profiles"]:
        lines += [
            "",
            f"Collapse (300 kbit/s for {min(20.0, result['seconds'] / 3):.0f} s, from "
            f"{result['seconds'] / 6:.0f} s): back on the best layer "
            + (
                "never within the window"
                if back is None
                else f"{back:.0f} s after the link came back"
            )
            + f" (adapted; {collapse.get('came_back', 0)} of {len(result['runs'])} runs came"
            " back).",
        ]
    return "\n".join(lines) + "\n"


def _one_at_a_time(
    adaptive: bool, seconds: float, picture: Path, seed: int, profiles: list[str]
) -> dict[str, Any]:
    """Each weak classroom in a lesson of its own beside the good one; the good classroom's
    figures are the medians over those windows (the rest from the first)."""
    windows = {
        name: asyncio.run(_run(adaptive, seconds, picture, seed, ["good", name]))
        for name in profiles
        if name != "good"
    }
    if not windows:
        return asyncio.run(_run(adaptive, seconds, picture, seed, ["good"]))
    goods = [window["good"] for window in windows.values()]
    good = dict(goods[0])
    for key, _, _ in FIGURES:
        values = [g[key] for g in goods if g.get(key) is not None]
        good[key] = statistics.median(values) if values else None
    result: dict[str, Any] = {
        "teacher_top": min(window["teacher_top"] for window in windows.values()),
        "good": good,
    }
    result.update({name: window[name] for name, window in windows.items()})
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench weak-link-pages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--profiles",
        default=",".join(PROFILES),
        help="the weak classrooms watching at once (comma-separated; good always watches)",
    )
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="each weak classroom in a window of its own, beside the good one (a 2-core "
        "machine cannot decode five pictures and encode the teacher's three at once)",
    )
    args = parser.parse_args(argv)
    profiles = ["good", *(p for p in args.profiles.split(",") if p and p != "good")]
    if any(p not in PROFILES for p in profiles):
        parser.error(f"profiles: {', '.join(PROFILES)}")
    if not 20 <= args.seconds <= 300 or not 1 <= args.runs <= 5:
        parser.error("bounded load: 20-300 s windows, 1 to 5 runs")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-y4m-") as tmp:
        picture = write_y4m(Path(tmp) / "textured.y4m", seconds=4.0)
        for run in range(args.runs):
            one = {}
            for mode, adaptive in (("adapted", True), ("baseline", False)):
                print(f"run {run + 1} of {args.runs}, {mode}:", flush=True)
                if args.one_at_a_time:
                    one[mode] = _one_at_a_time(adaptive, args.seconds, picture, run + 1, profiles)
                else:
                    one[mode] = asyncio.run(
                        _run(adaptive, args.seconds, picture, run + 1, profiles)
                    )
                for name in profiles:
                    f = one[mode][name]
                    print(
                        f"  {name:9s} audio {f['audio_played']:.1%} video {f['video_fps']:.1f} "
                        f"fps frozen {f['freeze_share']:.1%} ({f['freezes']}) full "
                        f"{f['full_share']:.0%} reduced {f['reduced_share']:.0%} sound-only "
                        f"{f['audio_only_share']:.0%} fed {f['height_fed']} shown "
                        f"{f['height_shown']}\n            video {f['video_detail']} "
                        f"server {f['server']}",
                        flush=True,
                    )
            runs.append(one)
    result = {
        "benchmark": "weak-link-pages",
        "command": "scripts/bench weak-link-pages " + " ".join(argv if argv is not None else []),
        "started": started,
        "machine": report.machine(),
        "seconds": args.seconds,
        "profiles": profiles,
        "one_at_a_time": args.one_at_a_time,
        "runs": runs,
        "medians": medians(runs, profiles),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "weak-link-pages.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "weak-link-pages.md").write_text(markdown(result))
    print(markdown(result))
