"""Fails loudly when an aiortc/aioice/pylibsrtp upgrade moves a private hook that a module of
media/aiortc_adapter/ uses: one test per module, named after it."""

import inspect
import pkgutil
import re

import aioice
import aiortc
import pylibsrtp
from aioice import ice
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    rtcpeerconnection,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpreceiver import StreamStatistics

from media import aiortc_adapter
from media.aiortc_adapter import versions


def source(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]


def test_every_adapter_module_has_its_contract_test() -> None:
    modules = {m.name for m in pkgutil.iter_modules(aiortc_adapter.__path__)}
    assert modules >= {"versions", "codecs", "ice", "consent", "datagram_guard"}
    missing = {m for m in modules if not callable(globals().get(f"test_{m}_hooks"))}
    assert not missing, (
        f"no contract test for {', '.join(sorted(missing))} in media/aiortc_adapter/"
    )


def test_versions_hooks() -> None:
    assert aiortc.__version__ == versions.PINNED["aiortc"]
    assert aioice.__version__ == versions.PINNED["aioice"]
    assert pylibsrtp.__version__ == versions.PINNED["pylibsrtp"]
    assert versions.versions_match()


def test_codecs_hooks() -> None:
    """The answer offers what ``transceiver._codecs`` holds once the offer is applied."""
    assert "self._codecs: list[RTCRtpCodecParameters]" in source(RTCRtpTransceiver.__init__)
    assert "transceiver._codecs = common" in source(RTCPeerConnection.setRemoteDescription)
    describe = source(rtcpeerconnection.create_media_description_for_transceiver)
    assert "codecs=transceiver._codecs" in describe
    # the answer (and the receive parameters) carry ``transceiver._headerExtensions``, set
    # from the offer in setRemoteDescription: accept_header_extensions adds to it afterwards
    assert "transceiver._headerExtensions = find_common_header_extensions" in source(
        RTCPeerConnection.setRemoteDescription
    )
    assert "headerExtensions=transceiver._headerExtensions" in describe


def test_ice_hooks() -> None:
    """Gathering replaced on each connection, as the network configuration says."""
    init = source(ice.Connection.__init__)
    for name in (
        "_local_candidates_start",
        "_local_candidates_end",
        "_components",
        "_protocols",
        "_local_candidates",
        "_use_ipv4",
        "_use_ipv6",
    ):
        assert f"self.{name}" in init, name
    assert "self._connection = Connection(" in source(RTCIceGatherer.__init__)
    assert "gather_candidates()" in source(aiortc.RTCIceGatherer.gather)
    assert "self.gather_candidates" not in source(ice.Connection.connect)
    # a connection's ufrag can be replaced before the answer is made (shared port)
    assert "self._local_username = local_username" in init
    assert "return self._local_username" in source(ice.Connection)


def test_consent_hooks() -> None:
    """Our replacement of query_consent keeps aioice's loop and its close(); authenticated
    media is seen by wrapping the inbound SRTP session."""
    assert "asyncio.create_task(self.query_consent())" in source(ice.Connection.connect)
    assert "self._query_consent_task" in source(ice.Connection.__init__)
    consent = source(ice.Connection.query_consent)
    for piece in (
        "self.build_request(pair, nominate=False)",
        "retransmissions=0",
        "stun.TransactionError",
        "await self.close()",
    ):
        assert piece in consent, piece
    assert ice.CONSENT_FAILURES * ice.CONSENT_INTERVAL <= 30
    recv = source(RTCDtlsTransport._recv_next)
    assert "self._rx_srtp.unprotect_rtcp(data)" in recv
    assert "self._rx_srtp.unprotect(data)" in recv
    assert "except pylibsrtp.Error" in recv
    assert "self._setup_srtp()" in source(RTCDtlsTransport.start)
    assert "self._rx_srtp = Session(rx_policy)" in source(RTCDtlsTransport._setup_srtp)
    # what _AuthenticatedMedia turns into pylibsrtp.Error, the one error aiortc expects
    assert 'raise ValueError("packet is too long")' in source(pylibsrtp.Session)


def test_datagram_guard_hooks() -> None:
    """What the screen of every datagram relies on, on a peer's own port and a shared one."""
    recv = source(RTCDtlsTransport._recv_next)
    # why empty and oversized datagrams must never reach it: both end the transport
    assert "first_byte = data[0]" in recv
    init = source(ice.Connection.__init__)
    assert "self._queue: asyncio.Queue" in init and "self._check_list" in init
    assert "self._nominated" in init
    assert "self._queue.put_nowait((data, component))" in source(ice.Connection.data_received)
    assert "self.receiver.data_received(data, self.local_candidate.component)" in source(
        ice.StunProtocol.datagram_received
    )
    assert "self.receiver = receiver" in source(ice.StunProtocol.__init__)
    assert "def remote_addr(self)" in source(ice.CandidatePair)
    request_received = source(ice.Connection.request_received)
    assert "self.respond_error(message, addr, protocol, (401" in request_received
    # a success response leaves only after the request is authenticated: the shared port
    # gives an address to the connection that answers it
    authenticated = request_received.index("check_message_integrity")
    answered = request_received.index("message_class=stun.Class.RESPONSE")
    assert authenticated < answered
    assert "protocol.send_stun(response, addr)" in request_received[answered:]
    assert "self.transactions[request.transaction_id] = transaction" in source(
        ice.StunProtocol.request
    )


