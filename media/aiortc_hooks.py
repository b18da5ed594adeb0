"""The one module that reaches into aiortc and aioice internals to forward packets.

aiortc's public API decodes what it receives and encodes what it sends; an SFU must do
neither. The hooks below replace the few private methods in between: ingress packets are
handed to a producer as bytes, egress streams are fed by a consumer, ICE gathering follows
the server's network configuration. Each hook is named in ../NOTES-aiortc.md and checked by
tests/media/test_aiortc_contract.py against the pinned versions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol, cast

import aioice
import aiortc
import pylibsrtp
from aioice import ice as aioice_ice
from aioice import stun as aioice_stun
from aioice import utils as aioice_utils
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.turn import UDP_SOCKET_BUFFER_SIZE
from aiortc import (
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    unpack_remb_fci,
)
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from .codec import Codec, HeaderExtension
from .consumer import EgressParameters, RtpLink
from .drops import DROPPED, unfit
from .network import Network, NetworkConfig
from .rtp_packet import RtpError, RtpPacket, parse_rtp, rewrite_into
from .udp_mux import SendBatch, SharedPort, sockaddr

logger = logging.getLogger(__name__)

PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0", "pylibsrtp": "1.0.0"}
INSTALLED = {
    "aiortc": aiortc.__version__,
    "aioice": aioice.__version__,
    "pylibsrtp": pylibsrtp.__version__,
}

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
_MAX_PLAINTEXT = 1500 - pylibsrtp.SRTP_MAX_TRAILER_LEN  # pylibsrtp's session buffer
_RTCP_INTERVAL_S = 1.0  # mean; randomised to [0.5, 1.5] like aiortc
# a peer unheard of for this many consent intervals has lost consent (RFC 7675 allows 30 s)
CONSENT_EXPIRY_INTERVALS = 5


def versions_match() -> bool:
    return INSTALLED == PINNED


if not versions_match():  # pragma: no cover - depends on the environment
    logger.warning("aiortc/aioice/pylibsrtp %s differ from the pinned %s", INSTALLED, PINNED)


# --- what the hooks call -------------------------------------------------------------------


class IngressSink(Protocol):
    """Receives one inbound stream (implemented by Producer)."""

    def on_rtp(self, packet: RtpPacket, arrival: float) -> None: ...

    def on_sender_report(self, sender_time: float, rtp_timestamp: int, arrival: float) -> None: ...


class EgressSink(Protocol):
    """Feeds one outbound stream (implemented by Consumer)."""

    def attach(self, link: RtpLink, params: EgressParameters) -> None: ...

    def on_nack(self, sequence_numbers: list[int]) -> None: ...

    def on_keyframe_request(self) -> None: ...

    def on_receiver_report(
        self, fraction_lost: int, packets_lost: int, jitter: int, rtt_s: float | None
    ) -> None: ...

    def on_remb(self, bitrate: int) -> None: ...

    def sender_report(self, wall_time: float) -> tuple[int, int, int] | None: ...


class ReceiveParameters:
    """What negotiation fixed for one inbound stream."""

    def __init__(
        self, codecs: list[Codec], extensions: list[HeaderExtension], rtx_ssrcs: dict[int, int]
    ) -> None:
        self.codecs = codecs
        self.extensions = extensions
        self.rtx_ssrcs = rtx_ssrcs  # retransmission SSRC -> media SSRC


# --- conversions ---------------------------------------------------------------------------


def _codecs(parameters: list[RTCRtpCodecParameters]) -> list[Codec]:
    rtx = {
        c.parameters.get("apt"): c.payloadType
        for c in parameters
        if c.mimeType.lower().endswith("/rtx")
    }
    return [
        Codec(
            mime_type=c.mimeType,
            clock_rate=c.clockRate,
            payload_type=c.payloadType,
            channels=c.channels,
            parameters=dict(c.parameters),
            rtx_payload_type=rtx.get(c.payloadType),
        )
        for c in parameters
        if not c.mimeType.lower().endswith("/rtx")
    ]


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Codec]:
    """The codecs both sides support, after setRemoteDescription, in the peer's numbering."""
    return _codecs(transceiver._codecs)


