"""ICE over TCP on one port beside the shared UDP port: RFC 6544 passive candidates, every
datagram framed by a 2-byte length (RFC 4571), so a school whose firewall lets only TCP out
still reaches the media.

An accepted stream is *half-open* until it proves whose it is: its first frame must be a STUN
binding request, whose USERNAME names a connection by its ufrag, and that connection must
answer an authenticated check on it (``established``). From then on the stream's frames are
that peer's datagrams (STUN, DTLS, SRTP), and what the connection sends goes back on the same
stream, framed.

What a stranger can do to the port is bounded: a frame larger than any datagram the media
carries, or a first frame that is not a STUN binding request for a known ufrag, closes the
stream; a stream that is not established within ``HANDSHAKE_S`` is closed (slow loris); and
half-open streams are capped per source address and in all, so a flood of connections is
refused at once rather than queued. What the server sends is bounded too: when a stream's
peer does not read fast enough, media is dropped once ``MEDIA_BACKLOG`` bytes wait to be sent,
instead of queueing seconds of it behind the stalled stream (TCP already retransmits what it
sent; late media is worse than lost media in a live lesson).

This module knows sockets and the STUN header only; aioice's side of a stream is
media/aiortc_adapter/ice_tcp.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any, Protocol, cast

from .drops import MAX_SRTP
from .udp_mux import PortUser, stun_request_ufrag

logger = logging.getLogger(__name__)

MAX_FRAME = MAX_SRTP  # no STUN, DTLS or SRTP datagram of a session is larger
HANDSHAKE_S = 5.0  # from accept to an answered check; a browser needs well under a second
MAX_HALF_OPEN = 256  # streams not yet established, over all addresses
MAX_HALF_OPEN_PER_ADDRESS = 32  # one school behind NAT is one address
MAX_STREAMS_PER_CONNECTION = 8  # a browser opens one per pair of candidates it checks
# Bytes waiting in the stream's buffer beyond which media (RTP) is dropped: about 0.5 s of a
# 1 Mbit/s lesson. Beyond HARD_BACKLOG, everything is (DTLS, RTCP, STUN): the peer is gone.
MEDIA_BACKLOG = 64 << 10
HARD_BACKLOG = 256 << 10
# Unsent bytes the kernel may hold for a stream; the rest waits in the transport's buffer,
# where the backlog limits above can see it
_NOTSENT_LOWAT = 32 << 10
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)

_LENGTH = struct.Struct("!H")
_STUN_HEADER = 20
_COOKIE = b"\x21\x12\xa4\x42"
_BINDING_REQUEST = b"\x00\x01"


class StreamUser(Protocol):
    """What an ICE connection offers the port: a protocol for each stream that names it."""

    def stream_opened(self, stream: TcpStream) -> PortUser | None:
        """The protocol that takes ``stream``'s datagrams, or None to refuse it."""


class PortCounts:
    """What the port refused and closed, for ``/api/status``."""

    __slots__ = ("accepted", "refused", "expired", "garbage", "oversized", "media_dropped")

    def __init__(self) -> None:
        self.accepted = 0  # streams accepted as half-open
        self.refused = 0  # over the half-open caps, or over the connection's stream cap
        self.expired = 0  # not established in time (slow loris, unauthenticated checks)
        self.garbage = 0  # a first frame that is not a binding request for a known ufrag
        self.oversized = 0  # a frame larger than MAX_FRAME
        self.media_dropped = 0  # datagrams not sent: the stream's backlog was over its limit


