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
  test sandbox may lack. It is the link emulator of ``link_emulator.py`` with a plain
  profile (no delay, no rate limit, optional random loss); ``cut`` is the emulator's.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection

from .link_emulator import LinkEmulator, Loss, Profile


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


class BrowserPath(LinkEmulator):
    """The media path of one page's WHIP/WHEP sessions, which a test can cut and restore, or
    make lossy: ``loss`` is the share of datagrams dropped at random, each way. A link
    emulator (tests/support/link_emulator.py) with no delay and no rate limit."""

    def __init__(self, loss: float = 0.0) -> None:
        super().__init__(Profile("path", loss=Loss.random(loss)), seed=5)
