"""A school whose firewall lets out only TCP to the web server and to the TURN server: the
classroom page, in real Chromium, finds no direct path (no UDP; the server's ICE-TCP port is
closed too), climbs to the relay, plays the lesson through a real coturn over TLS, says 中继,
and the teacher's wall, 巡课 and the report say so too. Reloaded, it goes straight to the
relay.

The browser runs as the user nobody; an nftables rule of the test's namespace drops that
user's UDP and its TCP to the server's ICE-TCP port (tests/support/no_udp.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.server import Server, start_server
from tests.support.browser import launch, open_page, requested, videos
from tests.support.coturn import Coturn, start_coturn
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.no_udp import tcp_dropped, udp_blocked_for_nobody, udp_dropped
from tests.support.peers import whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(240)

# The selected pair of the page's receiving connection, as chrome://webrtc-internals shows it
SELECTED = """async () => {
  const out = [];
  for (const pc of window.__peerConnections) {
    if (pc.connectionState !== 'connected') continue;
    const sends = (t) => t.direction === 'sendonly' || t.direction === 'sendrecv';
    if (pc.getTransceivers().some(sends)) continue;
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        pair = stats.get(r.selectedCandidatePairId);
      }
    });
    const local = pair && stats.get(pair.localCandidateId);
    out.push(local ? {type: local.candidateType, relayProtocol: local.relayProtocol || null,
                      url: local.url || null} : null);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    instance = start_coturn(tmp_path_factory.mktemp("coturn"))
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory, coturn: Coturn) -> Iterator[Server]:
    instance = start_server(
        tmp_path_factory.mktemp("server"),
        "--turn-url",
        coturn.turns_url,
        env={"SYNCCLASS_TURN_SECRET": coturn.secret},
    )
    yield instance
    instance.stop()


async def frames(room: Page) -> int:
    return int((await videos(room))["camera-video"]["frames"])


async def wait_for_frames(room: Page, count: int, within: float) -> float:
    began = time.monotonic()
    while await frames(room) < count:
        assert time.monotonic() - began < within, f"{count} frames not shown within {within} s"
        await room.wait_for_timeout(100)
    return time.monotonic() - began


