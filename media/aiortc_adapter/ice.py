"""ICE for a peer connection as the network configuration says: host candidates only, on the
configured addresses and ports or the shared port, with consent kept by media too.

Hooks: aioice's ``Connection.gather_candidates`` (replaced; aiortc's ``RTCIceGatherer.gather``
calls it), the gathering state it keeps (``_local_candidates_start``/``_end``, ``_components``,
``_protocols``, ``_local_candidates``, ``_use_ipv4``/``_use_ipv6``) and, on a shared port,
``_local_username`` (a longer ufrag). ICE-TCP candidates: ice_tcp.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import aioice
from aioice import ice as aioice_ice
from aioice import utils as aioice_utils
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.turn import UDP_SOCKET_BUFFER_SIZE
from aiortc import RTCPeerConnection

from ..network import Network, NetworkConfig
from .consent import authenticate_media, keep_consent
from .datagram_guard import GuardedStunProtocol, SharedStunProtocol, count_stun_rejections
from .ice_tcp import offer_tcp
from .rtp_reader import ingress_table

logger = logging.getLogger(__name__)

# a shared port (UDP or TCP) tells connections apart by their ufrag: aioice's 4 characters
# would collide somewhere among a few thousand peers
_SHARED_UFRAG_LENGTH = 16


def configure_ice(pc: RTCPeerConnection, network: Network) -> None:
    """Make ``pc`` gather host candidates only as ``network`` says, and keep consent alive
    while media flows (call after setRemoteDescription, before createAnswer)."""
    dtls_transports = {t.receiver.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        dtls_transports.add(pc.sctp.transport)
    for dtls in dtls_transports:
        connection = dtls.transport.iceGatherer._connection
        if not getattr(connection, "_syncclass_configured", False):
            if network.shared is not None or network.tcp is not None:
                connection._local_username = aioice_utils.random_string(_SHARED_UFRAG_LENGTH)
            connection.gather_candidates = functools.partial(  # type: ignore[method-assign]
                _gather, connection, network
            )
            keep_consent(connection, network.config.consent_timeout_s)
            count_stun_rejections(connection)
            connection._syncclass_configured = True  # type: ignore[attr-defined]
        authenticate_media(dtls, connection)
        # what a transport receives never reaches aiortc's decoders, on any peer
        ingress_table(dtls)


async def _gather(connection: aioice.Connection, network: Network) -> None:
    if connection._local_candidates_start:
        return
    connection._local_candidates_start = True
    config = network.config
    addresses = list(config.bind) or aioice_ice.get_host_addresses(
        use_ipv4=connection._use_ipv4, use_ipv6=connection._use_ipv6
    )
    loop = asyncio.get_running_loop()
    for component in sorted(connection._components):
        for address in addresses:
            protocol: aioice_ice.StunProtocol | None
            if network.shared is not None:
                protocol = await _share(connection, address, network)
            else:
                protocol = await _bind(loop, connection, address, config)
            if protocol is None:
                continue
            port = protocol.transport.get_extra_info("sockname")[1]
            host = config.announce or address
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            connection._protocols.append(protocol)
            connection._local_candidates.append(protocol.local_candidate)
        # after the UDP candidates: a WHIP client that reads the first candidate gets UDP
        for address in addresses:
            tcp_port = await network.tcp_port(address)
            if tcp_port is not None:
                offer_tcp(connection, tcp_port, config.announce or address, component)
    connection._local_candidates_end = True


async def _bind(
    loop: asyncio.AbstractEventLoop,
    connection: aioice.Connection,
    address: str,
    network: NetworkConfig,
) -> aioice_ice.StunProtocol | None:
    for port in network.port_order():
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: GuardedStunProtocol(connection), local_addr=(address, port)
            )
        except OSError:
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(1, 8, UDP_SOCKET_BUFFER_SIZE)  # SOL_SOCKET, SO_RCVBUF
        return protocol
    logger.warning("no free UDP port on %s in %s", address, network.ports)
    return None


async def _share(
    connection: aioice.Connection, address: str, network: Network
) -> SharedStunProtocol | None:
    assert network.shared is not None
    try:
        port = await network.shared.get(address)
    except OSError as exc:
        logger.error("cannot open UDP port %d on %s: %s", network.shared.port, address, exc)
        return None
    protocol = SharedStunProtocol(connection, port)
    if not port.attach(protocol, connection.local_username):
        logger.error("ICE ufrag %s is already in use on the shared port", connection.local_username)
        return None
    return protocol