class TcpStream(asyncio.Protocol):
    """One accepted TCP connection: frames in, frames out."""

    def __init__(self, port: TcpPort) -> None:
        self._port = port
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self._buffer = bytearray()
        self._user: PortUser | None = None
        self._owner: StreamUser | None = None
        self._half_open = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def established(self) -> bool:
        return self.transport is not None and not self._half_open and self._user is not None

    # -- the stream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = self.transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        if not self._port.admit(self):
            self._port.counts.refused += 1
            self._abort()
            return
        self._half_open = True
        self._port.counts.accepted += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, _NOTSENT_LOWAT)
            except OSError:
                pass
        # the asyncio buffer is where the backlog is measured: never pause the senders
        self.transport.set_write_buffer_limits(high=HARD_BACKLOG * 4)
        self._timer = asyncio.get_running_loop().call_later(HANDSHAKE_S, self._expire)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        end = len(buffer)
        while end - offset >= 2:
            length = (buffer[offset] << 8) | buffer[offset + 1]
            if length > MAX_FRAME:
                self._port.counts.oversized += 1
                self._abort()
                return
            if end - offset - 2 < length:
                break
            frame = bytes(buffer[offset + 2 : offset + 2 + length])
            offset += 2 + length
            if not self._frame(frame):
                return
        del buffer[:offset]

    def _frame(self, frame: bytes) -> bool:
        user = self._user
        if user is None:
            user = self._first(frame)
            if user is None:
                self._abort()
                return False
        elif self._half_open and not (frame and frame[0] <= 3):
            # until a check is answered, a stream carries nothing but STUN
            self._port.counts.garbage += 1
            self._abort()
            return False
        user.datagram_received(frame, self.peer)
        return self.transport is not None

    def _first(self, frame: bytes) -> PortUser | None:
        """The protocol of the connection the first frame, a binding request, is for."""
        counts = self._port.counts
        if len(frame) < _STUN_HEADER or frame[:2] != _BINDING_REQUEST or frame[4:8] != _COOKIE:
            counts.garbage += 1
            return None
        ufrag = stun_request_ufrag(frame)
        owner = self._port.user(ufrag) if ufrag else None
        if owner is None:
            counts.garbage += 1
            return None
        user = owner.stream_opened(self)
        if user is None:
            counts.refused += 1
            return None
        self._owner = owner
        self._user = user
        return user

    def established_by(self, user: PortUser) -> None:
        """``user`` answered an authenticated check on this stream: it is the peer's now."""
        if user is not self._user or not self._half_open:
            return
        self._half_open = False
        self._port.release(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._half_open and self.transport is not None:
            self._port.counts.expired += 1
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._half_open = False
        self._port.release(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buffer = bytearray()
        user, self._user = self._user, None
        if user is not None:
            user.connection_lost(exc)

    def _abort(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()  # connection_lost follows, and releases the rest

    # -- what the connection sends

    def send(self, data: Any) -> None:
        """Frame and send one datagram, unless the stream is backed up: then media first,
        and past ``HARD_BACKLOG`` everything, is dropped rather than queued."""
        transport = self.transport
        if transport is None:
            return
        backlog = transport.get_write_buffer_size()
        if backlog > MEDIA_BACKLOG:
            # RTP by its first byte, not RTCP by its packet type (RFC 5761)
            media = 128 <= data[0] <= 191 and not 192 <= data[1] <= 223
            if media or backlog > HARD_BACKLOG:
                self._port.counts.media_dropped += 1
                return
        transport.write(_LENGTH.pack(len(data)) + data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpPort:
    """One listening TCP socket for media, and the connections whose streams it accepts."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.counts = PortCounts()
        self._by_ufrag: dict[str, StreamUser] = {}
        self._half_open: set[TcpStream] = set()
        self._half_open_by_host: dict[str, int] = {}

    async def listen(self, address: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: TcpStream(self), address, port, reuse_address=True, backlog=512
        )

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        sockname = self.server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    @property
    def users(self) -> int:
        return len(self._by_ufrag)

    @property
    def half_open(self) -> int:
        return len(self._half_open)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for stream in list(self._half_open):
            stream.close()

    # -- who uses it

    def attach(self, user: StreamUser, ufrag: str) -> bool:
        """Let streams whose first check names ``ufrag`` reach ``user``; False if another
        connection has that ufrag."""
        if ufrag in self._by_ufrag:
            return False
        self._by_ufrag[ufrag] = user
        return True

    def detach(self, ufrag: str) -> None:
        self._by_ufrag.pop(ufrag, None)

    def user(self, ufrag: str) -> StreamUser | None:
        return self._by_ufrag.get(ufrag)

    # -- half-open streams

    def admit(self, stream: TcpStream) -> bool:
        host = stream.peer[0]
        count = self._half_open_by_host.get(host, 0)
        if len(self._half_open) >= MAX_HALF_OPEN or count >= MAX_HALF_OPEN_PER_ADDRESS:
            return False
        self._half_open.add(stream)
        self._half_open_by_host[host] = count + 1
        return True

    def release(self, stream: TcpStream) -> None:
        if stream not in self._half_open:
            return
        self._half_open.discard(stream)
        host = stream.peer[0]
        count = self._half_open_by_host.get(host, 0) - 1
        if count > 0:
            self._half_open_by_host[host] = count
        else:
            self._half_open_by_host.pop(host, None)


class TcpPorts:
    """The ICE-TCP ports of one SFU, one per bound address, opened on first use."""

    def __init__(self, port: int) -> None:
        self.port = port  # 0: a free port
        self._ports: dict[str, asyncio.Future[TcpPort]] = {}

    async def get(self, address: str, port: int | None = None) -> TcpPort:
        """The port on ``address``: at ``port`` if given (the shared UDP port's number),
        else at the configured one."""
        opening = self._ports.get(address)
        if opening is None:
            number = self.port if port is None else port
            opening = self._ports[address] = asyncio.ensure_future(self._open(address, number))
        try:
            return await asyncio.shield(opening)
        except OSError:
            if self._ports.get(address) is opening:
                del self._ports[address]
            raise

    async def _open(self, address: str, number: int) -> TcpPort:
        port = TcpPort()
        await port.listen(address, number)
        logger.info("media over ICE-TCP on %s:%d", *port.address)
        return port

    def opened(self) -> list[TcpPort]:
        return [
            f.result()
            for f in self._ports.values()
            if f.done() and not f.cancelled() and f.exception() is None
        ]

    def close(self) -> None:
        for port in self.opened():
            port.close()
        for opening in self._ports.values():
            opening.cancel()
        self._ports.clear()