async def wait_for(what: str, check: Any, within: float) -> Any:
    """The first truthy ``check()`` (sync or async), polled every 0.2 s up to ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.2)


def whep_posts(room: Page, lesson_id: str) -> int:
    """WHEP sessions the page opened (POSTs to the endpoint; a DELETE names the session)."""
    return sum(1 for url in requested(room) if f"/whep/{lesson_id}?" in url)


async def test_a_classroom_reaching_only_the_turn_server_plays_through_the_relay(
    turn_server: Server, coturn: Coturn, tmp_path: Path
) -> None:
    server = turn_server
    lesson = server.create_lesson("只通中继", record=False)
    lesson_id = lesson["id"]
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(10.0),
        audio=encode_opus_clip(10.0),
    )
    [tcp_port] = [port["port"] for port in server.status()["tcp_ports"]]
    try:
        await publisher.wait_connected()
        with udp_blocked_for_nobody(tcp_ports=[tcp_port]) as chromium_as_nobody:
            async with async_playwright() as playwright:
                browser = await launch(
                    playwright,
                    executable=chromium_as_nobody,
                    # the TURN server's certificate is the test's own, as is a school's
                    # self-signed one before it is imported
                    extra=["--ignore-certificate-errors"],
                )
                try:
                    room = await open_page(browser, lesson["join_url"])
                    await room.fill("#name-input", "山顶小学")
                    began = time.monotonic()
                    await room.click("#name-form [type=submit]")
                    await wait_for_frames(room, 1, within=30)
                    first_frame_s = time.monotonic() - began
                    await wait_for_frames(room, 60, within=20)

                    # nothing direct got through: the browser tried, the firewall dropped it
                    assert udp_dropped() > 0 and tcp_dropped() > 0
                    pairs = await room.evaluate(SELECTED)
                    assert pairs and all(
                        p is not None and p["type"] == "relay" and p["relayProtocol"] == "tls"
                        for p in pairs
                    ), pairs
                    # the page says so, and remembers it
                    badge = room.locator("#path")
                    await badge.wait_for(state="visible", timeout=10000)
                    assert (await badge.text_content()) == "中继"
                    remembered = await room.evaluate("localStorage.getItem('syncclass.relay')")
                    assert remembered == "1"
                    # the first rung was given up and left: the relay session is the one kept
                    assert whep_posts(room, lesson_id) == 2

                    # the teacher's wall (its quality messages), 巡课 and /api/status say 中继
                    def classroom_path() -> str | None:
                        links = server.status()["classrooms"]
                        return next((c["path"] for c in links if c["name"] == "山顶小学"), None)

                    assert await wait_for("path in /api/status", classroom_path, 10) == "relay"
                    status, live = server.request("GET", "/api/live", token=server.teacher_key)
                    assert status == 200
                    [tile] = [x for x in live["lessons"] if x["id"] == lesson_id]
                    assert tile["paths"] == {"udp": 0, "tcp": 0, "relay": 1}

                    # reloaded: straight over the relay, without trying the direct path first
                    posts = whep_posts(room, lesson_id)
                    began = time.monotonic()
                    await room.reload()
                    await wait_for_frames(room, 1, within=20)
                    again_s = time.monotonic() - began
                    await wait_for_frames(room, 30, within=20)
                    assert whep_posts(room, lesson_id) == posts + 1
                    pairs = await room.evaluate(SELECTED)
                    assert pairs and all(p and p["type"] == "relay" for p in pairs), pairs
                    await badge.wait_for(state="visible", timeout=10000)
                    assert (await badge.text_content()) == "中继"
                    print(
                        f"first frame through the relay after {first_frame_s:.2f} s; "
                        f"after a reload {again_s:.2f} s"
                    )

                    # the lesson report keeps it (a quality sample every 10 s)
                    def report_paths() -> dict[str, float] | None:
                        status, report = server.request(
                            "GET", f"/api/lessons/{lesson_id}/report", token=server.teacher_key
                        )
                        assert status == 200, report
                        paths: dict[str, float] | None = report["path_time"].get("山顶小学")
                        return paths

                    paths = await wait_for("path in the report", report_paths, 25)
                    assert set(paths) == {"relay"}, paths
                finally:
                    await browser.close()
    finally:
        await publisher.close()
    # the credentials the page got never reached the server's log
    _, data = server.request("GET", f"/api/lessons/{lesson_id}", token=lesson["whep_token"])
    for ice_server in data["ice_servers"]:
        assert ice_server["credential"] not in server.log()


async def test_a_teacher_reaching_only_the_turn_server_teaches_through_the_relay(
    turn_server: Server, coturn: Coturn
) -> None:
    """The teacher's page climbs the same ladder: behind the same firewall it publishes
    through coturn, says 中继, and a classroom with an open network receives the lesson."""
    server = turn_server
    lesson = server.create_lesson("老师只通中继", record=False)
    [tcp_port] = [port["port"] for port in server.status()["tcp_ports"]]
    with udp_blocked_for_nobody(tcp_ports=[tcp_port]) as chromium_as_nobody:
        async with async_playwright() as playwright:
            browser = await launch(
                playwright, executable=chromium_as_nobody, extra=["--ignore-certificate-errors"]
            )
            classroom = None
            try:
                teacher = await open_page(browser, lesson["teacher_url"])
                await expect(teacher.locator("#state")).to_have_attribute(
                    "data-state", "ready", timeout=20000
                )
                await teacher.click("#start")
                await expect(teacher.locator("#state")).to_have_attribute(
                    "data-state", "live", timeout=30000
                )
                badge = teacher.locator("#path")
                await expect(badge).to_have_text("中继", timeout=10000)
                classroom = await whep_subscribe(
                    f"{lesson['whep_url']}?name=Open", lesson["whep_token"]
                )
                await classroom.wait_for_frames(30, timeout=30)
                assert udp_dropped() > 0
            finally:
                if classroom is not None:
                    await classroom.close()
                await browser.close()


async def test_the_check_page_finds_only_the_relay_behind_a_firewall_that_passes_only_turn(
    turn_server: Server,
) -> None:
    """/check, for the school's IT person: no UDP, no TCP to the media port, but the relay
    works (a TURN credential of its own, short-lived), and the advice says so."""
    [tcp_port] = [port["port"] for port in turn_server.status()["tcp_ports"]]
    with udp_blocked_for_nobody(tcp_ports=[tcp_port]) as chromium_as_nobody:
        async with async_playwright() as playwright:
            browser = await launch(
                playwright, executable=chromium_as_nobody, extra=["--ignore-certificate-errors"]
            )
            try:
                page = await open_page(browser, turn_server.url + "/check")
                await page.click("#check-start")
                await expect(page.locator("body")).to_have_attribute(
                    "data-checked", "relay", timeout=60000
                )
                await expect(page.locator("#path-udp .result")).to_have_text("不可用")
                await expect(page.locator("#path-tcp .result")).to_have_text("不可用")
                relay = page.locator("#path-relay")
                await expect(relay.locator(".result")).to_have_text("可用")
                await expect(relay.locator(".rtt")).to_contain_text("毫秒")
                await expect(relay.locator(".down")).to_contain_text("Mbit/s")
                await expect(page.locator("#check-advice-text")).to_contain_text("中继")
            finally:
                await browser.close()
    # the credential the page was given is the check's own, and short-lived
    status, body = turn_server.request("GET", "/api/check")
    assert status == 200
    [ice] = body["ice_servers"]
    expiry = int(ice["username"].split(":", 1)[0])
    assert ice["username"].endswith(":check.check")
    assert time.time() < expiry <= time.time() + 130
