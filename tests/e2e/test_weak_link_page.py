"""A classroom page on a poor link (1 Mbit/s, 3 % loss, 150 ms) under a teacher page that
sends three layers: the server feeds it the layer its link carries, so that it plays a steady
picture and unbroken sound, while a classroom on a good link keeps the teacher's best."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.server import Server
from tests.support.browser import HELD, RECEIVED, launch, open_page
from tests.support.link_emulator import POOR, LinkEmulator
from tests.support.uplink import write_y4m

pytestmark = [pytest.mark.alone, pytest.mark.timeout(300)]

WATCH_S = 15.0


@pytest.fixture
async def textured_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium whose fake camera plays a moving, textured 1280x720 picture: the teacher's
    720p layer then costs 1.5-2 Mbit/s, more than the poor link carries (the default fake
    camera's flat picture costs less than 1 Mbit/s, and would fit it)."""
    picture = write_y4m(tmp_path / "textured.y4m", seconds=2.0)
    async with async_playwright() as playwright:
        instance = await launch(playwright, extra=[f"--use-file-for-fake-video-capture={picture}"])
        yield instance
        await instance.close()


async def received(page: Page) -> dict[str, Any]:
    return dict(await page.evaluate(RECEIVED))


async def join(browser: Browser, url: str, name: str, link: LinkEmulator | None) -> Page:
    page = await open_page(browser, None)
    if link is not None:
        await link.route(page)
    await page.goto(url)
    await page.fill("#name-input", name)
    await page.click("#name-form [type=submit]")
    return page


async def link_of(server: Server, name: str) -> dict[str, Any]:
    status = await asyncio.to_thread(server.status)
    return next((c for c in status["classrooms"] if c["name"] == name), {})


async def test_a_classroom_page_on_a_poor_link_plays_a_lower_layer_without_breaks(
    server: Server, textured_browser: Browser
) -> None:
    browser = textured_browser
    lesson = server.create_lesson("弱网")
    teacher = await open_page(browser, lesson["teacher_url"])
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "ready")
    await teacher.click("#start")
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "live", timeout=15000)
    # the teacher's browser starts low and climbs: the poor classroom is tested against a
    # teacher that sends its 720p layer
    deadline = time.monotonic() + 60
    heights: list[int] = []
    while time.monotonic() < deadline:
        status = await asyncio.to_thread(server.status)
        heights = [
            layer["height"]
            for entry in status["video_layers"]
            if entry["lesson"] == lesson["id"] and entry["source"] == "camera"
            for layer in entry["layers"]
        ]
        if heights and max(heights) >= 720:
            break
        await asyncio.sleep(0.5)
    assert heights and max(heights) >= 720, heights
    link = LinkEmulator(POOR, seed=11, own_thread=True)
    try:
        good = await join(browser, lesson["join_url"], "城区", None)
        poor = await join(browser, lesson["join_url"], "山区", link)
        # the server sees the poor link cannot carry 720p and feeds it a lower layer (a busy
        # teacher's browser may drop its top layer for a while: then the link carries it all)
        deadline = time.monotonic() + 100
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = await link_of(server, "山区")
            layers = state.get("layers") or []
            if state.get("state") == "reduced" and layers and layers[0]["height"] < 720:
                break
            await asyncio.sleep(0.5)
        assert state.get("state") == "reduced", json.dumps(
            {"classroom": state, "status": await asyncio.to_thread(server.status)}
        )
        await asyncio.sleep(3.0)  # the switch's keyframe, and what was queued before it
        before, began = await received(poor), time.monotonic()
        switches_before = state["switches"]
        await asyncio.sleep(WATCH_S)
        after, took = await received(poor), time.monotonic() - began
        now, top = await link_of(server, "山区"), await link_of(server, "城区")
        video = {k: after["video"][k] - before["video"][k] for k in ("framesDecoded", "freezes")}
        audio_samples = after["audio"]["samples"] - before["audio"]["samples"]
        concealed = after["audio"]["concealed"] - before["audio"]["concealed"]
        fps = video["framesDecoded"] / took
        message = (
            f"poor classroom page: {fps:.1f} fps at {after['video']['height']}p, frozen "
            f"{video['freezes']:.1f} s, sound concealed {concealed / max(audio_samples, 1):.2%}; "
            f"server: {now}; good classroom: {top}"
        )
        print(message)
        # the targets (≥ 15 fps, ≤ 1 % frozen, ≥ 99 % of the sound) are the bench's,
        # medians over minutes (scripts/bench weak-links); here the behaviour, with room for a
        # busy machine
        assert fps >= 10, message
        assert video["freezes"] <= 0.15 * took, message
        assert concealed <= 0.05 * audio_samples, message
        assert after["video"]["height"] < 720, message
        assert now["switches"] - switches_before <= 3, message  # no flapping
        # the other classroom is untouched: the teacher's best
        assert top["state"] == "full", message
        good_video = (await received(good))["video"]
        assert good_video["height"] == 720, good_video
        # the page holds its picture long enough for the repairs its line needs (a round trip
        # and a half, playout.js)
        held = await poor.evaluate(HELD)
        assert held and max(h or 0 for h in held) >= 250, held
        # the wall says what each classroom is fed
        tile = teacher.locator(".tile[data-classroom='山区'] .link-state")
        await expect(tile).to_contain_text(re.compile("标清|流畅"), timeout=10000)
    finally:
        link.close()


async def test_the_hold_follows_the_lines_repairs_and_round_trip(
    server: Server, browser: Browser
) -> None:
    """playout.js on its own: held a round trip and a half while the browser asks for
    retransmissions, on the picture only, never shrunk by a small step, and given back to the
    browser after a quiet half minute."""
    page = await open_page(browser, f"{server.url}/")
    seen = await page.evaluate(
        """async () => {
          const { Playout, holdFor } = await import('/static/js/playout.js');
          const receivers = { camera: { jitterBufferTarget: null },
                              cameraSound: { jitterBufferTarget: null } };
          const playout = new Playout();
          playout.attach(receivers);
          const steps = [];
          const step = (nacksPerS, rttMs, at) => {
            playout.update({ nacksPerS, rttMs }, at);
            steps.push([receivers.camera.jitterBufferTarget,
                        receivers.cameraSound.jitterBufferTarget]);
          };
          step(0, 150, 0);          // a clean line: the browser's own schedule
          step(3, 150, 2000);       // repairs on a 150 ms line
          step(3, null, 4000);      // no round trip yet: nothing to go on
          step(3, 600, 6000);       // a satellite line: grows at once
          step(3, 560, 8000);       // a little shorter: kept
          step(3, 150, 10000);      // much shorter: follows
          step(0, 150, 39000);      // quiet, but not for half a minute yet
          step(0, 150, 40000);      // quiet for half a minute: given back
          return { steps, bounds: [holdFor(0), holdFor(150), holdFor(5000)] };
        }"""
    )
    assert seen["bounds"] == [200, 325, 1200]
    assert seen["steps"] == [
        [None, None],
        [325, None],
        [325, None],
        [1000, None],
        [1000, None],
        [325, None],
        [325, None],
        [None, None],
    ], seen
