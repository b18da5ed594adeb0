"""The inbound RTCP of a peer's DTLS transport, parsed and routed so that a packet aiortc
cannot read is dropped and counted instead of ending the peer's session.

aiortc's ``RTCDtlsTransport._handle_rtcp_data`` catches only ``ValueError`` from parsing, and
its router reads the SSRC list of a REMB with ``struct.unpack_from`` (``unpack_remb_fci``),
which raises ``struct.error`` when the list is shorter than its count says. Any exception
there ends the transport's receive loop, which closes the transport: one malformed REMB in
authenticated RTCP would end that classroom's (or the teacher's) session.

Hooks: ``RTCDtlsTransport._handle_rtcp_data`` (replaced per instance) and ``_rtp_router``
(``route_rtcp``); the recipients' ``_handle_rtcp_packet``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RTCP_PSFB_APP, RtcpPacket, RtcpPsfbPacket

from ..drops import DROPPED

logger = logging.getLogger(__name__)


def _readable(packet: Any) -> bool:
    """False for a REMB whose SSRC list is shorter than its count (aiortc would raise)."""
    if not isinstance(packet, RtcpPsfbPacket) or packet.fmt != RTCP_PSFB_APP:
        return True
    fci = packet.fci
    if fci[:4] != b"REMB":
        return True  # another application feedback: aiortc's router ignores it
    return len(fci) >= 8 and len(fci) >= 8 + 4 * fci[4]


def guard_rtcp(dtls: RTCDtlsTransport) -> None:
    """Replace ``dtls``'s RTCP handling with one that drops what it cannot read (idempotent)."""
    if getattr(dtls, "_syncclass_rtcp_guard", False):
        return
    router = dtls._rtp_router

    async def handle_rtcp_data(data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except Exception:  # ValueError mostly; struct.error for some truncated reports
            DROPPED.add("malformed_rtcp")
            return
        for packet in packets:
            if not _readable(packet):
                DROPPED.add("malformed_rtcp")
                continue
            try:
                recipients = router.route_rtcp(packet)
                for recipient in recipients:
                    await recipient._handle_rtcp_packet(packet)
            except Exception as exc:
                logger.debug("dropping RTCP %r: %r", packet, exc)
                DROPPED.add("malformed_rtcp")

    dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]
    dtls._syncclass_rtcp_guard = True  # type: ignore[attr-defined]
