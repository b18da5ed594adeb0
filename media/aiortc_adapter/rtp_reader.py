"""The receive half of the packet path: a publisher's decrypted RTP parsed once and handed to
its producer instead of aiortc's depacketizer and decoder, its sender reports forwarded, and
the producer's feedback (PLI, NACK) sent back upstream.

The packet path, on the shared port:
SharedPort → datagram_guard → rtp_reader → Producer.on_rtp → Consumer.forward → DtlsLink → SendBatch

Hooks: aiortc's ``RTCDtlsTransport._handle_rtp_data`` (replaced), ``_rtp_router`` and
``_register_rtp_receiver``; ``RTCRtpReceiver.receive`` and ``_handle_rtcp_packet`` (replaced
per instance), its ``_run_rtcp`` and its private ``__codecs``, ``__rtx_ssrc``,
``__remote_streams`` (statistics for the receiver reports aiortc still sends),
``__rtcp_ssrc``, ``__rtcp_task`` and ``__started``; for a peer that receives as a client does
(an edge pulling its origin), ``__remote_bitrate_estimator``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import RTCRtpReceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    pack_remb_fci,
)

from ..codec import Codec, HeaderExtension
from ..drops import DROPPED
from ..rtp_packet import ABS_SEND_TIME, RtpError, RtpPacket, parse_rtp, send_time_offset
from ..sender_clock import NTP_EPOCH_OFFSET, ntp_to_unix
from ..transport_feedback import TRANSPORT_CC_URI, ArrivalLog
from .codecs import codecs_of
from .rtcp_guard import guard_rtcp
from .rtp_writer import DtlsLink
from .transport_cc import start_feedback

logger = logging.getLogger(__name__)


class IngressSink(Protocol):
    """Receives one inbound stream (implemented by Producer)."""

    def on_rtp(self, packet: RtpPacket, arrival: float) -> None: ...

    def on_sender_report(
        self, sender_time: float, rtp_timestamp: int, arrival: float, ssrc: int | None = None
    ) -> None: ...

    def downstream_loss(self) -> float:
        """The worst loss (0..1) the receivers of this stream report."""
        ...


# the most downstream loss told to a publisher: beyond it in-band FEC helps little, and one
# classroom that receives nothing must not make the teacher's encoder spend all on it
MAX_TOLD_LOSS = 0.2


class _DownstreamLoss(StreamStatistics):
    """The statistics of the receiver reports aiortc sends for a sound stream, reporting at
    least the worst classroom's loss: the teacher's Opus encoder then adds in-band FEC."""

    def __init__(self, clockrate: int, sink: IngressSink) -> None:
        super().__init__(clockrate)
        self._sink = sink

    @property
    def fraction_lost(self) -> int:
        own: int = super().fraction_lost
        told = round(min(self._sink.downstream_loss(), MAX_TOLD_LOSS) * 256)
        return max(own, told)


class ReceiveParameters:
    """What negotiation fixed for one inbound stream."""

    def __init__(
        self, codecs: list[Codec], extensions: list[HeaderExtension], rtx_ssrcs: dict[int, int]
    ) -> None:
        self.codecs = codecs
        self.extensions = extensions
        self.rtx_ssrcs = rtx_ssrcs  # retransmission SSRC -> media SSRC


class _Upstream:
    """RTCP feedback from a producer to the publisher, sent as the receiver's RTCP SSRC."""

    __slots__ = ("_receiver", "_link")

    def __init__(self, receiver: RTCRtpReceiver, link: DtlsLink) -> None:
        self._receiver = receiver
        self._link = link

    def rtcp_ssrc(self) -> int:
        return self._receiver._RTCRtpReceiver__rtcp_ssrc or 0

    def request_keyframe(self, ssrc: int) -> None:
        packet = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self.rtcp_ssrc(), media_ssrc=ssrc)
        self._link.send_rtcp(bytes(packet))

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None:
        packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self.rtcp_ssrc(), media_ssrc=ssrc)
        packet.lost = sorted(sequence_numbers)
        self._link.send_rtcp(bytes(packet))

    def send_rtcp(self, packet: bytes) -> None:
        self._link.send_rtcp(packet)


class _LinkEstimate:
    """aiortc's receive-side estimate of this peer's own link, fed with every packet that
    carries abs-send-time and told to the sender as REMB, as any aiortc receiver does."""

    __slots__ = ("_estimator", "_extension_id", "_upstream")

    def __init__(self, estimator: Any, extension_id: int, upstream: _Upstream) -> None:
        self._estimator = estimator
        self._extension_id = extension_id
        self._upstream = upstream

    def add(self, packet: RtpPacket, arrival: float) -> None:
        at = send_time_offset(packet, self._extension_id)
        if not at:
            return
        remb = self._estimator.add(
            abs_send_time=int.from_bytes(packet.data[at : at + 3], "big"),
            arrival_time_ms=int((arrival + NTP_EPOCH_OFFSET) * 1000),
            payload_size=packet.payload_size,
            ssrc=packet.ssrc,
        )
        if remb is not None:
            feedback = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=self._upstream.rtcp_ssrc(),
                media_ssrc=0,
                fci=pack_remb_fci(*remb),
            )
            self._upstream.send_rtcp(bytes(feedback))


