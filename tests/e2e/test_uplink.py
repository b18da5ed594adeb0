"""The teacher's picture at its best from the first seconds: Chromium's own estimate of its
uplink, fed by the server's transport-wide congestion feedback, ramps up at once.

Each test reads the teacher page's ``getStats()`` as chrome://webrtc-internals shows it (the
outbound video's frame size and bytes, the connection's availableOutgoingBitrate). Without
the feedback the same page took about 30 s to reach 1280x720 (bench/results/uplink.md); the
bench holds the 5-s figure, the tests a bound that holds on a busy shared machine.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.server import Server
from tests.support.browser import launch, open_page
from tests.support.peers import whep_subscribe
from tests.support.uplink import outbound, watch_ramp, write_y4m

pytestmark = pytest.mark.timeout(180)

# Bounds that hold on a busy shared machine; the bench (bench/results/uplink.md) has the
# figures. Without the feedback the estimate stayed near 350 kbit/s for 8 s and the picture
# took about 30 s to reach 1280x720.
ESTIMATE_BOUND_S = 3.0  # the browser's estimate of its uplink reaches 1.5 Mbit/s
HD_BOUND_S = 15.0  # the picture is 1280x720 and the encoder may send 1.5 Mbit/s
SENT_BOUND_S = 8.0  # a costly picture is sent at 1.5 Mbit/s


async def start_teaching(browser: Browser, server: Server) -> Page:
    lesson = server.create_lesson("上行")
    teacher = await open_page(browser, lesson["teacher_url"])
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "ready")
    await teacher.click("#start")
    return teacher


async def assert_ramps(teacher: Page, what: str, key: str, bound: float) -> None:
    """The estimate reaches 1.5 Mbit/s within ESTIMATE_BOUND_S, and ``key`` of Ramp.times
    within ``bound``."""
    ramp = await watch_ramp(teacher, lambda r: r.times()[key] is not None, within=bound + 5)
    times = ramp.times()
    message = f"{what}: {times}; samples (s, size, sent, target, estimate kbit/s): {ramp.trace()}"
    estimate = times["estimate_s"]
    assert estimate is not None and estimate <= ESTIMATE_BOUND_S, message
    reached = times[key]
    assert reached is not None and reached <= bound, message


async def test_teacher_camera_ramps_to_720p_and_again_after_a_reconnect(
    server: Server, browser: Browser
) -> None:
    teacher = await start_teaching(browser, server)
    await assert_ramps(teacher, "start", "hd_and_target_s", HD_BOUND_S)
    (sample,) = await outbound(teacher)
    # the fake camera is asked for 1280x720, and gives it
    assert (sample["settings"]["width"], sample["settings"]["height"]) == (1280, 720)
    # the page says what it sends
    await expect(teacher.locator("#uplink")).to_have_text(
        re.compile(r"^1280×720 · [\d.]+ Mbit/s · 上行良好$"), timeout=10000
    )
    # ... and tells the server what its browser estimates of the uplink
    uplink = None
    for _ in range(50):
        uplink = next(
            (e["uplink"] for e in server.status()["video_layers"] if e["source"] == "camera"), None
        )
        if uplink and uplink.get("available_kbps", 0) >= 1500:
            break
        await asyncio.sleep(0.2)
    assert uplink and uplink["available_kbps"] >= 1500 and uplink["height"] == 720, uplink
    await teacher.reload()  # a reconnect: the page publishes again by itself
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "live", timeout=15000)
    await assert_ramps(teacher, "after a reconnect", "hd_and_target_s", HD_BOUND_S)


@pytest.fixture
async def textured_camera(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium whose fake camera plays a moving, textured 1280x720 picture."""
    picture = write_y4m(tmp_path / "textured.y4m")
    async with async_playwright() as playwright:
        instance = await launch(playwright, extra=[f"--use-file-for-fake-video-capture={picture}"])
        yield instance
        await instance.close()


async def test_a_textured_moving_picture_is_sent_at_full_rate_at_once(
    server: Server, textured_camera: Browser
) -> None:
    teacher = await start_teaching(textured_camera, server)
    await assert_ramps(teacher, "textured", "sent_s", SENT_BOUND_S)
    (sample,) = await outbound(teacher)
    assert (sample["settings"]["width"], sample["settings"]["height"]) == (1280, 720)


async def test_the_teacher_page_sends_three_layers_and_a_classroom_gets_the_top_one(
    server: Server, browser: Browser
) -> None:
    lesson = server.create_lesson("三层")
    teacher = await open_page(browser, lesson["teacher_url"])
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "ready")
    await teacher.click("#start")
    sizes: list[tuple[int, int]] = []
    for _ in range(100):  # the layers as /api/status shows them, polled for up to 20 s
        layers = next(
            (
                entry["layers"]
                for entry in server.status()["video_layers"]
                if entry["lesson"] == lesson["id"] and entry["source"] == "camera"
            ),
            [],
        )
        sizes = sorted((la["width"], la["height"]) for la in layers if la["active"])
        if sizes == [(320, 180), (640, 360), (1280, 720)]:
            break
        await asyncio.sleep(0.2)
    assert sizes == [(320, 180), (640, 360), (1280, 720)], layers
    classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="top")
    try:
        await classroom.wait_for_frames(30, timeout=15)
        video = classroom.video[0]
        assert (video.width, video.height) == (1280, 720)
        # Chromium's probes (padding alone on the retransmission streams) are not taken for
        # malformed packets: that counter stays a sign of an attack
        dropped = server.status()["media_dropped"]
        assert dropped["malformed"] == 0, dropped
    finally:
        await classroom.close()
