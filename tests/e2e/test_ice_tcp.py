"""A school whose firewall lets no UDP out, in real Chromium: its classroom page plays the
lesson over the server's ICE-TCP port, while a classroom with UDP open beside it keeps UDP.

The blocked browser runs as the user nobody, and a packet filter of the test's namespace drops
every UDP datagram that user sends (tests/support/no_udp.py); nothing else is told.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from media.tcp_mux import HANDSHAKE_S
from tests.server import Server
from tests.support.browser import launch, open_page, videos
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.no_udp import udp_blocked_for_nobody, udp_dropped
from tests.support.peers import whep_subscribe, whip_publish
from tests.support.tcp_stall import StallingTcpPath

pytestmark = pytest.mark.timeout(150)

STALL_S = 6.0

# The selected ICE pair of each connection that receives the lesson, as chrome://webrtc-internals
# shows it: the protocols and the server's port
SELECTED_PAIRS = """async () => {
  const out = [];
  for (const pc of window.__peerConnections) {
    if (pc.connectionState === 'closed') continue;
    const sends = (t) => t.direction === 'sendonly' || t.direction === 'sendrecv';
    if (pc.getTransceivers().some(sends)) continue;
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    });
    if (!pairId) { out.push(null); continue; }
    const pair = stats.get(pairId);
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    out.push({local: local.protocol, tcpType: local.tcpType || null, remote: remote.protocol,
              port: remote.port, state: pair.state});
  }
  return out;
}"""


async def join(browser: Browser, lesson: dict[str, Any], name: str) -> Page:
    room = await open_page(browser, lesson["join_url"])
    await room.fill("#name-input", name)
    await room.click("#name-form [type=submit]")
    return room


async def frames(room: Page) -> int:
    return int((await videos(room))["camera-video"]["frames"])


async def wait_for_frames(room: Page, count: int, within: float) -> float:
    """Seconds until the camera picture has shown ``count`` frames."""
    began = time.monotonic()
    while await frames(room) < count:
        assert time.monotonic() - began < within, f"{count} frames not shown within {within} s"
        await room.wait_for_timeout(100)
    return time.monotonic() - began


async def until_no_half_open(server: Server) -> None:
    deadline = time.monotonic() + HANDSHAKE_S + 5
    while (port := server.status()["tcp_ports"][0])["half_open"]:
        assert time.monotonic() < deadline, port
        await asyncio.sleep(0.2)


def metrics(server: Server) -> dict[str, float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r"^syncclass_(nacks_\w+?)(?:_total)? (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


async def selected_pairs(room: Page) -> list[dict[str, Any] | None]:
    return list(await room.evaluate(SELECTED_PAIRS))


async def test_a_classroom_without_udp_plays_the_lesson_over_ice_tcp(server: Server) -> None:
    lesson = server.create_lesson("TCP only", record=False)
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(10.0),
        audio=encode_opus_clip(10.0),
    )
    tcp_port = [port["port"] for port in server.status()["tcp_ports"]]
    udp_port = [port["port"] for port in server.status()["shared_ports"]]
    assert tcp_port == udp_port  # by default on the UDP port's number
    try:
        await publisher.wait_connected()
        with udp_blocked_for_nobody() as chromium_as_nobody:
            async with async_playwright() as playwright:
                blocked_browser = await launch(playwright, executable=chromium_as_nobody)
                open_browser = await launch(playwright)
                try:
                    blocked = await join(blocked_browser, lesson, "山区小学")
                    first_frame_s = await wait_for_frames(blocked, 1, within=10)
                    await wait_for_frames(blocked, 60, within=15)
                    roomy = await join(open_browser, lesson, "城区小学")
                    await wait_for_frames(roomy, 60, within=15)

                    # the firewall did drop the blocked browser's UDP
                    assert udp_dropped() > 0
                    tcp = await selected_pairs(blocked)
                    assert tcp and all(
                        pair is not None
                        and (pair["local"], pair["remote"]) == ("tcp", "tcp")
                        and pair["tcpType"] == "active"
                        and pair["port"] == tcp_port[0]
                        for pair in tcp
                    ), tcp
                    udp = await selected_pairs(roomy)
                    assert udp and all(
                        pair is not None and (pair["local"], pair["remote"]) == ("udp", "udp")
                        for pair in udp
                    ), udp
                    # and the picture keeps moving over TCP
                    shown = await frames(blocked)
                    await wait_for_frames(blocked, shown + 50, within=10)
                    # a browser with UDP opens a TCP connection too, and leaves it unchecked
                    # once UDP works: the port closes it when its time is up
                    await until_no_half_open(server)
                    print(f"first frame over ICE-TCP after {first_frame_s:.2f} s")
                finally:
                    await blocked_browser.close()
                    await open_browser.close()
    finally:
        await publisher.close()


async def test_a_stalled_tcp_classroom_holds_up_nobody(server: Server) -> None:
    """A classroom on ICE-TCP whose connection stops reading for 6 s: the server drops its
    media instead of queueing it, the classroom beside on UDP and the server's API carry on,
    and the stalled classroom's picture moves again once its link does."""
    lesson = server.create_lesson("Stalled TCP", record=False)
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(10.0),
        audio=encode_opus_clip(10.0),
    )
    [port] = [port["port"] for port in server.status()["tcp_ports"]]
    path = await StallingTcpPath(port).start()
    beside = await whep_subscribe(f"{lesson['whep_url']}?name=Beside", lesson["whep_token"])
    try:
        await publisher.wait_connected()
        await beside.wait_for_frames(30, timeout=10)
        with udp_blocked_for_nobody() as chromium_as_nobody:
            async with async_playwright() as playwright:
                browser = await launch(playwright, executable=chromium_as_nobody)
                try:
                    room = await open_page(browser, None)
                    await path.route(room)
                    await room.goto(lesson["join_url"])
                    await room.fill("#name-input", "山区小学")
                    await room.click("#name-form [type=submit]")
                    await wait_for_frames(room, 30, within=15)
                    assert path.connections >= 1
                    assert [p and p["local"] for p in await selected_pairs(room)] == ["tcp"]
                    dropped = server.status()["tcp_ports"][0]["backlog_dropped"]
                    nacks = metrics(server)

                    path.stalled = True
                    stalled_at = time.monotonic()
                    while time.monotonic() - stalled_at < STALL_S:
                        decoded = beside.video_frames
                        asked = time.monotonic()
                        status = server.status()
                        # the server's loop is not held up by the stalled stream
                        assert time.monotonic() - asked < 1.0
                        await asyncio.sleep(1.0)
                        # 30 frames a second beside, less what aiortc holds back
                        assert beside.video_frames - decoded >= 20, "the classroom beside froze"
                    assert status["tcp_ports"][0]["backlog_dropped"] > dropped, status
                    path.stalled = False

                    shown = await frames(room)
                    await wait_for_frames(room, shown + 30, within=10)
                    # the gaps were NACKed, and nothing was resent on a link that retransmits
                    # by itself (the classroom beside, on loopback, lost nothing)
                    after = metrics(server)
                    assert after["nacks_received"] > nacks["nacks_received"], after
                    assert after["nacks_answered"] == nacks["nacks_answered"], after
                finally:
                    await browser.close()
    finally:
        path.close()
        await beside.close()
        await publisher.close()
