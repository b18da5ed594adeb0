"""aioice's side of ICE over TCP (media/tcp_mux.py): a passive host candidate in the answer,
and for each stream that a check names this connection on, a protocol as aioice knows it.

aioice has no TCP candidates. A stream accepted on the TCP port is handed to aioice as one
more socket protocol of the connection (``_protocols``), whose "datagrams" are the stream's
frames and whose only remote address is the stream's peer: aioice answers the check, learns
the peer as a peer-reflexive candidate, checks back and lets the browser nominate the pair as
it does on UDP. The datagram guard screens the frames as it screens UDP datagrams.

Hooks: aioice's ``Connection._local_candidates`` (the candidate is added to the answer only:
no check is ever sent from it to a candidate the peer signalled, whose port is 9 for an
active TCP candidate), ``_protocols`` (each stream's protocol, so ``close`` closes it),
``Connection.close`` (wrapped, to free the ufrag on the port) and the ``StunProtocol``
methods ``GuardedStunProtocol`` overrides.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aioice
from aioice import stun as aioice_stun
from aioice.candidate import Candidate, candidate_foundation

from ..tcp_mux import MAX_STREAMS_PER_CONNECTION, TcpPort, TcpStream
from .datagram_guard import GuardedStunProtocol

logger = logging.getLogger(__name__)

# RFC 6544 section 4.2: a host candidate's local preference is (2^13 * direction-pref +
# other-pref), passive's direction preference being 4 of 7; it stays below a UDP host
# candidate's (65535), so where UDP works it wins.
_LOCAL_PREFERENCE = (1 << 13) * 4 + 8191
_HOST_TYPE_PREFERENCE = 126


def tcp_priority(component: int) -> int:
    return (_HOST_TYPE_PREFERENCE << 24) + (_LOCAL_PREFERENCE << 8) + (256 - component)


class _StreamView(asyncio.DatagramTransport):
    """What a stream's protocol sees as its transport: datagrams to the stream's peer are
    framed onto it, anything addressed elsewhere goes nowhere."""

    def __init__(self, stream: TcpStream) -> None:
        super().__init__()
        self._stream = stream

    def sendto(self, data: Any, addr: Any = None) -> None:
        stream = self._stream
        if addr is None or (addr[0], addr[1]) == stream.peer:
            stream.send(data)

    def get_write_buffer_size(self) -> int:
        return 0  # ``send`` copies what it is given: the caller may reuse its buffer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return ("0.0.0.0", 0)
        return default

    def is_closing(self) -> bool:
        return self._stream.transport is None

    def close(self) -> None:
        self._stream.close()

    def abort(self) -> None:
        self._stream.close()


class TcpStunProtocol(GuardedStunProtocol):
    """A connection's protocol for one TCP stream: the datagram guard's, which also tells the
    stream when an authenticated check was answered on it."""

    def __init__(self, connection: aioice.Connection, stream: TcpStream) -> None:
        super().__init__(connection)
        self.stream = stream

    async def request(
        self,
        request: aioice_stun.Message,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[aioice_stun.Message, tuple[str, int]]:
        if (addr[0], addr[1]) != self.stream.peer:
            # a candidate the peer signalled (an active TCP one has port 9): not this stream's
            raise aioice_stun.TransactionTimeout()
        return await super().request(request, addr, integrity_key, retransmissions)

    def send_stun(self, message: aioice_stun.Message, addr: tuple[str, int]) -> None:
        # aioice answers a binding request with success only once it has authenticated it
        if (
            message.message_method == aioice_stun.Method.BINDING
            and message.message_class == aioice_stun.Class.RESPONSE
        ):
            self.stream.established_by(self)
        super().send_stun(message, addr)


class TcpCandidate:
    """One connection's passive TCP candidate on one port, and the streams that reach it."""

    def __init__(self, connection: aioice.Connection, port: TcpPort, candidate: Candidate) -> None:
        self._connection = connection
        self._port = port
        self.candidate = candidate
        self._streams: list[TcpStunProtocol] = []

    def stream_opened(self, stream: TcpStream) -> TcpStunProtocol | None:
        connection = self._connection
        self._forget_closed_streams()
        if connection._closing or len(self._streams) >= MAX_STREAMS_PER_CONNECTION:
            return None
        protocol = TcpStunProtocol(connection, stream)
        protocol.local_candidate = self.candidate
        protocol.connection_made(_StreamView(stream))
        self._streams.append(protocol)
        connection._protocols.append(protocol)
        return protocol

    def _forget_closed_streams(self) -> None:
        """Streams that closed leave the connection's protocols (but for a nominated one,
        which aioice itself lets go), so a long lesson does not pile them up."""
        connection = self._connection
        nominated = {id(pair.protocol) for pair in connection._nominated.values()}
        live = []
        for protocol in self._streams:
            if protocol.stream.transport is not None:
                live.append(protocol)
            elif id(protocol) not in nominated and protocol in connection._protocols:
                connection._protocols.remove(protocol)
        self._streams = live


def offer_tcp(
    connection: aioice.Connection, port: TcpPort, host: str, component: int
) -> Candidate | None:
    """Add a passive TCP candidate on ``port`` (announced as ``host``) to the connection's
    local candidates, and let streams whose checks name the connection reach it."""
    candidate = Candidate(
        foundation=candidate_foundation("host", "tcp", host),
        component=component,
        transport="tcp",
        priority=tcp_priority(component),
        host=host,
        port=port.address[1],
        type="host",
        tcptype="passive",
    )
    user = TcpCandidate(connection, port, candidate)
    ufrag = connection.local_username
    if not port.attach(user, ufrag):
        logger.error("ICE ufrag %s is already in use on the TCP port", ufrag)
        return None
    _detach_on_close(connection, port, ufrag)
    connection._local_candidates.append(candidate)
    return candidate


def _detach_on_close(connection: aioice.Connection, port: TcpPort, ufrag: str) -> None:
    close = connection.close

    async def closing() -> None:
        port.detach(ufrag)
        await close()

    connection.close = closing  # type: ignore[method-assign]