class _Ingress:
    """The per-receiver half of the receive path that an SFU keeps: statistics for the
    receiver reports aiortc still sends, then the producer."""

    __slots__ = ("receiver", "sink", "statistics", "clock_rate", "audio", "estimate")

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        sink: IngressSink,
        codec: Codec,
        estimate: _LinkEstimate | None = None,
    ) -> None:
        self.receiver = receiver
        self.sink = sink
        self.statistics: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams
        self.clock_rate = codec.clock_rate
        self.audio = codec.kind == "audio"
        self.estimate = estimate

    def handle(self, packet: RtpPacket, arrival: float) -> None:
        statistics = self.statistics.get(packet.ssrc)
        if statistics is None:
            statistics = self.statistics[packet.ssrc] = (
                _DownstreamLoss(self.clock_rate, self.sink)
                if self.audio
                else StreamStatistics(self.clock_rate)
            )
        statistics.add(packet)  # type: ignore[arg-type]  # reads what our packet has too
        if self.estimate is not None:
            self.estimate.add(packet, arrival)
        self.sink.on_rtp(packet, arrival)


def ingress_table(dtls: RTCDtlsTransport) -> dict[RTCRtpReceiver, _Ingress]:
    """Route the transport's decrypted RTP to our ingress objects instead of aiortc's
    depacketizer and decoder; the packet is parsed once here."""
    table: dict[RTCRtpReceiver, _Ingress] | None = getattr(dtls, "_syncclass_ingress", None)
    if table is not None:
        return table
    table = {}
    router = dtls._rtp_router
    arrivals: list[ArrivalLog] = []  # with transport-wide congestion control: its one log

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError as exc:
            logger.debug("dropping RTP: %s", exc)
            DROPPED.add("malformed")
            return
        for log in arrivals:  # every packet, probes and retransmissions too
            log.record(packet)
        receiver = router.route_rtp(packet)  # type: ignore[arg-type]  # reads ssrc, payload_type
        ingress = None if receiver is None else table.get(receiver)  # type: ignore[call-overload]
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
    dtls._syncclass_arrivals = arrivals
    return table


def install_ingress(
    receiver: RTCRtpReceiver,
    on_receive: Callable[[ReceiveParameters, Any], IngressSink | None],
    *,
    estimate_link: bool = False,
) -> None:
    """Replace ``receiver.receive`` so that, when the transport is up, ``on_receive`` is
    given the negotiated parameters and an upstream feedback channel and returns the sink.
    ``estimate_link``: keep aiortc's estimate of this peer's own link and send it upstream as
    REMB (a pull from an origin server, which fits what it sends to that estimate).

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
        guard_rtcp(dtls)
        link = DtlsLink(dtls)
        upstream = _Upstream(receiver, link)
        codecs = codecs_of(parameters.codecs)
        extensions = [HeaderExtension(e.id, e.uri) for e in parameters.headerExtensions]
        sink = on_receive(ReceiveParameters(codecs, extensions, rtx_ssrcs), upstream)
        if sink is not None and codecs:
            estimate = None
            estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator
            send_time = next((e for e in extensions if e.uri == ABS_SEND_TIME), None)
            if estimate_link and estimator is not None and send_time is not None:
                estimate = _LinkEstimate(estimator, send_time.id, upstream)
            ingress_table(dtls)[receiver] = _Ingress(receiver, sink, codecs[0], estimate)
            _forward_sender_reports(receiver, sink)
            _start_transport_feedback(dtls, extensions, upstream)
        dtls._register_rtp_receiver(receiver, parameters)
        receiver._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(receiver._run_rtcp())
        receiver._RTCRtpReceiver__started = True

    receiver.receive = receive


def _start_transport_feedback(
    dtls: RTCDtlsTransport, extensions: list[HeaderExtension], upstream: _Upstream
) -> None:
    """With transport-wide congestion control negotiated, record every packet's arrival on
    this transport and send the publisher its feedback."""
    extension = next((e for e in extensions if e.uri == TRANSPORT_CC_URI), None)
    arrivals: list[ArrivalLog] = dtls._syncclass_arrivals
    if extension is not None and not arrivals:
        arrivals.append(start_feedback(dtls, extension.id, upstream.rtcp_ssrc))


def _forward_sender_reports(receiver: RTCRtpReceiver, sink: IngressSink) -> None:
    handle_rtcp = receiver._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        await handle_rtcp(packet)  # keeps aiortc's LSR bookkeeping for its receiver reports
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            sink.on_sender_report(
                ntp_to_unix(info.ntp_timestamp), info.rtp_timestamp, time.time(), packet.ssrc
            )

    receiver._handle_rtcp_packet = handle_rtcp_packet
