"""Fails loudly when an aiortc/aioice upgrade moves a private hook media/aiortc_hooks.py uses."""

import inspect
import re

import aioice
import aiortc
import pylibsrtp
from aioice import ice
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import StreamStatistics

from media import aiortc_hooks


def test_versions_are_the_pinned_ones() -> None:
    assert aiortc.__version__ == aiortc_hooks.PINNED["aiortc"]
    assert aioice.__version__ == aiortc_hooks.PINNED["aioice"]
    assert pylibsrtp.__version__ == aiortc_hooks.PINNED["pylibsrtp"]
    assert aiortc_hooks.versions_match()


def test_srtp_session_internals() -> None:
    """The fast path protects in place in the session's own buffer."""
    init = source(pylibsrtp.Session.__init__)
    assert 'self._cdata = ffi.new("char[]", 1500)' in init
    assert "self._buffer = ffi.buffer(self._cdata)" in init
    assert "self._srtp = " in init
    assert "func(self._srtp[0], self._cdata, len_p)" in source(pylibsrtp.Session)
    assert pylibsrtp.SRTP_MAX_TRAILER_LEN < 1500 - 1200


def source(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]


def test_receiver_hooks() -> None:
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


def test_sender_hooks() -> None:
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


def test_dtls_transport_hooks() -> None:
    recv = source(RTCDtlsTransport._recv_next)
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in recv
    init = source(RTCDtlsTransport.__init__)
    for name in ("_rtp_router", "_tx_srtp", "_state"):
        assert f"self.{name}" in init, name
    assert DtlsState.CONNECTED
    assert "def route_rtp(self, packet" in source(RtpRouter)
    # our ingress packet object offers what these read
    assert "packet.timestamp" in source(StreamStatistics.add)


def test_aioice_hooks() -> None:
    init = source(ice.Connection.__init__)
    for name in (
        "_local_candidates_start",
        "_local_candidates_end",
        "_components",
        "_protocols",
        "_local_candidates",
        "_nominated",
        "_use_ipv4",
        "_use_ipv6",
    ):
        assert f"self.{name}" in init, name
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in source(
        ice.Connection.sendto
    )
    assert "self.transport.sendto(data, addr)" in source(ice.StunProtocol.send_data)
    assert "self.gather_candidates" not in source(ice.Connection.connect)
    # consent: our replacement of query_consent keeps aioice's loop and its close()
    assert "asyncio.create_task(self.query_consent())" in source(ice.Connection.connect)
    assert "self.receiver.data_received(data, self.local_candidate.component)" in source(
        ice.StunProtocol.datagram_received
    )
    consent = source(ice.Connection.query_consent)
    for piece in (
        "self.build_request(pair, nominate=False)",
        "retransmissions=0",
        "stun.TransactionError",
        "await self.close()",
    ):
        assert piece in consent, piece
    assert ice.CONSENT_FAILURES * ice.CONSENT_INTERVAL <= 30
    assert "gather_candidates()" in source(aiortc.RTCIceGatherer.gather)


def test_media_port_hooks() -> None:
    """What media/aiortc_hooks.py relies on to screen datagrams and authenticate consent."""
    recv = source(RTCDtlsTransport._recv_next)
    # why empty and oversized datagrams must never reach it: both end the transport
    assert "first_byte = data[0]" in recv
    assert "self._rx_srtp.unprotect_rtcp(data)" in recv
    assert "self._rx_srtp.unprotect(data)" in recv
    assert "except pylibsrtp.Error" in recv
    assert "self._setup_srtp()" in source(RTCDtlsTransport.start)
    assert "self._rx_srtp = Session(rx_policy)" in source(RTCDtlsTransport._setup_srtp)
    assert 'raise ValueError("packet is too long")' in source(pylibsrtp.Session)
    init = source(ice.Connection.__init__)
    assert "self._queue: asyncio.Queue" in init and "self._check_list" in init
    assert "self._queue.put_nowait((data, component))" in source(ice.Connection.data_received)
    request_received = source(ice.Connection.request_received)
    assert "self.respond_error(message, addr, protocol, (401" in request_received
    assert "def remote_addr(self)" in source(ice.CandidatePair)
    assert "self.receiver = receiver" in source(ice.StunProtocol.__init__)


def test_shared_port_and_link_watch_hooks() -> None:
    """What the shared UDP port and DtlsLink's watch (media/aiortc_hooks.py) rely on."""
    # a connection's ufrag can be replaced before the answer is made
    assert "self._local_username = local_username" in source(ice.Connection.__init__)
    assert "return self._local_username" in source(ice.Connection)
    # a success response leaves only after the request is authenticated
    request_received = source(ice.Connection.request_received)
    authenticated = request_received.index("check_message_integrity")
    answered = request_received.index("message_class=stun.Class.RESPONSE")
    assert authenticated < answered
    assert "protocol.send_stun(response, addr)" in request_received[answered:]
    assert "self.transactions[request.transaction_id] = transaction" in source(
        ice.StunProtocol.request
    )
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
