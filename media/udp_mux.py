"""One UDP port for every peer: the ICE, DTLS and SRTP of all connections on a single socket.

An operator opens one port instead of a range, and a fan-out hands the kernel every copy of a
packet in one ``sendmmsg(2)`` call instead of a ``sendto`` per classroom. What arrives is
told apart as RFC 7983 and RFC 8445 allow, as mediasoup's WebRtcServer does:

- a STUN request by the ufrag in its USERNAME, which is unique per connection;
- a STUN response by the transaction it answers;
- DTLS and SRTP by the source address, which a connection claims once it has answered an
  authenticated check from that address (``claim``). A later claim by another connection
  moves the address to it: an address then belongs to the last connection that proved it.

This module knows sockets and the STUN header only; aioice's side of it (the protocol a
connection is given) is media/aiortc_adapter/datagram_guard.py. The packet path:
SharedPort → datagram_guard → rtp_reader → Producer.on_rtp → Consumer.forward → DtlsLink → SendBatch
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol, cast

from cffi import FFI

from .drops import DROPPED, unfit

logger = logging.getLogger(__name__)


class PortUser(Protocol):
    """What a connection's socket protocol must offer to share a port."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None: ...


# --- the STUN header (RFC 8489 section 5) ----------------------------------------------------

_STUN_HEADER = 20
_COOKIE = b"\x21\x12\xa4\x42"
_USERNAME = 0x0006
_CLASS_BITS = 0x0110  # C1 and C0 of the message type: both clear in a request


def stun_request_ufrag(data: bytes) -> str | None:
    """The ufrag a STUN request is addressed to (USERNAME is "ours:theirs"): "" for a request
    without USERNAME, None for what is not a request."""
    if ((data[0] << 8) | data[1]) & _CLASS_BITS:
        return None
    end = min(len(data), _STUN_HEADER + ((data[2] << 8) | data[3]))
    position = _STUN_HEADER
    while position + 4 <= end:
        kind, length = struct.unpack_from("!HH", data, position)
        if kind == _USERNAME:
            value = data[position + 4 : position + 4 + length]
            return value.partition(b":")[0].decode("ascii", "replace")
        position += 4 + ((length + 3) & ~3)
    return ""


# --- sending a fan-out in one system call ----------------------------------------------------

_ffi = FFI()
_ffi.cdef(
    """
    struct iovec { void *iov_base; size_t iov_len; };
    struct msghdr {
        void *msg_name; unsigned int msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
        void *msg_control; size_t msg_controllen; int msg_flags;
    };
    struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
    int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
    """
)
_libc: Any
try:
    _libc = _ffi.dlopen(None)
    _libc.sendmmsg  # noqa: B018 - Linux only
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _libc = None

_DATAGRAM = 1500  # no SRTP packet the SFU sends is larger
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SOCKADDR_IN = struct.Struct("=H2s4s8x")  # family (host order), port, address
_SOCKADDR_IN6 = struct.Struct("=H2sI16sI")  # family, port, flow info, address, scope


def sockaddr(addr: tuple[str, int]) -> Any:
    """A C ``struct sockaddr`` for ``addr``, as ``sendmmsg`` takes it."""
    host, port = addr[0], addr[1]
    port_bytes = port.to_bytes(2, "big")
    if ":" in host:
        address = socket.inet_pton(socket.AF_INET6, host)
        raw = _SOCKADDR_IN6.pack(socket.AF_INET6, port_bytes, 0, address, 0)
    else:
        address = socket.inet_pton(socket.AF_INET, host)
        raw = _SOCKADDR_IN.pack(socket.AF_INET, port_bytes, address)
    return _ffi.from_buffer("char[]", bytearray(raw))


def _address(name: Any) -> tuple[str, int]:
    """The ``(host, port)`` of a C address made by ``sockaddr``."""
    raw = bytes(_ffi.buffer(name))
    if len(raw) == _SOCKADDR_IN6.size:
        _, port, _, address, _ = _SOCKADDR_IN6.unpack(raw)
        return socket.inet_ntop(socket.AF_INET6, address), int.from_bytes(port, "big")
    _, port, address = _SOCKADDR_IN.unpack(raw)
    return socket.inet_ntop(socket.AF_INET, address), int.from_bytes(port, "big")


