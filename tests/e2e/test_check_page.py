"""The network check page in real Chromium: on a machine with UDP it finds both paths; on
one whose firewall lets no UDP out it finds TCP only and says which UDP port to open."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.server import Server
from tests.support.browser import launch, open_page
from tests.support.no_udp import udp_blocked_for_nobody

pytestmark = pytest.mark.timeout(120)


async def check(page: Page) -> None:
    await page.click("#check-start")
    await expect(page.locator("body")).to_have_attribute(
        "data-checked", re.compile("^(udp|tcp|relay|none)$"), timeout=40000
    )


async def test_the_check_finds_both_paths_with_udp_open(server: Server) -> None:
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page = await open_page(browser, server.url + "/check")
            await check(page)
            await expect(page.locator("body")).to_have_attribute("data-checked", "udp")
            for path in ("udp", "tcp"):
                row = page.locator(f"#path-{path}")
                await expect(row.locator(".result")).to_have_text("可用")
                await expect(row.locator(".rtt")).to_contain_text("毫秒")
                await expect(row.locator(".down")).to_contain_text("Mbit/s")
                await expect(row.locator(".up")).to_contain_text("Mbit/s")
            await expect(page.locator("#check-advice-text")).to_contain_text("无需改动")
            # no TURN server configured: no relay to try
            await expect(page.locator("#path-relay")).to_be_hidden()
        finally:
            await browser.close()


async def test_the_check_finds_tcp_only_behind_a_udp_firewall(
    server: Server, artifacts: Path
) -> None:
    [udp_port] = [port["port"] for port in server.status()["shared_ports"]]
    with udp_blocked_for_nobody() as chromium_as_nobody:
        async with async_playwright() as playwright:
            browser = await launch(playwright, executable=chromium_as_nobody)
            try:
                page = await open_page(browser, server.url + "/check")
                await check(page)
                await expect(page.locator("body")).to_have_attribute("data-checked", "tcp")
                await expect(page.locator("#path-udp .result")).to_have_text("不可用")
                await expect(page.locator("#path-tcp .result")).to_have_text("可用")
                await expect(page.locator("#path-tcp .down")).to_contain_text("Mbit/s")
                advice = page.locator("#check-advice-text")
                await expect(advice).to_contain_text(f"UDP 端口 {udp_port}")
                await page.screenshot(path=artifacts / "check-tcp-only.png")
            finally:
                await browser.close()
