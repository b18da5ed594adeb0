"""Test-wide rules: only inside a private network namespace, and a real server process."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.server import PORT_MODES, Server, port_mode_options, start_server
from tests.support.browser import launch
from tests.support.peers import use_loopback_only


def pytest_configure(config: pytest.Config) -> None:
    interfaces = [name for _, name in socket.if_nameindex() if name != "lo"]
    if interfaces:
        pytest.exit(
            "tests send packets and must run in a private network namespace with only "
            f"loopback (found {', '.join(interfaces)}): run scripts/test",
            returncode=3,
        )
    use_loopback_only()


def pytest_itemcollected(item: pytest.Item) -> None:
    """With ``-n``, whole files go to a worker (their module's server is started once), and
    every test that drives Chromium goes to one worker, one at a time: two browsers decoding
    at once on a 2-core machine would measure the machine, not the server, and the firewall
    rules some of them set (tests/support/no_udp.py) are the namespace's, shared.

    Tests marked ``alone`` judge a classroom's link by its timing (round trips, queueing,
    a browser's decoding rate): a second worker's load would move what they measure, so
    scripts/test runs them afterwards in one process (``-m alone``)."""
    path = Path(str(item.path)).resolve().relative_to(Path(__file__).resolve().parent)
    uses_browser = "browser" in getattr(item, "fixturenames", ())
    group = "chromium" if path.parts[0] == "e2e" or uses_browser else str(path)
    item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(tmp_path_factory.mktemp("server"))
    yield instance
    instance.stop()


@pytest.fixture(scope="module", params=PORT_MODES)
def server_in_each_port_mode(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with every peer on one shared UDP port, then one with a port per peer."""
    instance = start_server(tmp_path_factory.mktemp("server"), *port_mode_options(request.param))
    yield instance
    instance.stop()


@pytest.fixture
def artifacts() -> Path:
    path = Path(__file__).resolve().parent.parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (Debian's), loopback only: see tests/support/browser.py."""
    async with async_playwright() as playwright:
        instance = await launch(playwright)
        yield instance
        await instance.close()
