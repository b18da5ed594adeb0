"""Transport-wide congestion control on a publisher's connection: accepted in the answer, and
its feedback sent on a timer, one per DTLS transport (every m-line of a bundle shares it).

aiortc 1.16 knows neither the transport-wide sequence number extension nor the ``transport-cc``
feedback, so its answer drops both; they are added back, per publisher, after the offer is
applied. Subscribers' answers are left as they are.

Hooks: aiortc's ``RTCRtpTransceiver._codecs`` (each codec's ``rtcpFeedback`` and
``parameters``) and ``_headerExtensions``, both set by ``setRemoteDescription`` and read by
``createAnswer`` and ``receiver.receive``; ``RTCDtlsTransport._state``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCPeerConnection, sdp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters

from ..transport_feedback import (
    FEEDBACK_INTERVAL_S,
    TRANSPORT_CC_URI,
    ArrivalLog,
    FeedbackBuilder,
)
from .rtp_writer import DtlsLink

logger = logging.getLogger(__name__)

TRANSPORT_CC = RTCRtcpFeedback(type="transport-cc")


def accept_transport_cc(pc: RTCPeerConnection, offer: str) -> bool:
    """Answer the offer's transport-wide congestion control on every section that offers it
    (the extension and the ``transport-cc`` feedback); True if any does."""
    media_by_mid = {m.rtp.muxId: m for m in sdp.SessionDescription.parse(offer).media}
    accepted = False
    for transceiver in pc.getTransceivers():
        media = media_by_mid.get(transceiver.mid or "")
        if media is None:
            continue
        offered = next((e for e in media.rtp.headerExtensions if e.uri == TRANSPORT_CC_URI), None)
        if offered is None:
            continue
        with_feedback = {c.payloadType for c in media.rtp.codecs if TRANSPORT_CC in c.rtcpFeedback}
        codecs = [c for c in transceiver._codecs if c.payloadType in with_feedback]
        if not codecs:
            continue
        for codec in codecs:
            if TRANSPORT_CC not in codec.rtcpFeedback:
                codec.rtcpFeedback = [*codec.rtcpFeedback, TRANSPORT_CC]
        if all(e.uri != TRANSPORT_CC_URI for e in transceiver._headerExtensions):
            transceiver._headerExtensions = [
                *transceiver._headerExtensions,
                RTCRtpHeaderExtensionParameters(id=offered.id, uri=offered.uri),
            ]
        accepted = True
    return accepted


def hint_bitrate(pc: RTCPeerConnection, start_kbps: int | None, max_kbps: int | None) -> None:
    """Put Chrome's bitrate hints in the video codecs' fmtp of the answer: where the
    publisher's estimate starts (``x-google-start-bitrate``, honoured when it sends), and a
    ceiling (``x-google-max-bitrate``), in kbit/s."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "video":
            continue
        for codec in transceiver._codecs:
            if codec.mimeType.lower().endswith("/rtx"):
                continue
            if start_kbps is not None:
                codec.parameters["x-google-start-bitrate"] = start_kbps
            if max_kbps is not None:
                codec.parameters["x-google-max-bitrate"] = max_kbps


class _FeedbackLoop:
    """Sends a transport's feedback every ``FEEDBACK_INTERVAL_S`` until it closes."""

    def __init__(
        self, dtls: RTCDtlsTransport, log: ArrivalLog, sender_ssrc: Callable[[], int]
    ) -> None:
        self.log = log
        self._dtls = dtls
        self._link = DtlsLink(dtls)
        self._sender_ssrc = sender_ssrc
        self._builder = FeedbackBuilder()
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(FEEDBACK_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        if self._dtls._state in (DtlsState.CLOSED, DtlsState.FAILED):
            self.log.pending.clear()
            return
        try:
            for packet in self._builder.build(self.log, self._sender_ssrc()):
                self._link.send_rtcp(packet)
        except Exception:
            logger.exception("transport feedback failed")
        self._timer = self._loop.call_later(FEEDBACK_INTERVAL_S, self._tick)


def start_feedback(
    dtls: RTCDtlsTransport, extension_id: int, sender_ssrc: Callable[[], int]
) -> ArrivalLog:
    """The arrival log of ``dtls``, whose feedback is sent from now on (once per transport,
    however many of its receivers ask)."""
    loop: _FeedbackLoop | None = getattr(dtls, "_syncclass_feedback", None)
    if loop is None:
        loop = _FeedbackLoop(dtls, ArrivalLog(extension_id), sender_ssrc)
        dtls._syncclass_feedback = loop  # type: ignore[attr-defined]
    return loop.log
