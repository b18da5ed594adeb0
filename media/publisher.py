"""A peer that publishes one source into a lesson: its inbound tracks become producers."""

from __future__ import annotations

import logging
from typing import Any

from .aiortc_adapter.codecs import restrict_codecs
from .aiortc_adapter.rtp_reader import ReceiveParameters, install_ingress
from .codec import SUPPORTED
from .network import Network
from .offer import OfferError, describe_offer
from .peer import NegotiationError, Peer
from .producer import Producer, Upstream
from .router import Router
from .sender_clock import SenderClock

logger = logging.getLogger(__name__)


class Publisher(Peer):
    role = "publisher"

    def __init__(
        self, peer_id: str, router: Router, network: Network, source: str, label: str
    ) -> None:
        super().__init__(peer_id, router, network, label)
        self.source = source
        self.producers: list[Producer] = []
        self._sender_clock = SenderClock()  # one per publisher: its tracks share a clock

    async def negotiate(self, offer: str) -> str:
        sections = [m for m in describe_offer(offer) if m.kind in ("audio", "video")]
        sending = [m for m in sections if m.sends]
        if not sending:
            raise OfferError("a publishing offer must send audio or video (sendonly)")
        for kind in ("audio", "video"):
            if sum(1 for m in sending if m.kind == kind) > 1:
                raise OfferError(f"a source carries at most one {kind} track")
        await self._apply_offer(offer)
        for transceiver in self.pc.getTransceivers():
            if not restrict_codecs(transceiver, SUPPORTED):
                raise NegotiationError(
                    "no_usable_codec",
                    f"the offer's {transceiver.kind} codecs cannot be forwarded "
                    "(supported: VP8, H264, opus)",
                )
            install_ingress(transceiver.receiver, self._on_receive)
        answer = await self._answer()
        previous = self.router.claim_source(self.source, self)
        if previous is not None:
            logger.info("lesson %s: %s replaces publisher %s", self.router.id, self.id, previous.id)
            await previous.close()
        return answer

    def _on_receive(self, params: ReceiveParameters, upstream: Any) -> Producer | None:
        if self.closed or not params.codecs:
            return None
        up: Upstream = upstream
        producer = Producer(
            f"{self.id}/{params.codecs[0].kind}",
            self.source,
            params.codecs,
            params.extensions,
            up,
            self._sender_clock,
            params.rtx_ssrcs,
        )
        self.producers.append(producer)
        self.router.add_producer(producer)
        logger.info(
            "lesson %s: producer %s %s %s",
            self.router.id,
            producer.id,
            self.source,
            producer.codec.name,
        )
        return producer

    def _release(self) -> None:
        for producer in self.producers:
            self.router.remove_producer(producer)
        self.producers.clear()