class SendBatch:
    """Datagrams for one socket, written in place and sent together by ``flush``.

    A sender takes the next free ``slot``, writes its datagram into ``buffers[slot]`` (its
    ``views[slot]`` from Python), and ``commit``s it with its length and destination. The
    first commit schedules a flush at the end of the event loop's current callback, so
    everything one arriving packet fans out to leaves in one call. When the socket's buffer
    is full, what is left is handed to ``overflow`` (the transport, which queues it until the
    socket can take it).
    """

    CAPACITY = 256

    def __init__(
        self, fd: int, overflow: Callable[[bytes, tuple[str, int]], None] | None = None
    ) -> None:
        self._fd = fd
        self._overflow = overflow
        capacity = self.CAPACITY
        self._messages = _ffi.new("struct mmsghdr[]", capacity)
        self._iovecs = _ffi.new("struct iovec[]", capacity)
        self.buffers = [_ffi.new("char[]", _DATAGRAM) for _ in range(capacity)]
        self.views = [memoryview(_ffi.buffer(b)) for b in self.buffers]
        self._headers = [self._messages[i].msg_hdr for i in range(capacity)]
        for i, header in enumerate(self._headers):
            self._iovecs[i].iov_base = self.buffers[i]
            header.msg_iov = _ffi.addressof(self._iovecs, i)
            header.msg_iovlen = 1
        self._lengths = [self._iovecs[i] for i in range(capacity)]
        self._names: list[Any] = [None] * capacity  # keeps each destination alive until sent
        self.count = 0
        self._scheduled = False
        self.sent = 0  # datagrams the kernel took from the batch
        self.queued = 0  # datagrams handed to ``overflow``
        self.failed = 0  # datagrams refused or lost

    def slot(self) -> int:
        if self.count == self.CAPACITY:
            self.flush()
        return self.count

    def commit(self, slot: int, length: int, name: Any) -> None:
        self._lengths[slot].iov_len = length
        header = self._headers[slot]
        header.msg_name = name
        header.msg_namelen = len(name)
        self._names[slot] = name
        self.count = slot + 1
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def close(self) -> None:
        """The socket is closing: what is not sent yet never will be, and its file
        descriptor, which the system may give to another file, is not used again."""
        self._fd = -1
        self.count = 0
        self._names = [None] * self.CAPACITY

    def flush(self) -> None:
        self._scheduled = False
        count, self.count = self.count, 0
        start = 0 if self._fd >= 0 else count
        while start < count:
            sent = _libc.sendmmsg(self._fd, self._messages + start, count - start, 0)
            if sent >= 0:
                start += sent
                self.sent += sent
                continue
            error = _ffi.errno
            if error == errno.EINTR:
                continue
            if error in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                self._spill(start, count)
                break
            # this one destination refused (no route, ...): the rest still go
            logger.debug("sendmmsg to one destination failed: %s", errno.errorcode.get(error))
            self.failed += 1
            start += 1
        names = self._names
        for i in range(count):
            names[i] = None

    def _spill(self, start: int, count: int) -> None:
        """The socket is full: hand datagrams ``start`` to ``count`` to ``overflow``."""
        if self._overflow is None:
            self.failed += count - start  # media recovers by NACK
            return
        for i in range(start, count):
            length = self._lengths[i].iov_len
            self._overflow(bytes(self.views[i][:length]), _address(self._names[i]))
        self.queued += count - start


# --- the shared port -------------------------------------------------------------------------


class _PortView(asyncio.DatagramTransport):
    """What one connection's protocol sees as its transport: the shared socket, and a close
    that detaches the connection instead of closing the socket."""

    def __init__(self, port: SharedPort, user: PortUser) -> None:
        super().__init__()
        self._port = port
        self._user = user
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not self._closing:
            self._port.transport.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._port.transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._port.detach(self._user)
        asyncio.get_running_loop().call_soon(self._user.connection_lost, None)

    def abort(self) -> None:
        self.close()


