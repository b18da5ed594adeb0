"""A peer that publishes one source into a lesson: its inbound tracks become producers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .aiortc_adapter.codecs import accept_header_extensions, restrict_codecs
from .aiortc_adapter.rtp_reader import IngressSink, ReceiveParameters, install_ingress
from .aiortc_adapter.transport_cc import accept_transport_cc, hint_bitrate
from .codec import SUPPORTED
from .network import Network
from .offer import OfferError, describe_offer
from .peer import NegotiationError, Peer
from .producer import Producer, Upstream
from .sender_clock import SenderClock
from .simulcast import SimulcastIngress, SimulcastOffer, answer_simulcast, read_simulcast_offer

logger = logging.getLogger(__name__)

# Chrome's bitrate hints per source, (start, ceiling) in kbit/s, given with transport-wide
# congestion control only: the teacher's camera starts at a 720p rate instead of Chrome's
# 300 kbit/s (on a thinner uplink the feedback brings it down within a second), courseware at
# a rate that keeps text sharp, and a classroom's return feed at its cap.
BITRATE_HINTS: dict[str, tuple[int, int | None]] = {
    "camera": (2000, None),
    "courseware": (1500, None),
}
FEED_BITRATE_HINT = (300, 300)


class Publisher(Peer):
    """Made by ``Router.new_publisher``, with the router's closures: ``claim`` makes it the
    publisher of its source (returning the one it replaces), ``add_producer`` and
    ``remove_producer`` hand its producers over and back."""

    role = "publisher"

    def __init__(
        self,
        peer_id: str,
        router_id: str,
        network: Network,
        source: str,
        label: str,
        *,
        claim: Callable[[str, Peer], Peer | None],
        add_producer: Callable[[Producer], None],
        remove_producer: Callable[[Producer], None],
        released: Callable[[Peer], None],
    ) -> None:
        super().__init__(peer_id, router_id, network, label, released)
        self.source = source
        self.producers: list[Producer] = []
        self._sender_clock = SenderClock()  # one per publisher: its tracks share a clock
        self._claim = claim
        self._add_producer = add_producer
        self._remove_producer = remove_producer
        self._simulcast: SimulcastOffer | None = None

    async def negotiate(self, offer: str) -> str:
        sections = [m for m in describe_offer(offer) if m.kind in ("audio", "video")]
        sending = [m for m in sections if m.sends]
        if not sending:
            raise OfferError("a publishing offer must send audio or video (sendonly)")
        for kind in ("audio", "video"):
            if sum(1 for m in sending if m.kind == kind) > 1:
                raise OfferError(f"a source carries at most one {kind} track")
        self._simulcast = read_simulcast_offer(offer)
        await self._apply_offer(offer)
        for transceiver in self.pc.getTransceivers():
            if not restrict_codecs(transceiver, SUPPORTED):
                raise NegotiationError(
                    "no_usable_codec",
                    f"the offer's {transceiver.kind} codecs cannot be forwarded "
                    "(supported: VP8, H264, opus)",
                )
            if self._simulcast is not None and transceiver.kind == "video":
                accept_header_extensions(transceiver, self._simulcast.extension_ids)
            install_ingress(transceiver.receiver, self._on_receive)
        if self._network.config.transport_cc and accept_transport_cc(self.pc, offer):
            start, ceiling = BITRATE_HINTS.get(self.source, FEED_BITRATE_HINT)
            hint_bitrate(self.pc, start, ceiling)
        answer = await self._answer()
        if self._simulcast is not None:
            answer = answer_simulcast(answer, self._simulcast)
        previous = self._claim(self.source, self)
        if previous is not None:
            logger.info("lesson %s: %s replaces publisher %s", self.router_id, self.id, previous.id)
            await previous.close()
        return answer

    def _on_receive(self, params: ReceiveParameters, upstream: Any) -> IngressSink | None:
        if self.closed or not params.codecs:
            return None
        up: Upstream = upstream
        kind = params.codecs[0].kind

        def make(rid: str | None) -> Producer:
            return Producer(
                f"{self.id}/{kind}" + (f"/{rid}" if rid else ""),
                self.source,
                params.codecs,
                params.extensions,
                up,
                self._sender_clock,
                params.rtx_ssrcs,
                rid=rid,
            )

        producer = make(None)
        sink: IngressSink = producer
        if kind == "video" and self._simulcast is not None:
            sink = SimulcastIngress(producer, self._simulcast, make)
        self.producers.append(producer)
        self._add_producer(producer)
        logger.info(
            "lesson %s: producer %s %s %s",
            self.router_id,
            producer.id,
            self.source,
            producer.codec.name,
        )
        return sink

    def _release(self) -> None:
        for producer in self.producers:
            self._remove_producer(producer)
        self.producers.clear()

    def _forget(self) -> None:
        self.producers.clear()