def test_ice_tcp_hooks() -> None:
    """A stream is one more protocol of the connection: aioice answers its checks, learns its
    peer as a peer-reflexive candidate and pairs it with the protocol the check came on."""
    init = source(ice.Connection.__init__)
    assert "self._local_candidates" in init and "self._protocols" in init
    # an incoming check pairs the protocol it came on, whatever its transport
    incoming = source(ice.Connection.check_incoming)
    assert "component = protocol.local_candidate.component" in incoming
    assert "pair = CandidatePair(protocol, remote_candidate)" in incoming
    assert 'type="prflx"' in incoming
    # checks go out through the pair's protocol, to the pair's remote address
    assert "await pair.protocol.request(" in source(ice.Connection.check_start)
    # pairs are made with the protocols in _protocols only, of the same transport
    assert "for protocol in self._protocols:" in source(ice.Connection._pair_remote_candidate)
    assert "self.transport.lower() == other.transport.lower()" in source(
        aioice.Candidate.can_pair_with
    )
    # data goes through the nominated pair's protocol; closing closes every protocol
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in source(
        ice.Connection.sendto
    )
    close = source(ice.Connection.close)
    assert "for protocol in self._protocols:" in close and "await protocol.close()" in close
    # a lost nominated protocol ends recv(), and with it the DTLS transport
    assert "self._queue.put_nowait(None)" in source(ice.Connection.protocol_lost)
    # the passive candidate reaches the answer with its tcptype
    assert "tcpType=x.tcptype" in source(aiortc.rtcicetransport.candidate_from_aioice)


def test_idle_estimator_hooks() -> None:
    init = source(RTCRtpReceiver.__init__)
    assert "self.__remote_bitrate_estimator = RemoteBitrateEstimator()" in init
    assert "self.__remote_bitrate_estimator = None" in init  # audio: allowed
    handle = source(RTCRtpReceiver._handle_rtp_packet)
    assert "if self.__remote_bitrate_estimator is not None:" in handle
    assert source(RTCRtpReceiver).count("__remote_bitrate_estimator") == 4


def test_rtp_reader_hooks() -> None:
    init = source(RTCRtpReceiver.__init__)
    for name in (
        "__codecs",
        "__rtx_ssrc",
        "__remote_streams",
        "__rtcp_ssrc",
        "__started",
        "__rtcp_task",
    ):
        assert f"self.{name}" in init, name
    receive = source(RTCRtpReceiver.receive)
    # what our replacement of receive() must keep doing
    assert "_register_rtp_receiver(self, parameters)" in receive
    assert "self._run_rtcp()" in receive
    assert "async def _handle_rtcp_packet(self, packet" in source(RTCRtpReceiver)
    assert "self.__stop_decoder()" in source(RTCRtpReceiver.stop)
    assert "for ssrc, stream in self.__remote_streams.items()" in source(RTCRtpReceiver._run_rtcp)
    recv = source(RTCDtlsTransport._recv_next)
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in recv
    assert "self._rtp_router" in source(RTCDtlsTransport.__init__)
    assert "def _register_rtp_receiver(" in source(RTCDtlsTransport)
    assert "def route_rtp(self, packet" in source(RtpRouter)
    # our ingress packet object offers what these read
    assert "packet.timestamp" in source(StreamStatistics.add)
    # the receiver reports of a sound stream tell the worst classroom's loss (_DownstreamLoss)
    assert isinstance(StreamStatistics.__dict__["fraction_lost"], property)
    assert "fraction_lost=stream.fraction_lost" in source(RTCRtpReceiver._run_rtcp)


def test_rtcp_guard_hooks() -> None:
    """aiortc's RTCP path still ends the transport on an exception it does not catch (what
    the guard is for), and still parses, routes and hands packets over as the guard does."""
    recv = source(RTCDtlsTransport._recv_next)
    assert "await self._handle_rtcp_data(data)" in recv
    run = source(RTCDtlsTransport._RTCDtlsTransport__run)
    assert "except Exception" in run and "self._set_state(State.CLOSED)" in run
    handle = source(RTCDtlsTransport._handle_rtcp_data)
    assert "RtcpPacket.parse(data)" in handle
    assert "self._rtp_router.route_rtcp(packet)" in handle
    assert "await recipient._handle_rtcp_packet(packet)" in handle
    assert "def route_rtcp(self, packet" in source(RtpRouter)
    # the REMB reading that raises struct.error, not ValueError, on a short SSRC list
    assert 'unpack_from("!L", data, pos)' in source(aiortc.rtp.unpack_remb_fci)