def restrict_codecs(transceiver: RTCRtpTransceiver, mime_types: tuple[str, ...]) -> list[Codec]:
    """Keep only ``mime_types`` (and their RTX) in what the answer will accept; returns them.

    aiortc fixes the common codecs in setRemoteDescription, before an answerer could set
    preferences, so they are filtered afterwards."""
    kept = [c for c in transceiver._codecs if c.mimeType.lower() in mime_types]
    if not kept:
        # left as offered: an answer section without any codec is not SDP (the caller
        # refuses the offer or makes the section inactive)
        return []
    media_types = {c.payloadType for c in kept}
    kept += [
        c
        for c in transceiver._codecs
        if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") in media_types
    ]
    transceiver._codecs = kept
    return _codecs(kept)


def ntp_to_unix(ntp: int) -> float:
    return ntp / (1 << 32) - NTP_EPOCH_OFFSET


def unix_to_ntp(seconds: float) -> int:
    return int((seconds + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


# --- sending on an established transport ---------------------------------------------------


class DtlsLink:
    """Encrypt and send on the selected ICE pair without going through aiortc's coroutines.

    aiortc's ``_send_rtp`` costs three awaits per packet; this is the same work, synchronous.
    ``forward`` is the SFU's fast path: the packet is copied once, its header rewritten and
    protected in place, and handed to the kernel from there. On a shared port the place is a
    slot of the port's send batch, and the whole fan-out leaves in one system call; on a port
    of its own it is the link's own buffer, sent at once.

    What ``forward`` needs of the transport (that it is connected, its SRTP session, the ICE
    pair and how to reach it) is looked up when it changes (``_LinkWatch``), not per packet:
    in a fan-out each classroom's transport would be read from memory that is no longer in
    the CPU's caches.
    """

    __slots__ = (
        "_dtls",
        "_connection",
        "_length",
        "_session",
        "_srtp",
        "_cdata",
        "_view",
        "_batch",
        "_name",
        "_udp",
        "_remote",
        "__weakref__",
    )

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._connection = dtls.transport._connection
        self._length = srtp_ffi.new("int *")
        self._new_buffer()
        self._update()
        _LinkWatch.of(dtls).links.add(self)

    def _new_buffer(self) -> None:
        self._cdata = srtp_ffi.new("char[]", _MAX_PLAINTEXT + pylibsrtp.SRTP_MAX_TRAILER_LEN)
        self._view = memoryview(srtp_ffi.buffer(self._cdata))

    def _update(self) -> None:
        """Look up again what ``forward`` needs: ``_srtp`` is None until the transport is
        connected on a selected pair. Then the pair is reached through a shared port's batch
        (``_batch``, ``_name``), a socket of its own (``_udp``, ``_remote``), or, when both
        are None, a TURN allocation."""
        self._session: pylibsrtp.Session | None = None  # keeps ``_srtp`` alive
        self._srtp: Any = None
        self._batch: SendBatch | None = None
        self._name: Any = None
        self._udp: asyncio.DatagramTransport | None = None
        dtls = self._dtls
        pair = self._connection._nominated.get(1)
        if dtls._state is not DtlsState.CONNECTED or dtls._tx_srtp is None or pair is None:
            return
        protocol = pair.protocol
        self._remote: tuple[str, int] = pair.remote_addr
        if type(protocol) is _SharedStunProtocol:
            self._batch = protocol.port.batch
            if self._batch is not None:
                self._name = sockaddr(pair.remote_addr)
            else:  # no sendmmsg on this system
                self._udp = protocol.port.transport
        elif type(protocol) in _PLAIN_UDP:
            self._udp = protocol.transport
        self._session = dtls._tx_srtp
        self._srtp = self._session._srtp[0]

    def forward(
        self,
        packet: RtpPacket,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        extension_ids: bytes | None,
    ) -> None:
        srtp = self._srtp
        if srtp is None or len(packet.data) > _MAX_PLAINTEXT:
            return
        length = self._length
        batch = self._batch
        if batch is not None:
            slot = batch.slot()
            length[0] = rewrite_into(
                batch.views[slot],
                packet,
                payload_type,
                sequence_number,
                timestamp,
                ssrc,
                extension_ids,
            )
            if srtp_lib.srtp_protect(srtp, batch.buffers[slot], length):
                logger.debug("SRTP protect failed for seq %d", sequence_number)
                return
            batch.commit(slot, length[0], self._name)
            return
        view = self._view
        length[0] = rewrite_into(
            view, packet, payload_type, sequence_number, timestamp, ssrc, extension_ids
        )
        if srtp_lib.srtp_protect(srtp, self._cdata, length):
            logger.debug("SRTP protect failed for seq %d", sequence_number)
            return
        udp = self._udp
        if udp is None:  # a TURN allocation wraps the datagram itself
            self._send(view[: length[0]].tobytes())
            return
        udp.sendto(view[: length[0]], self._remote)
        if udp.get_write_buffer_size():
            # the socket was full and the datagram waits in the transport's queue, still
            # pointing into this buffer: the next packet gets a fresh one
            self._new_buffer()

    def _send(self, data: bytes) -> None:
        pair = self._connection._nominated.get(1)
        if pair is None:
            return
        protocol = pair.protocol
        if type(protocol) in _PLAIN_UDP:
            protocol.transport.sendto(data, pair.remote_addr)
        else:  # a TURN allocation wraps the datagram itself
            asyncio.ensure_future(protocol.send_data(data, pair.remote_addr))

    def send_rtp(self, packet: bytes | bytearray) -> None:
        dtls = self._dtls
        if dtls._state is not DtlsState.CONNECTED:
            return
        try:
            data = dtls._tx_srtp.protect(bytes(packet))
        except pylibsrtp.Error as exc:
            logger.debug("SRTP protect failed: %s", exc)
            return
        self._send(data)

    def send_rtcp(self, packet: bytes) -> None:
        dtls = self._dtls
        if dtls._state is not DtlsState.CONNECTED:
            return
        try:
            data = dtls._tx_srtp.protect_rtcp(packet)
        except pylibsrtp.Error as exc:
            logger.debug("SRTCP protect failed: %s", exc)
            return
        self._send(data)


class _Nominations(dict[int, Any]):
    """aioice's nominated pairs, which tell their watcher when they change."""

    def __init__(self, pairs: dict[int, Any], changed: Callable[[], None]) -> None:
        super().__init__(pairs)
        self._changed = changed

    def __setitem__(self, component: int, pair: Any) -> None:
        super().__setitem__(component, pair)
        self._changed()

    def __delitem__(self, component: int) -> None:
        super().__delitem__(component)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()


class _LinkWatch:
    """Updates the DtlsLinks of one transport when its state or its ICE pair changes: aiortc
    sets its SRTP session before the state becomes CONNECTED, aioice sets ``_nominated``."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self.links: weakref.WeakSet[DtlsLink] = weakref.WeakSet()
        set_state = dtls._set_state

        def state_changed(state: DtlsState) -> None:
            set_state(state)
            self.update()

        dtls._set_state = state_changed  # type: ignore[method-assign]
        connection = dtls.transport._connection
        connection._nominated = _Nominations(connection._nominated, self.update)

    @staticmethod
    def of(dtls: RTCDtlsTransport) -> _LinkWatch:
        watch: _LinkWatch | None = getattr(dtls, "_syncclass_link_watch", None)
        if watch is None:
            watch = dtls._syncclass_link_watch = _LinkWatch(dtls)
        return watch

    def update(self) -> None:
        for link in list(self.links):
            link._update()


# --- ICE gathering -------------------------------------------------------------------------


def configure_ice(pc: RTCPeerConnection, network: Network) -> None:
    """Make ``pc`` gather host candidates only as ``network`` says, and keep consent alive
    while media flows (call after setRemoteDescription, before createAnswer)."""
    dtls_transports = {t.receiver.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        dtls_transports.add(pc.sctp.transport)
    for dtls in dtls_transports:
        connection = dtls.transport.iceGatherer._connection
        if not getattr(connection, "_syncclass_configured", False):
            if network.shared is not None:
                # a shared port tells connections apart by this ufrag: aioice's 4 characters
                # would collide somewhere among a few thousand peers
                connection._local_username = aioice_utils.random_string(_SHARED_UFRAG_LENGTH)
            connection.gather_candidates = functools.partial(_gather, connection, network)
            # consent also counts authenticated media (_AuthenticatedMedia), see _query_consent
            connection._syncclass_last_data = asyncio.get_running_loop().time()
            connection.query_consent = functools.partial(_query_consent, connection)
            _count_stun_rejections(connection)
            connection._syncclass_configured = True
        _authenticate_media(dtls, connection)
        _ingress_table(dtls)


async def _query_consent(connection: aioice.Connection) -> None:
    """RFC 7675 consent freshness as aioice does it, except that media arriving from the peer
    also counts as its consent: FFmpeg's WHIP muxer never answers consent checks, yet
    publishes for hours. Consent lapses after ``CONSENT_EXPIRY_INTERVALS`` check intervals
    without a word from the peer (25 s by aioice's defaults), measured in time rather than
    counted in failed checks, so a peer that vanishes is closed within 30 s, not 27 to 39."""
    assert connection.remote_password is not None
    loop = asyncio.get_running_loop()
    interval = aioice_ice.CONSENT_INTERVAL
    expiry = interval * CONSENT_EXPIRY_INTERVALS
    answered = loop.time()
    while True:
        heard = max(answered, connection._syncclass_last_data)
        # wake up in time to check once more right when consent would lapse
        pause = interval * (0.8 + 0.4 * random.random())
        await asyncio.sleep(max(0.0, min(pause, heard + expiry - loop.time())))
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=connection.remote_password.encode("utf8"),
                    retransmissions=0,
                )
                answered = loop.time()
            except aioice_stun.TransactionError:
                pass
        if loop.time() - max(answered, connection._syncclass_last_data) >= expiry:
            logger.info("ICE consent expired: closing the connection")
            connection._query_consent_task = None
            await connection.close()
            return


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
                lambda: _GuardedStunProtocol(connection), local_addr=(address, port)
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
) -> _SharedStunProtocol | None:
    assert network.shared is not None
    try:
        port = await network.shared.get(address)
    except OSError as exc:
        logger.error("cannot open UDP port %d on %s: %s", network.shared.port, address, exc)
        return None
    protocol = _SharedStunProtocol(connection, port)
    if not port.attach(protocol, connection.local_username):
        logger.error("ICE ufrag %s is already in use on the shared port", connection.local_username)
        return None
    return protocol


# --- what reaches a media port -------------------------------------------------------------

# Datagrams waiting for one peer's DTLS transport beyond which more are dropped, so that a
# flood cannot grow the server's memory without bound (aioice's queue has no limit).
_MAX_QUEUED = 1000


class _GuardedStunProtocol(aioice_ice.StunProtocol):
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


class _SharedStunProtocol(_GuardedStunProtocol):
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


_PLAIN_UDP = (aioice_ice.StunProtocol, _GuardedStunProtocol, _SharedStunProtocol)
_SHARED_UFRAG_LENGTH = 16


def _from_peer(connection: aioice.Connection, component: int, addr: tuple[Any, ...]) -> bool:
    pair = connection._nominated.get(component)
    if pair is not None:
        return bool(pair.remote_addr == addr)
    # before nomination the peer may already start DTLS on a pair ICE is checking
    return any(p.remote_addr == addr for p in connection._check_list)


def _count_stun_rejections(connection: aioice.Connection) -> None:
    respond_error = connection.respond_error

    def counted(request: Any, addr: Any, protocol: Any, error_code: tuple[int, str]) -> None:
        DROPPED.add("stun_rejected")
        respond_error(request, addr, protocol, error_code)

    connection.respond_error = counted


class _AuthenticatedMedia:
    """A peer's inbound SRTP session: what fails authentication is counted, and only what
    passes counts as the peer's consent (RFC 7675): anyone can send a packet that seems to
    come from the peer's address, only the peer can send one that authenticates."""

    __slots__ = ("_session", "_connection", "_clock")

    def __init__(
        self, session: pylibsrtp.Session, connection: aioice.Connection, clock: Callable[[], float]
    ) -> None:
        self._session = session
        self._connection = connection
        self._clock = clock

    def unprotect(self, data: bytes) -> bytes:
        return self._accept(self._session.unprotect, data)

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self._accept(self._session.unprotect_rtcp, data)

    def _accept(self, unprotect: Callable[[bytes], bytes], data: bytes) -> bytes:
        try:
            plain = unprotect(data)
        except pylibsrtp.Error:
            DROPPED.add("unauthenticated")
            raise
        except ValueError as exc:  # larger than the session's buffer; aiortc only expects Error
            DROPPED.add("oversized")
            raise pylibsrtp.Error(str(exc)) from None
        self._connection._syncclass_last_data = self._clock()
        return plain


def _authenticate_media(dtls: RTCDtlsTransport, connection: aioice.Connection) -> None:
    """Wrap the transport's inbound SRTP session in _AuthenticatedMedia once DTLS made it."""
    if getattr(dtls, "_syncclass_authenticated", False):
        return
    setup_srtp = dtls._setup_srtp
    clock = asyncio.get_running_loop().time

    def setup() -> None:
        setup_srtp()
        if dtls._rx_srtp is not None:
            # aiortc only calls unprotect and unprotect_rtcp on it
            media = _AuthenticatedMedia(dtls._rx_srtp, connection, clock)
            dtls._rx_srtp = media  # type: ignore[assignment]

    dtls._setup_srtp = setup
    dtls._syncclass_authenticated = True


# --- ingress -------------------------------------------------------------------------------


class _Upstream:
    """RTCP feedback from a producer to the publisher, sent as the receiver's RTCP SSRC."""

    __slots__ = ("_receiver", "_link")

    def __init__(self, receiver: RTCRtpReceiver, link: DtlsLink) -> None:
        self._receiver = receiver
        self._link = link

    def _rtcp_ssrc(self) -> int:
        return self._receiver._RTCRtpReceiver__rtcp_ssrc or 0

    def request_keyframe(self, ssrc: int) -> None:
        packet = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc(), media_ssrc=ssrc)
        self._link.send_rtcp(bytes(packet))

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None:
        packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc(), media_ssrc=ssrc)
        packet.lost = sorted(sequence_numbers)
        self._link.send_rtcp(bytes(packet))


class _Ingress:
    """The per-receiver half of the receive path that an SFU keeps: statistics for the
    receiver reports aiortc still sends, then the producer."""

    __slots__ = ("receiver", "sink", "statistics", "clock_rate")

    def __init__(self, receiver: RTCRtpReceiver, sink: IngressSink, codec: Codec) -> None:
        self.receiver = receiver
        self.sink = sink
        self.statistics: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams
        self.clock_rate = codec.clock_rate

    def handle(self, packet: RtpPacket, arrival: float) -> None:
        statistics = self.statistics.get(packet.ssrc)
        if statistics is None:
            statistics = self.statistics[packet.ssrc] = StreamStatistics(self.clock_rate)
        statistics.add(packet)
        self.sink.on_rtp(packet, arrival)


def _ingress_table(dtls: RTCDtlsTransport) -> dict[RTCRtpReceiver, _Ingress]:
    """Route the transport's decrypted RTP to our ingress objects instead of aiortc's
    depacketizer and decoder; the packet is parsed once here."""
    table: dict[RTCRtpReceiver, _Ingress] | None = getattr(dtls, "_syncclass_ingress", None)
    if table is not None:
        return table
    table = {}
    router = dtls._rtp_router

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            logger.debug("dropping RTP: %s", exc)
            DROPPED.add("malformed")
            return
        receiver = router.route_rtp(packet)
        ingress = None if receiver is None else table.get(receiver)
        if ingress is None:
            DROPPED.add("unrouted")
            return
        try:
            ingress.handle(packet, arrival_time_ms / 1000 - NTP_EPOCH_OFFSET)
        except Exception:
            # aiortc closes the whole transport on an exception; one bad packet must
            # not end the teacher's publication
            logger.exception("forwarding %r failed", packet)

    dtls._handle_rtp_data = handle_rtp_data
    dtls._syncclass_ingress = table
    return table


def install_ingress(
    receiver: RTCRtpReceiver,
    on_receive: Callable[[ReceiveParameters, Any], IngressSink | None],
) -> None:
    """Replace ``receiver.receive`` so that, when the transport is up, ``on_receive`` is
    given the negotiated parameters and an upstream feedback channel and returns the sink.

    aiortc's own ``receive`` also starts a decoder thread; this one does not.
    """

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        if receiver._RTCRtpReceiver__started:
            return
        codecs_by_pt = receiver._RTCRtpReceiver__codecs
        for codec in parameters.codecs:
            codecs_by_pt[codec.payloadType] = codec
        rtx_ssrcs = {}
        for encoding in parameters.encodings:
            if encoding.rtx:
                rtx_ssrcs[encoding.rtx.ssrc] = encoding.ssrc
        receiver._RTCRtpReceiver__rtx_ssrc.update(rtx_ssrcs)
        dtls = receiver.transport
        link = DtlsLink(dtls)
        upstream = _Upstream(receiver, link)
        codecs = _codecs(parameters.codecs)
        extensions = [HeaderExtension(e.id, e.uri) for e in parameters.headerExtensions]
        sink = on_receive(ReceiveParameters(codecs, extensions, rtx_ssrcs), upstream)
        if sink is not None and codecs:
            _ingress_table(dtls)[receiver] = _Ingress(receiver, sink, codecs[0])
            _forward_sender_reports(receiver, sink)
        dtls._register_rtp_receiver(receiver, parameters)
        receiver._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(receiver._run_rtcp())
        receiver._RTCRtpReceiver__started = True

    receiver.receive = receive


def _forward_sender_reports(receiver: RTCRtpReceiver, sink: IngressSink) -> None:
    handle_rtcp = receiver._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        await handle_rtcp(packet)  # keeps aiortc's LSR bookkeeping for its receiver reports
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            sink.on_sender_report(ntp_to_unix(info.ntp_timestamp), info.rtp_timestamp, time.time())

    receiver._handle_rtcp_packet = handle_rtcp_packet


# --- egress --------------------------------------------------------------------------------


def install_egress(sender: RTCRtpSender, sink: EgressSink) -> None:
    """Feed ``sender``'s stream from ``sink`` instead of a track and an encoder.

    aiortc's RTP loop is replaced by an idle task (the sink sends through a DtlsLink), its
    RTCP loop by one whose sender reports come from the sink, and its RTCP handler by one
    that hands the classroom's feedback to the sink.
    """
    state: dict[str, Any] = {"sr_sent": {}}

    async def run_rtp(codec: Any) -> None:
        sender._RTCRtpSender__rtp_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        sender._RTCRtpSender__rtp_exited.set()

    async def run_rtcp() -> None:
        sender._RTCRtpSender__rtcp_started.set()
        link: DtlsLink | None = state.get("link")
        try:
            while True:
                await asyncio.sleep(_RTCP_INTERVAL_S * (0.5 + random.random()))
                link = state.get("link")
                if link is not None:
                    _send_sender_report(sender, sink, link, state["sr_sent"])
        except asyncio.CancelledError:
            pass
        if link is not None:
            link.send_rtcp(bytes(RtcpByePacket(sources=[sender._ssrc])))
        sender._RTCRtpSender__rtcp_exited.set()

    send = sender.send

    async def send_wrapper(parameters: RTCRtpSendParameters) -> None:
        await send(parameters)
        link = DtlsLink(sender.transport)
        state["link"] = link
        extensions = [HeaderExtension(e.id, e.uri) for e in parameters.headerExtensions]
        sink.attach(link, EgressParameters(sender._ssrc, sender._rtx_ssrc, extensions))

    async def handle_rtcp_packet(packet: Any) -> None:
        try:
            _handle_feedback(sender, sink, packet, state["sr_sent"])
        except Exception:
            logger.exception("handling %r failed", packet)

    sender._run_rtp = run_rtp
    sender._run_rtcp = run_rtcp
    sender.send = send_wrapper
    sender._handle_rtcp_packet = handle_rtcp_packet


def _send_sender_report(
    sender: RTCRtpSender, sink: EgressSink, link: DtlsLink, sr_sent: dict[int, float]
) -> None:
    now = time.time()
    report = sink.sender_report(now)
    if report is None:
        return
    rtp_timestamp, packets, octets = report
    ntp = unix_to_ntp(now)
    packet = bytes(
        RtcpSrPacket(
            ssrc=sender._ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=rtp_timestamp,
                packet_count=packets,
                octet_count=octets,
            ),
        )
    )
    cname = sender._RTCRtpSender__cname
    if cname:
        packet += bytes(
            RtcpSdesPacket(
                chunks=[RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))])]
            )
        )
    # remembered by their "last SR" id, to compute round-trip times from receiver reports
    sr_sent[(ntp >> 16) & 0xFFFFFFFF] = now
    if len(sr_sent) > 8:
        del sr_sent[next(iter(sr_sent))]
    link.send_rtcp(packet)


def _handle_feedback(
    sender: RTCRtpSender, sink: EgressSink, packet: Any, sr_sent: dict[int, float]
) -> None:
    if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
        for report in packet.reports:
            if report.ssrc != sender._ssrc:
                continue
            rtt = None
            sent = sr_sent.get(report.lsr)
            if sent is not None and report.lsr:
                rtt = max(time.time() - sent - report.dlsr / 65536, 0.0)
            sink.on_receiver_report(report.fraction_lost, report.packets_lost, report.jitter, rtt)
    elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
        sink.on_nack(packet.lost)
    elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
        sink.on_keyframe_request()
    elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            return
        if sender._ssrc in ssrcs:
            sink.on_remb(bitrate)
