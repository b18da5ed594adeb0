"""How far behind live a classroom with no WebRTC path sees the lesson, and whether its sound
keeps with its picture: the classroom page in Chromium on the last rung of its ladder (HTTPS
only: the browser's UDP and its TCP to the server's ICE-TCP port dropped, as
tests/e2e/test_https_only_page.py does), playing the lesson's recording a few seconds behind.

The teacher publishes the test pattern (a frame number drawn in every picture, 30 fps) with a
tone that beeps at every whole second of the clip, that is with frames 0, 30, 60, ... A probe
in the page notes, for every picture its <video> presents, the frame number drawn in it and
when it is shown (``requestVideoFrameCallback``), and, from the sound the same element plays
(a Web Audio worklet on it), when each beep starts, on the same clock
(``AudioContext.getOutputTimestamp``: what is heard, output latency included).

- delay: the frame the teacher is sending now against the frame the page shows now;
- A/V offset: each beep heard against its frame shown (positive: the sound is late).
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

from tests.support.browser import launch, open_page
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.no_udp import udp_blocked_for_nobody
from tests.support.peers import Publisher, whip_publish

from . import servers

FPS = 30
CLIP_S = 60  # the pattern loops after this: frame numbers are compared modulo its length
CLIP_FRAMES = CLIP_S * FPS
DELAYED = "延迟观看 — 网络受限"

# The worklet that finds where each beep starts in what the <video> plays: the tone is quiet
# (0.15) and the beep loud (0.5); an onset is the first loud sample after 300 ms of quiet.
WORKLET = """
class Beeps extends AudioWorkletProcessor {
  constructor() { super(); this.lastLoud = -1; }
  process(inputs, outputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        if (Math.abs(channel[i]) < 0.3) continue;
        const at = currentTime + i / sampleRate;
        if (this.lastLoud < 0 || at - this.lastLoud > 0.3) this.port.postMessage(at);
        this.lastLoud = at;
      }
      for (const out of outputs[0]) out.set(channel);
    }
    return true;
  }
}
registerProcessor('beeps', Beeps);
"""

# Installed on the page's catch-up <video>: the frames it shows and the beeps it plays, in
# performance.now() milliseconds.
PROBE = """
async (worklet) => {
  const video = document.getElementById('catch-up-video');
  const probe = (window.__probe = {frames: [], beeps: []});
  const canvas = document.createElement('canvas');
  const draw = canvas.getContext('2d', {willReadFrequently: true});
  const BITS = 16;
  const marker = () => {
    const w = video.videoWidth, h = video.videoHeight;
    const block = Math.min(Math.floor(w / BITS), Math.floor(h / 6));
    if (!block) return null;
    canvas.width = w;
    canvas.height = 2 * block;
    draw.drawImage(video, 0, 0, w, 2 * block, 0, 0, w, 2 * block);
    const data = draw.getImageData(0, 0, w, 2 * block).data;
    const grey = (x, y) => {
      const i = 4 * (y * w + x);
      return (data[i] + data[i + 1] + data[i + 2]) / 3;
    };
    let index = 0;
    for (let c = 0; c < BITS; c++) {
      const x = c * block + (block >> 1);
      const bit = grey(x, block >> 1) >= 128;
      if (bit === (grey(x, block + (block >> 1)) >= 128)) return null; // row 1: complement
      index = (index << 1) | (bit ? 1 : 0);
    }
    return index;
  };
  const shown = (now, meta) => {
    const index = marker();
    if (index !== null) probe.frames.push([index, meta.expectedDisplayTime]);
    video.requestVideoFrameCallback(shown);
  };
  video.requestVideoFrameCallback(shown);
  const audio = new AudioContext();
  const url = URL.createObjectURL(new Blob([worklet], {type: 'text/javascript'}));
  await audio.audioWorklet.addModule(url);
  const node = new AudioWorkletNode(audio, 'beeps', {numberOfInputs: 1, outputChannelCount: [2]});
  node.port.onmessage = (event) => {
    const stamp = audio.getOutputTimestamp();
    probe.beeps.push(stamp.performanceTime + (event.data - stamp.contextTime) * 1000);
  };
  audio.createMediaElementSource(video).connect(node).connect(audio.destination);
  await audio.resume();
  return audio.state;
}
"""

NOW_SHOWN = """
() => {
  const frames = window.__probe.frames;
  return frames.length ? [frames[frames.length - 1][0], performance.now()] : null;
}
"""


def av_offsets(frames: list[list[float]], beeps: list[float]) -> list[float]:
    """Each beep heard against the frame of its second shown (ms; positive: sound late)."""
    offsets = []
    for index, shown_at in frames:
        if index % FPS:
            continue
        near = [beep - shown_at for beep in beeps if abs(beep - shown_at) < 500]
        if near:
            offsets.append(min(near, key=abs))
    return offsets


async def _until(check: Any, seconds: float, what: str) -> Any:
    for _ in range(int(seconds * 5)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise TimeoutError(what)


async def _measure(page: Page, publisher: Publisher, seconds: float) -> dict[str, Any]:
    track = publisher.video_track
    assert track is not None
    state = await page.evaluate(PROBE, WORKLET)
    delays: list[float] = []
    for _ in range(int(seconds * 2)):
        await asyncio.sleep(0.5)
        sent = track.frames_sent - 1  # the newest frame the teacher has sent
        now = await page.evaluate(NOW_SHOWN)
        if now is not None:
            delays.append(((sent - now[0]) % CLIP_FRAMES) / FPS)
    probe = await page.evaluate("window.__probe")
    offsets = av_offsets(probe["frames"], probe["beeps"])
    return {
        "audio_context": state,
        "delay_s": statistics.median(delays) if delays else None,
        "delay_samples": len(delays),
        "av_offset_ms": statistics.median(offsets) if offsets else None,
        "av_offset_max_abs_ms": max((abs(o) for o in offsets), default=None),
        "beeps_matched": len(offsets),
        "frames_seen": len(probe["frames"]),
    }


async def _one_run(server: servers.Running, executable: str, seconds: float) -> dict[str, Any]:
    lesson = server.api("POST", "/api/lessons", {"title": "只通 HTTPS", "record": True})
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(CLIP_S, fps=FPS, gop=FPS),
        audio=encode_opus_clip(CLIP_S),
    )
    browser: Browser | None = None
    try:
        await publisher.wait_connected()
        async with async_playwright() as playwright:
            browser = await launch(playwright, executable=executable)
            page = await open_page(browser, lesson["join_url"], bypass_csp=True)
            await page.fill("#name-input", "山里小学")
            await page.click("#name-form [type=submit]")

            async def delayed() -> bool:
                return (await page.text_content("#status") or "").strip() == DELAYED

            await _until(delayed, 40, "the page never fell back to the delayed view")

            async def playing() -> bool:
                return bool(
                    await page.evaluate(
                        "(() => { const v = document.getElementById('catch-up-video');"
                        " return v.readyState >= 3 && !v.paused && v.currentTime > 1; })()"
                    )
                )

            await _until(playing, 20, "the delayed view never played")
            result = await _measure(page, publisher, seconds)
            await browser.close()
            browser = None
            return result
    finally:
        if browser is not None:
            await browser.close()
        await publisher.close()
        server.api("POST", f"/api/lessons/{lesson['id']}/end")


async def page_runs(server: servers.Running, runs: int, seconds: float) -> list[dict[str, Any]]:
    """``runs`` classroom pages, one after another, each on a lesson of its own."""
    status = server.api("GET", "/api/status", key=servers.ADMIN_KEY)
    tcp_ports = [port["port"] for port in status["tcp_ports"]]
    results = []
    with udp_blocked_for_nobody(tcp_ports=tcp_ports) as executable:
        for _ in range(runs):
            results.append(await _one_run(server, executable, seconds))
    return results