def test_rtp_writer_hooks() -> None:
    """The fast path protects in place in the session's own buffer, and looks up the
    transport's state, SRTP session and ICE pair only when they change."""
    init = source(pylibsrtp.Session.__init__)
    assert 'self._cdata = ffi.new("char[]", 1500)' in init
    assert "self._buffer = ffi.buffer(self._cdata)" in init
    assert "self._srtp = " in init
    assert "func(self._srtp[0], self._cdata, len_p)" in source(pylibsrtp.Session)
    assert pylibsrtp.SRTP_MAX_TRAILER_LEN < 1500 - 1200
    dtls_init = source(RTCDtlsTransport.__init__)
    for name in ("_tx_srtp", "_state"):
        assert f"self.{name}" in dtls_init, name
    assert DtlsState.CONNECTED
    assert "self._connection = gatherer._connection" in source(RTCIceTransport.__init__)
    # the way aioice itself sends on a pair, which DtlsLink does without its coroutines
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in source(
        ice.Connection.sendto
    )
    assert "self.transport.sendto(data, addr)" in source(ice.StunProtocol.send_data)
    # the nominated pairs change by item assignment and clear() only, which _Nominations sees
    uses = re.findall(r"self\._nominated(\S*)", source(ice.Connection))
    changes = {u for u in uses if u and not u.startswith((".get(", ".values()", ")", ":"))}
    assert changes == {"[component]", "[pair.component]", ".clear()"}, changes
    # the DTLS state changes through _set_state only, after the SRTP sessions are made
    dtls = source(RTCDtlsTransport)
    assert dtls.count("self._state = ") == 2  # NEW in __init__, and in _set_state
    assert "self._state = state" in source(RTCDtlsTransport._set_state)
    start = source(RTCDtlsTransport.start)
    assert start.index("self._setup_srtp()") < start.index("self._set_state(State.CONNECTED)")


def test_egress_rtcp_hooks() -> None:
    init = source(RTCRtpSender.__init__)
    for name in (
        "_ssrc",
        "_rtx_ssrc",
        "__cname",
        "__rtp_started",
        "__rtp_exited",
        "__rtcp_started",
        "__rtcp_exited",
    ):
        assert f"self.{name}" in init, name
    send = source(RTCRtpSender.send)
    assert "self._run_rtp(parameters.codecs[0])" in send
    assert "self._run_rtcp()" in send
    stop = source(RTCRtpSender.stop)
    assert "self.__rtp_exited.wait()" in stop and "self.__rtcp_exited.wait()" in stop
    assert "recipient._handle_rtcp_packet(packet)" in source(RTCDtlsTransport._handle_rtcp_data)


async def test_transport_cc_hooks() -> None:
    """The answer is made from ``transceiver._codecs`` (their rtcpFeedback and parameters)
    and ``_headerExtensions``, which our additions after setRemoteDescription reach: an
    offer's transport-cc comes back in the answer, with the bitrate hints."""
    from aiortc import RTCSessionDescription

    from media.aiortc_adapter.transport_cc import accept_transport_cc, hint_bitrate
    from media.transport_feedback import TRANSPORT_CC_URI

    assert "transceiver._headerExtensions = find_common_header_extensions(" in source(
        RTCPeerConnection.setRemoteDescription
    )
    assert "headerExtensions=transceiver._headerExtensions" in source(
        rtcpeerconnection.create_media_description_for_transceiver
    )
    assert {"CLOSED", "FAILED", "CONNECTED"} <= set(DtlsState.__members__)
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    offerer.addTransceiver("video", direction="sendonly")
    offer = (await offerer.createOffer()).sdp
    vp8 = re.search(r"a=rtpmap:(\d+) VP8/90000", offer)
    assert vp8 is not None
    offer = offer.replace(
        vp8.group(0),
        f"{vp8.group(0)}\r\na=rtcp-fb:{vp8.group(1)} transport-cc\r\na=extmap:7 {TRANSPORT_CC_URI}",
    )
    await answerer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    assert accept_transport_cc(answerer, offer)
    hint_bitrate(answerer, 2000, None)
    answer = (await answerer.createAnswer()).sdp
    assert f"a=extmap:7 {TRANSPORT_CC_URI}" in answer
    assert f"a=rtcp-fb:{vp8.group(1)} transport-cc" in answer
    assert re.search(rf"a=fmtp:{vp8.group(1)} .*x-google-start-bitrate=2000", answer)
    await offerer.close()
    await answerer.close()