class SharedPort(asyncio.DatagramProtocol):
    """One bound UDP socket and the connections that share it."""

    RECEIVE_BUFFER = 4 << 20  # every peer's datagrams wait in this one socket's queue
    SEND_BUFFER = 8 << 20  # a fan-out's copies leave in one burst, a lesson's worth per packet

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport
        self.batch: SendBatch | None = None
        self._by_ufrag: dict[str, PortUser] = {}
        self._by_address: dict[tuple[Any, ...], PortUser] = {}
        self._transactions: dict[bytes, PortUser] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def start(self, transport: asyncio.DatagramTransport) -> None:
        """Size the socket's buffers and set up the send batch (the loop may call
        ``connection_made`` only after the endpoint is returned)."""
        self.transport = transport
        sock = transport.get_extra_info("socket")
        for force, option, size in (
            (_SO_RCVBUFFORCE, socket.SO_RCVBUF, self.RECEIVE_BUFFER),
            (_SO_SNDBUFFORCE, socket.SO_SNDBUF, self.SEND_BUFFER),
        ):
            try:  # beyond the system's limit (net.core.[rw]mem_max) when allowed to
                sock.setsockopt(socket.SOL_SOCKET, force, size)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, option, size)
            if sock.getsockopt(socket.SOL_SOCKET, option) < size:
                logger.warning(
                    "the shared UDP port's %s buffer is %d bytes, less than %d: raise "
                    "net.core.%s_max or run with CAP_NET_ADMIN",
                    "receive" if option == socket.SO_RCVBUF else "send",
                    sock.getsockopt(socket.SOL_SOCKET, option),
                    size,
                    "rmem" if option == socket.SO_RCVBUF else "wmem",
                )
        if _libc is not None:
            self.batch = SendBatch(sock.fileno(), transport.sendto)

    def close(self) -> None:
        if self.batch is not None:
            self.batch.close()
        self.transport.close()

    @property
    def address(self) -> tuple[str, int]:
        sockname = self.transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    @property
    def users(self) -> int:
        return len(self._by_ufrag)

    # -- who uses it

    def attach(self, user: PortUser, ufrag: str) -> bool:
        """Give ``user`` (the protocol of the connection whose local ufrag is ``ufrag``) its
        view of the port; False if another connection already has that ufrag."""
        if ufrag in self._by_ufrag or self.transport.is_closing():
            return False
        self._by_ufrag[ufrag] = user
        user.connection_made(_PortView(self, user))
        return True

    def detach(self, user: PortUser) -> None:
        self._by_ufrag = {k: u for k, u in self._by_ufrag.items() if u is not user}
        self._by_address = {k: u for k, u in self._by_address.items() if u is not user}
        self._transactions = {k: u for k, u in self._transactions.items() if u is not user}

    def claim(self, addr: tuple[Any, ...], user: PortUser) -> None:
        """``user`` answered an authenticated check from ``addr``: its datagrams are the
        user's from now on."""
        self._by_address[(addr[0], addr[1])] = user

    def expect(self, transaction_id: bytes, user: PortUser) -> None:
        self._transactions[transaction_id] = user

    def forget(self, transaction_id: bytes) -> None:
        self._transactions.pop(transaction_id, None)

    # -- what arrives

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        first = data[0] if data else -1
        user: PortUser | None
        if 0 <= first <= 3:
            if len(data) < _STUN_HEADER or data[4:8] != _COOKIE:
                DROPPED.add("malformed")
                return
            ufrag = stun_request_ufrag(data)
            if ufrag is not None:
                user = self._by_ufrag.get(ufrag)
                if user is None:
                    DROPPED.add("stun_rejected")
                    return
            else:
                user = self._transactions.get(data[8:_STUN_HEADER])
                if user is None:
                    DROPPED.add("not_from_peer")
                    return
        else:
            user = self._by_address.get((addr[0], addr[1]))
            if user is None:
                DROPPED.add(unfit(data) or "not_from_peer")
                return
        user.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("shared UDP port: %s", exc)


class SharedPorts:
    """The shared ports of one SFU, one per bound address, opened on first use."""

    def __init__(self, port: int) -> None:
        self.port = port  # 0: a free port, the same for every connection once chosen
        self._ports: dict[str, asyncio.Future[SharedPort]] = {}

    async def get(self, address: str) -> SharedPort:
        opening = self._ports.get(address)
        if opening is None:
            opening = self._ports[address] = asyncio.ensure_future(self._open(address))
        try:
            return await asyncio.shield(opening)
        except OSError:
            if self._ports.get(address) is opening:
                del self._ports[address]  # a later connection tries again
            raise

    async def _open(self, address: str) -> SharedPort:
        loop = asyncio.get_running_loop()
        transport, port = await loop.create_datagram_endpoint(
            SharedPort, local_addr=(address, self.port)
        )
        port.start(transport)
        logger.info("media on one UDP port: %s:%d", *port.address)
        return port

    def opened(self) -> list[SharedPort]:
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
