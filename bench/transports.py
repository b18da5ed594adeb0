"""Classrooms over ICE-TCP beside classrooms over UDP, in real Chromium, in the same run.

    scripts/bench transports [--classrooms 3] [--seconds 20]

One aiortc publisher sends the test pattern (VP8 320x240 30 fps + Opus, every picture marked
with its frame number) to a syncclass server. Then, one phase after the other:

1. no classroom: the server's CPU with the publisher alone (the baseline);
2. ``--classrooms`` classroom pages in a Chromium with UDP open (they take UDP);
3. as many in a Chromium whose UDP is blocked by a packet filter (tests/support/no_udp.py):
   they can only take the server's ICE-TCP port;
4. as many in a Chromium whose UDP and TCP to the ICE-TCP port are both blocked: they climb
   the pages' ladder to the relay, a real coturn over TLS (tests/support/coturn.py); then one
   of them reloads, and goes straight to the relay it remembered.

Per phase: the server's CPU per classroom above the baseline (millicores), the time from
opening the join link to the first picture, and the delay of each picture from the moment the
publisher sent it to the moment the page received it (the page reads the frame number off the
picture; both clocks are this machine's). The TCP figures minus the UDP ones are what ICE-TCP
adds. Needs root in scripts/bench's namespace (nftables, a browser run as the user nobody).
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

from playwright.async_api import Browser, Page, async_playwright

from tests.support.browser import launch, open_page
from tests.support.coturn import running_coturn
from tests.support.media import MARKER_BITS, encode_opus_clip, encode_vp8_clip
from tests.support.no_udp import udp_blocked_for_nobody, udp_dropped
from tests.support.peers import Publisher, use_loopback_only, whip_publish

from . import report, servers
from .fanout import RESULTS

CLIP_S = 10.0

# Every picture the page presents: its frame number (read off the marker drawn by
# tests/support/media.py) and when its last packet arrived, in ms since the epoch.
WATCH_FRAMES = """(bits) => {
  const video = document.getElementById('camera-video');
  const canvas = document.createElement('canvas');
  const context = canvas.getContext('2d', {willReadFrequently: true});
  window.__frames = [];
  const read = (now, meta) => {
    const width = video.videoWidth, height = video.videoHeight;
    if (width && height) {
      const block = Math.min(Math.floor(width / bits), Math.floor(height / 6));
      canvas.width = bits * block;
      canvas.height = 2 * block;
      context.drawImage(video, 0, 0, canvas.width, canvas.height, 0, 0, canvas.width,
                        canvas.height);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      const bright = (row, column) => {
        const i = ((row * block + (block >> 1)) * canvas.width + column * block + (block >> 1)) * 4;
        return (pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3 >= 128;
      };
      let index = 0, whole = true;
      for (let c = 0; c < bits; c++) {
        const bit = bright(0, c);
        if (bit === bright(1, c)) whole = false;
        index = (index << 1) | (bit ? 1 : 0);
      }
      const received = meta.receiveTime !== undefined ? meta.receiveTime : now;
      if (whole) window.__frames.push([index, performance.timeOrigin + received]);
    }
    video.requestVideoFrameCallback(read);
  };
  video.requestVideoFrameCallback(read);
}"""

SELECTED_PROTOCOL = """async () => {
  for (const pc of window.__peerConnections) {
    const stats = await pc.getStats();
    for (const r of stats.values()) {
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        const pair = stats.get(r.selectedCandidatePairId);
        const local = stats.get(pair.localCandidateId);
        if (local.candidateType === 'relay') return `relay/${local.relayProtocol || '?'}`;
        return local.protocol;
      }
    }
  }
  return null;
}"""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class SendTimes:
    """When the publisher sent each picture, by its frame number: the paced track sends frame
    ``i`` of cycle ``k`` at ``start + k * period + pts_i``."""

    def __init__(self, publisher: Publisher, frames: list[Any]) -> None:
        track = publisher.video_track
        assert track is not None and track.started_at is not None
        self.epoch_start = track.started_at + (time.time() - time.monotonic())
        self.origin = frames[0].pts
        step = frames[-1].pts - frames[-2].pts
        self.period = (frames[-1].pts - self.origin + step) / 90000
        self.offsets = {frame.index: (frame.pts - self.origin) / 90000 for frame in frames}

    def delay_ms(self, index: int, received_ms: float) -> float | None:
        offset = self.offsets.get(index)
        if offset is None:
            return None
        since = received_ms / 1000 - self.epoch_start - offset
        if since < -0.05:
            return None
        return (since % self.period) * 1000


async def join(browser: Browser, url: str, name: str) -> tuple[Page, float]:
    """Open the join link and name the room; the page and when it was opened."""
    page = await open_page(browser, None)
    opened = time.monotonic()
    await page.goto(url)
    await page.fill("#name-input", name)
    await page.click("#name-form [type=submit]")
    return page, opened


async def first_picture(page: Page, opened: float, within: float = 30.0) -> float:
    while True:
        shown = await page.evaluate(
            "() => document.getElementById('camera-video').getVideoPlaybackQuality()"
            ".totalVideoFrames"
        )
        if shown:
            return time.monotonic() - opened
        if time.monotonic() - opened > within:
            raise RuntimeError(f"no picture within {within} s")
        await asyncio.sleep(0.02)


async def phase(
    server: servers.Running,
    browser: Browser,
    url: str,
    classrooms: int,
    seconds: float,
    sent: SendTimes,
    baseline_mc: float,
    label: str,
    rejoin: bool = False,
) -> dict[str, Any]:
    """``rejoin``: at the end, the first classroom reloads its page (a path it remembered is
    taken at once) and the time to its first picture is measured again."""
    pages = []
    waits = []
    for i in range(classrooms):
        page, opened = await join(browser, url, f"{label}-{i}")
        pages.append((page, opened))
        waits.append(asyncio.ensure_future(first_picture(page, opened)))
    try:
        firsts = await asyncio.gather(*waits)
        protocols = [await page.evaluate(SELECTED_PROTOCOL) for page, _ in pages]
        await asyncio.sleep(2)  # joins settle
        for page, _ in pages:
            await page.evaluate(WATCH_FRAMES, MARKER_BITS)
        cpu0, t0 = servers.cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu = (servers.cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0) * 1000
        delays: list[float] = []
        received = []
        for page, _ in pages:
            frames = await page.evaluate("window.__frames")
            received.append(len(frames))
            delays += [d for i, at in frames if (d := sent.delay_ms(i, at)) is not None]
        again = None
        if rejoin:
            page = pages[0][0]
            opened = time.monotonic()
            await page.reload()  # the name is remembered: the page joins by itself
            again = round(await first_picture(page, opened), 3)
    finally:
        for page, _ in pages:
            await page.context.close()
    return {
        "protocols": protocols,
        "first_picture_s": [round(f, 3) for f in firsts],
        "first_picture_median_s": round(statistics.median(firsts), 3),
        "server_millicores": round(cpu, 1),
        "millicores_per_classroom": round((cpu - baseline_mc) / classrooms, 2),
        "pictures_received": received,
        "delay_ms_median": round(statistics.median(delays), 1) if delays else None,
        "delay_ms_p95": round(p, 1) if (p := percentile(delays, 0.95)) is not None else None,
        "first_picture_again_s": again,
    }


async def run(classrooms: int, seconds: float) -> dict[str, Any]:
    use_loopback_only()
    video = encode_vp8_clip(CLIP_S)
    with tempfile.TemporaryDirectory() as tmp, running_coturn(Path(tmp) / "coturn") as coturn:
        secret = Path(tmp) / "turn-secret"
        secret.write_text(coturn.secret)
        (Path(tmp) / "server").mkdir()
        server = servers.start(
            "syncclass",
            Path(tmp) / "server",
            "--turn-url",
            coturn.turns_url,
            "--turn-secret-file",
            str(secret),
        )
        try:
            lesson = server.api("POST", "/api/lessons", {"title": "Transports", "record": False})
            publisher = await whip_publish(
                lesson["whip_url"],
                lesson["whip_token"],
                video=video,
                audio=encode_opus_clip(CLIP_S),
            )
            try:
                await publisher.wait_connected()
                await asyncio.sleep(1)
                sent = SendTimes(publisher, video)
                cpu0, t0 = servers.cpu_seconds(server.pid), time.monotonic()
                await asyncio.sleep(seconds)
                baseline = (servers.cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
                baseline_mc = baseline * 1000
                with udp_blocked_for_nobody() as chromium_as_nobody:
                    async with async_playwright() as playwright:
                        open_browser = await launch(playwright)
                        blocked_browser = await launch(playwright, executable=chromium_as_nobody)
                        try:
                            url = lesson["join_url"]
                            udp = await phase(
                                server,
                                open_browser,
                                url,
                                classrooms,
                                seconds,
                                sent,
                                baseline_mc,
                                "udp",
                            )
                            tcp = await phase(
                                server,
                                blocked_browser,
                                url,
                                classrooms,
                                seconds,
                                sent,
                                baseline_mc,
                                "tcp",
                            )
                            dropped = udp_dropped()
                        finally:
                            await open_browser.close()
                            await blocked_browser.close()
                status = server.api("GET", "/api/status", key=servers.ADMIN_KEY)
                [tcp_port] = [port["port"] for port in status["tcp_ports"]]
                with udp_blocked_for_nobody(tcp_ports=[tcp_port]) as chromium_as_nobody:
                    async with async_playwright() as playwright:
                        relay_browser = await launch(
                            playwright,
                            executable=chromium_as_nobody,
                            # coturn's certificate is the bench's own
                            extra=["--ignore-certificate-errors"],
                        )
                        try:
                            relay = await phase(
                                server,
                                relay_browser,
                                lesson["join_url"],
                                classrooms,
                                seconds,
                                sent,
                                baseline_mc,
                                "relay",
                                rejoin=True,
                            )
                        finally:
                            await relay_browser.close()
            finally:
                await publisher.close()
        finally:
            server.stop()
    return {
        "baseline_millicores": round(baseline_mc, 1),
        "udp": udp,
        "tcp": tcp,
        "relay": relay,
        "udp_datagrams_blocked": dropped,
        "tcp_port": status["tcp_ports"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench transports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--classrooms", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    if not (1 <= args.classrooms <= 10 and 5 <= args.seconds <= 120):
        parser.error("bounded load: 1-10 classrooms, 5-120 seconds")
    measured = asyncio.run(run(args.classrooms, args.seconds))
    result = {
        "benchmark": "transports",
        "command": "scripts/bench transports " + " ".join(argv or []),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": report.machine(),
        "classrooms": args.classrooms,
        "seconds": args.seconds,
        **measured,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transports.json").write_text(json.dumps(result, indent=2))
    phases = [result["udp"], result["tcp"], result["relay"]]

    def row(name: str, key: str) -> tuple[Any, ...]:
        return (name, *(p[key] for p in phases))

    rows = [
        ("selected pair", *(", ".join(map(str, p["protocols"])) for p in phases)),
        row("server CPU per classroom (millicores)", "millicores_per_classroom"),
        row("delay sent → received, median (ms)", "delay_ms_median"),
        row("delay sent → received, p95 (ms)", "delay_ms_p95"),
        row("join link → first picture, median (s)", "first_picture_median_s"),
        row("a reload → first picture (s)", "first_picture_again_s"),
        row("pictures read per classroom", "pictures_received"),
    ]
    text = (
        f"# Classrooms over UDP, over ICE-TCP and through the relay ({result['started']})\n\n"
        f"Command: `{result['command'].strip()}`  \n"
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}, "
        f"Python {result['machine']['python']}  \n"
        f"{args.classrooms} Chromium classrooms per transport, {args.seconds:.0f} s each; "
        f"server with the publisher alone: {result['baseline_millicores']} millicores. "
        f"UDP of the blocked browser dropped by the filter: {result['udp_datagrams_blocked']} "
        "datagrams.\n\n"
        "| | UDP | ICE-TCP (UDP blocked) | relay over TURN/TLS (UDP and ICE-TCP blocked) |\n"
        "|---|---|---|---|\n" + "".join(f"| {' | '.join(map(str, r))} |\n" for r in rows)
    )
    (RESULTS / "transports.md").write_text(text)
    print(json.dumps(result, indent=2))
    print(text)
