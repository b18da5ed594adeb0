"""Network cuts, made in the test's own process: the server under test is left untouched.

A cut drops every datagram of one peer, both ways, as a pulled cable or a dead rural link
would; HTTP and the events WebSocket are not affected (they are TCP, and a cut of the media
path is what ICE has to notice by itself).

- :class:`PathCut` cuts an aiortc peer of the test: it wraps the sockets of the peer's ICE
  connection, so nothing leaves it and nothing reaches it while the cut lasts.
- :class:`BrowserPath` cuts a Chromium page. A browser's sockets are out of reach, so its
  WHIP/WHEP exchanges are routed (Playwright ``page.route``) through a UDP relay of the
  test: the offer the server gets names the relay instead of the browser, the answer the
  browser gets names the relay instead of the server, and the relay forwards datagrams
  between them unless the path is cut. Neither side learns the other's real address, so no
  packet goes around it. This needs no kernel packet filter (iptables/nftables), which a
  test sandbox may lack.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection
from playwright.async_api import Page, Request, Route


class PathCut:
    """Drops everything an aiortc peer sends or receives while :attr:`active`."""

    def __init__(self) -> None:
        self.active = False
        self.dropped = 0
        self._wrapped: set[int] = set()

    def attach(self, pc: RTCPeerConnection) -> PathCut:
        """Take hold of ``pc``'s sockets (call once its answer is applied)."""
        for transceiver in pc.getTransceivers():
            connection: Any = transceiver.receiver.transport.transport._connection
            for protocol in connection._protocols:
                if id(protocol) in self._wrapped:
                    continue
                self._wrapped.add(id(protocol))
                self._wrap(protocol)
        return self

    def _wrap(self, protocol: Any) -> None:
        receive = protocol.datagram_received
        send = protocol.transport.sendto

        def datagram_received(data: bytes, addr: Any) -> None:
            if self.active:
                self.dropped += 1
            else:
                receive(data, addr)

        def sendto(data: bytes, addr: Any = None) -> None:
            if self.active:
                self.dropped += 1
            else:
                send(data, addr)

        # asyncio looks both up on the objects for every datagram
        protocol.datagram_received = datagram_received
        protocol.transport.sendto = sendto


# ---------------------------------------------------------------------------------------------
# Chromium

_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ )(\S+)( \d+ )(\S+) (\d+)( typ .*)$", re.IGNORECASE)


def _candidates(sdp: str, replace: Callable[[re.Match[str]], str | None]) -> str:
    """``sdp`` with each candidate line replaced by ``replace(match)``, or left out on None."""
    lines = []
    for line in sdp.split("\r\n"):
        match = _CANDIDATE.match(line)
        if match is None:
            lines.append(line)
        elif (new := replace(match)) is not None:
            lines.append(new)
    return "\r\n".join(lines)


class _Forward(asyncio.DatagramProtocol):
    def __init__(self, relay: _Relay, from_browser: bool) -> None:
        self.relay = relay
        self.from_browser = from_browser

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.forward(data, addr, self.from_browser)


class _Relay:
    """Two sockets: one the browser talks to, one the server talks to."""

    def __init__(self, path: BrowserPath) -> None:
        self.path = path
        self.browser: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.to_browser: asyncio.DatagramTransport | None = None
        self.to_server: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.to_browser, _ = await loop.create_datagram_endpoint(
            lambda: _Forward(self, True), local_addr=("127.0.0.1", 0)
        )
        self.to_server, _ = await loop.create_datagram_endpoint(
            lambda: _Forward(self, False), local_addr=("127.0.0.1", 0)
        )

    @staticmethod
    def _port(transport: asyncio.DatagramTransport | None) -> int:
        assert transport is not None
        return int(transport.get_extra_info("sockname")[1])

    def forward(self, data: bytes, addr: tuple[str, int], from_browser: bool) -> None:
        if self.path.cut or (self.path.loss and self.path.chance.random() < self.path.loss):
            self.path.dropped += 1
            return
        if from_browser:
            self.browser = addr
            if self.server is not None and self.to_server is not None:
                self.to_server.sendto(data, self.server)
        elif self.browser is not None and self.to_browser is not None:
            self.to_browser.sendto(data, self.browser)

    def offer(self, sdp: str) -> str:
        """The browser's offer with its UDP candidate replaced by the relay's (TCP dropped)."""
        port = self._port(self.to_server)
        seen: set[str] = set()

        def replace(match: re.Match[str]) -> str | None:
            if match.group(2).lower() != "udp":
                return None
            if self.browser is None:
                self.browser = (match.group(4), int(match.group(5)))
            line = f"{match.group(1)}udp{match.group(3)}127.0.0.1 {port}{match.group(6)}"
            if line in seen:
                return None
            seen.add(line)
            return line

        return _candidates(sdp, replace)

    def answer(self, sdp: str) -> str:
        """The server's answer with its candidate replaced by the relay's."""
        port = self._port(self.to_browser)

        def replace(match: re.Match[str]) -> str | None:
            server = (match.group(4), int(match.group(5)))
            if self.server not in (None, server):
                raise AssertionError("the relay handles one server candidate per session")
            self.server = server
            head, protocol, priority, _, _, tail = match.groups()
            return f"{head}{protocol}{priority}127.0.0.1 {port}{tail}"

        return _candidates(sdp, replace)

    def close(self) -> None:
        for transport in (self.to_browser, self.to_server):
            if transport is not None:
                transport.close()


class BrowserPath:
    """The media path of one page's WHEP sessions, which a test can cut and restore, or make
    lossy: ``loss`` is the share of datagrams dropped at random, each way."""

    def __init__(self, loss: float = 0.0) -> None:
        self.cut = False
        self.loss = loss
        self.chance = random.Random(5)  # the same losses on every run
        self.dropped = 0
        self.sessions = 0  # WHIP/WHEP sessions set up through the relay
        self._relays: list[_Relay] = []

    async def route(self, page: Page) -> BrowserPath:
        """Send ``page``'s WHIP and WHEP offers and answers through this path (call before
        it connects): everything the page sends or receives over UDP."""
        await page.route(re.compile(r"/(whip|whep)/[^/?]+(\?.*)?$"), self._handle)
        return self

    async def _handle(self, route: Route, request: Request) -> None:
        if request.method != "POST" or request.post_data is None:
            await route.continue_()
            return
        relay = _Relay(self)
        await relay.open()
        self._relays.append(relay)
        response = await route.fetch(post_data=relay.offer(request.post_data))
        body = await response.text()
        if response.status == 201:
            body = relay.answer(body)
            self.sessions += 1
        await route.fulfill(response=response, body=body)

    def close(self) -> None:
        for relay in self._relays:
            relay.close()
        self._relays.clear()
