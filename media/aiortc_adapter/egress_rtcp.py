"""The RTCP of one outbound stream: sender reports (with SDES and a final BYE) sent from what
its consumer says, and the classroom's feedback (RR, NACK, PLI/FIR, REMB) handed to it.

Hooks: aiortc's ``RTCRtpSender.send`` (wrapped: the consumer gets its link once the transport
is up), ``_run_rtp``, ``_run_rtcp`` and ``_handle_rtcp_packet`` (replaced per instance), the
events ``stop`` waits for (``__rtp_started``/``__rtp_exited``, ``__rtcp_started``/
``__rtcp_exited``), ``_ssrc``, ``_rtx_ssrc`` and ``__cname``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from typing import Any, Protocol

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpSendParameters
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

from ..codec import HeaderExtension
from ..consumer import EgressParameters, RtpLink
from ..rtp_packet import ABS_SEND_TIME
from ..sender_clock import unix_to_ntp
from .rtcp_guard import guard_rtcp
from .rtp_writer import DtlsLink

logger = logging.getLogger(__name__)

_RTCP_INTERVAL_S = 1.0  # mean; randomised to [0.5, 1.5] like aiortc


class EgressSink(Protocol):
    """Feeds one outbound stream (implemented by Consumer)."""

    def attach(self, link: RtpLink, params: EgressParameters) -> None: ...

    def on_nack(self, sequence_numbers: list[int]) -> None: ...

    def on_keyframe_request(self) -> None: ...

    def on_receiver_report(
        self,
        fraction_lost: int,
        packets_lost: int,
        jitter: int,
        rtt_s: float | None,
        highest_sequence: int | None = None,
        report_age_s: float | None = None,
    ) -> None: ...

    def on_remb(self, bitrate: int) -> None: ...

    def sender_report(self, wall_time: float) -> tuple[int, int, int] | None: ...


def install_egress(sender: RTCRtpSender, sink: EgressSink) -> EgressRtcp:
    """Feed ``sender``'s stream from ``sink`` instead of a track and an encoder."""
    return EgressRtcp(sender, sink)


class EgressRtcp:
    """Takes over one RTCRtpSender: aiortc's RTP loop is replaced by an idle task (the sink
    sends through a DtlsLink), its RTCP loop by one whose sender reports come from the sink,
    and its RTCP handler by one that hands the classroom's feedback to the sink. The sender
    holds this object through the methods it is given."""

    def __init__(self, sender: RTCRtpSender, sink: EgressSink) -> None:
        self._sender = sender
        self._sink = sink
        self._link: DtlsLink | None = None
        # when each recent sender report left, by its "last SR" id, for round-trip times
        self._sr_sent: dict[int, float] = {}
        self._send = sender.send
        sender._run_rtp = self._run_rtp
        sender._run_rtcp = self._run_rtcp
        sender.send = self.send
        sender._handle_rtcp_packet = self._handle_rtcp_packet

    async def send(self, parameters: RTCRtpSendParameters) -> None:
        """aiortc's ``send``, then the sink is given the link and what was negotiated."""
        sender = self._sender
        await self._send(parameters)
        guard_rtcp(sender.transport)
        link = DtlsLink(sender.transport)
        self._link = link
        extensions = [HeaderExtension(e.id, e.uri) for e in parameters.headerExtensions]
        link.stamp_send_time = any(e.uri == ABS_SEND_TIME for e in extensions)
        link.report_now = lambda: self._send_sender_report(link)
        self._sink.attach(link, EgressParameters(sender._ssrc, sender._rtx_ssrc, extensions))

    async def _run_rtp(self, codec: Any) -> None:
        sender = self._sender
        sender._RTCRtpSender__rtp_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        sender._RTCRtpSender__rtp_exited.set()

    async def _run_rtcp(self) -> None:
        sender = self._sender
        sender._RTCRtpSender__rtcp_started.set()
        link = self._link
        try:
            while True:
                await asyncio.sleep(_RTCP_INTERVAL_S * (0.5 + random.random()))
                link = self._link
                if link is not None:
                    self._send_sender_report(link)
        except asyncio.CancelledError:
            pass
        if link is not None:
            link.send_rtcp(bytes(RtcpByePacket(sources=[sender._ssrc])))
        sender._RTCRtpSender__rtcp_exited.set()

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        try:
            self._handle_feedback(packet)
        except Exception:
            logger.exception("handling %r failed", packet)

    def _send_sender_report(self, link: DtlsLink) -> None:
        sender = self._sender
        now = time.time()
        report = self._sink.sender_report(now)
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
        sr_sent = self._sr_sent
        sr_sent[(ntp >> 16) & 0xFFFFFFFF] = now
        if len(sr_sent) > 8:
            del sr_sent[next(iter(sr_sent))]
        link.send_rtcp(packet)

    def _handle_feedback(self, packet: Any) -> None:
        ssrc = self._sender._ssrc
        sink = self._sink
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc != ssrc:
                    continue
                rtt = age = None
                sent = self._sr_sent.get(report.lsr)
                if sent is not None and report.lsr:
                    age = max(time.time() - sent, 0.0)  # since the sender report it answers
                    rtt = max(age - report.dlsr / 65536, 0.0)
                sink.on_receiver_report(
                    report.fraction_lost,
                    report.packets_lost,
                    report.jitter,
                    rtt,
                    report.highest_sequence,
                    age,
                )
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            sink.on_nack(packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            sink.on_keyframe_request()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except (ValueError, struct.error):
                return
            if ssrc in ssrcs:
                sink.on_remb(bitrate)
