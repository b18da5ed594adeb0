"""A classroom page whose link loses sound is sent redundant sound (RED, RFC 2198), which
Chromium negotiates: each packet carries the two before it, and the page plays the lesson's
sound with next to nothing concealed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.server import Server
from tests.support.browser import open_page
from tests.support.link_emulator import LinkEmulator, Loss, Profile

pytestmark = [pytest.mark.alone, pytest.mark.timeout(180)]

LOSSY = Profile("lossy", rtt=0.060, loss=Loss.random(0.08), jitter=0.005)
WATCH_S = 12.0

SOUND = """
async () => {
  for (const pc of window.__peerConnections || []) {
    if (pc.connectionState === 'closed') continue;
    const sdp = pc.remoteDescription ? pc.remoteDescription.sdp : '';
    let audio = null;
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        audio = {samples: r.totalSamplesReceived || 0, concealed: r.concealedSamples || 0,
                 lost: r.packetsLost || 0, received: r.packetsReceived || 0,
                 codec: (stats.get(r.codecId) || {}).mimeType || ''};
      }
    });
    if (audio) return {red: /red\\/48000/.test(sdp), audio};
  }
  return null;
}
"""


async def sound(page: Any) -> dict[str, Any]:
    return dict(await page.evaluate(SOUND) or {})


async def test_a_classroom_losing_sound_gets_it_redundant_and_plays_it(
    server: Server, browser: Browser
) -> None:
    lesson = server.create_lesson("冗余")
    teacher = await open_page(browser, lesson["teacher_url"])
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "ready")
    await teacher.click("#start")
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "live", timeout=15000)
    link = LinkEmulator(LOSSY, seed=3, own_thread=True)
    try:
        page = await open_page(browser, None)
        await link.route(page)
        await page.goto(lesson["join_url"])
        await page.fill("#name-input", "丢包")
        await page.click("#name-form [type=submit]")
        # the server hears the loss in the page's receiver reports and turns redundancy on
        deadline = time.monotonic() + 30
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = await asyncio.to_thread(server.status)
            state = next((c for c in status["classrooms"] if c["name"] == "丢包"), {})
            if state.get("audio_redundancy") == "red":
                break
            await asyncio.sleep(0.5)
        assert state.get("audio_redundancy") == "red", state
        await asyncio.sleep(1.0)
        before = await sound(page)
        assert before["red"], "the answer offers red/48000/2"
        await asyncio.sleep(WATCH_S)
        after = await sound(page)
        samples = after["audio"]["samples"] - before["audio"]["samples"]
        concealed = after["audio"]["concealed"] - before["audio"]["concealed"]
        lost = after["audio"]["lost"] - before["audio"]["lost"]
        received = after["audio"]["received"] - before["audio"]["received"]
        message = (
            f"{concealed / max(samples, 1):.2%} of the sound concealed, {lost} packets lost of "
            f"{lost + received}, codec {after['audio']['codec']}; server: {state}"
        )
        print(message)
        assert samples >= 0.8 * WATCH_S * 48000, message  # the sound plays
        assert lost > 0.03 * (lost + received), message  # the link did lose it ...
        assert concealed <= 0.01 * samples, message  # ... and next to none of it is missing
    finally:
        link.close()
