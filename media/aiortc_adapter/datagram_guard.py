"""The first look at every datagram reaching a media port (RFC 7983): what aioice and aiortc
would choke on, or take from someone other than the peer, is dropped and counted.

Hooks: aioice's ``StunProtocol.datagram_received`` (subclassed), ``Connection.data_received``
and its unbounded ``_queue``, ``Connection._nominated`` and ``_check_list`` (the peer's
addresses), ``Connection.respond_error`` (counted), and on a shared port
``StunProtocol.request`` and ``send_stun`` (transactions and claimed addresses).
"""

from __future__ import annotations

import logging
from typing import Any, cast

import aioice
from aioice import ice as aioice_ice
from aioice import stun as aioice_stun

from ..drops import DROPPED, unfit
from ..udp_mux import SharedPort

logger = logging.getLogger(__name__)

# Datagrams waiting for one peer's DTLS transport beyond which more are dropped, so that a
# flood cannot grow the server's memory without bound (aioice's queue has no limit).
_MAX_QUEUED = 1000


class GuardedStunProtocol(aioice_ice.StunProtocol):
    """aioice's socket protocol with a first look at every datagram (RFC 7983 demultiplexing).

    aioice hands whatever is not STUN to the peer's DTLS transport, from any address; aiortc
    then closes the transport, which ends the peer, on an empty datagram or on an SRTP-looking
    one larger than its buffer. Here DTLS and SRTP are accepted only from the address of the
    peer's ICE pair and within size, and STUN that aioice cannot parse or handle is dropped
    rather than raised out of the socket's callback. Everything dropped is counted.
    """

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        data = cast(bytes, data)
        if data and data[0] <= 3:
            self._stun_received(data, addr)
            return
        reason = unfit(data)
        connection = self.receiver
        component = self.local_candidate.component
        if reason is None and not _from_peer(connection, component, (addr[0], addr[1])):
            reason = "not_from_peer"
        if reason is None and connection._queue.qsize() >= _MAX_QUEUED:
            reason = "overflow"
        if reason is None:
            connection.data_received(data, component)
        else:
            DROPPED.add(reason)

    def _stun_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            aioice_stun.parse_message(data)
        except Exception:  # aioice raises ValueError and struct.error for what it cannot read
            DROPPED.add("malformed")
            return
        try:
            super().datagram_received(data, addr)
        except Exception as exc:
            logger.debug("dropping STUN from %s: %r", addr, exc)
            DROPPED.add("malformed")


class SharedStunProtocol(GuardedStunProtocol):
    """A connection's protocol on a shared port (media/udp_mux.py): it tells the port which
    transactions are its own, and claims the addresses whose checks it answers."""

    def __init__(self, connection: aioice.Connection, port: SharedPort) -> None:
        super().__init__(connection)
        self.port = port

    async def request(
        self,
        request: aioice_stun.Message,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[aioice_stun.Message, tuple[str, int]]:
        self.port.expect(request.transaction_id, self)
        try:
            return await super().request(request, addr, integrity_key, retransmissions)
        finally:
            self.port.forget(request.transaction_id)

    def send_stun(self, message: aioice_stun.Message, addr: tuple[str, int]) -> None:
        # aioice answers a binding request with success only once it has authenticated it
        if (
            message.message_method == aioice_stun.Method.BINDING
            and message.message_class == aioice_stun.Class.RESPONSE
        ):
            self.port.claim(addr, self)
        super().send_stun(message, addr)


# the protocols whose ``transport`` is a UDP socket (or a shared port's view of one)
PLAIN_UDP = (aioice_ice.StunProtocol, GuardedStunProtocol, SharedStunProtocol)


def _from_peer(connection: aioice.Connection, component: int, addr: tuple[Any, ...]) -> bool:
    pair = connection._nominated.get(component)
    if pair is not None:
        return bool(pair.remote_addr == addr)
    # before nomination the peer may already start DTLS on a pair ICE is checking
    return any(p.remote_addr == addr for p in connection._check_list)


def count_stun_rejections(connection: aioice.Connection) -> None:
    """Count each STUN request the connection answers with an error (unauthenticated, …)."""
    respond_error = connection.respond_error

    def counted(request: Any, addr: Any, protocol: Any, error_code: tuple[int, str]) -> None:
        DROPPED.add("stun_rejected")
        respond_error(request, addr, protocol, error_code)

    connection.respond_error = counted  # type: ignore[method-assign]
