"""A classroom's ICE-TCP connection that stops reading, as a school's congested uplink does:
a TCP relay of the test between a Chromium page and the server's TCP media port.

``route(page)`` makes the page's WHEP answers name the relay instead of the server's TCP
port (Playwright rewrites them; UDP candidates are left alone, so block the browser's UDP to
force TCP). While ``stalled``, the relay reads nothing from the server: the server's socket
fills as it would behind a slow link, and what the server does then is what is tested. The
relay's socket towards the server has a small receive buffer, so this happens within a
second rather than after megabytes.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import cast

from playwright.async_api import Page, Request, Route

_RECEIVE_BUFFER = 32 << 10


class _Pipe(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class StallingTcpPath:
    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._upstreams: list[_Pipe] = []
        self._stalled = False
        self.connections = 0

    async def start(self) -> StallingTcpPath:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accepted(self) -> _Pipe:
        downstream = _Pipe()
        asyncio.get_running_loop().create_task(self._connect(downstream))
        self.connections += 1
        return downstream

    async def _connect(self, downstream: _Pipe) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", self.server_port))
        _, upstream = await loop.create_connection(_Pipe, sock=sock)
        upstream.peer, downstream.peer = downstream, upstream
        for data in downstream.pending:
            assert upstream.transport is not None
            upstream.transport.write(data)
        downstream.pending.clear()
        self._upstreams.append(upstream)
        if self._stalled and upstream.transport is not None:
            upstream.transport.pause_reading()

    @property
    def stalled(self) -> bool:
        return self._stalled

    @stalled.setter
    def stalled(self, value: bool) -> None:
        self._stalled = value
        for upstream in self._upstreams:
            if upstream.transport is not None:
                if value:
                    upstream.transport.pause_reading()
                else:
                    upstream.transport.resume_reading()

    async def route(self, page: Page) -> StallingTcpPath:
        await page.route(re.compile(r"/whep/[^/?]+(\?.*)?$"), self._handle)
        return self

    async def _handle(self, route: Route, request: Request) -> None:
        if request.method != "POST":
            await route.continue_()
            return
        response = await route.fetch()
        body = await response.text()
        if response.status == 201:
            body = re.sub(
                rf"( tcp \d+ 127\.0\.0\.1 ){self.server_port}( typ host tcptype passive)",
                rf"\g<1>{self.port}\g<2>",
                body,
            )
        await route.fulfill(response=response, body=body)

    def close(self) -> None:
        for upstream in self._upstreams:
            if upstream.transport is not None:
                upstream.transport.close()
        if self._server is not None:
            self._server.close()
