"""A peer that receives a lesson's stage: each of its m-lines is fed by a consumer."""

from __future__ import annotations

import logging

from .aiortc_adapter.codecs import restrict_codecs
from .aiortc_adapter.egress_rtcp import install_egress
from .codec import SUPPORTED, match_codec
from .consumer import Consumer
from .network import Network
from .offer import OfferError, describe_offer
from .peer import NegotiationError, Peer
from .router import Router

logger = logging.getLogger(__name__)


class Subscriber(Peer):
    """Receives the lesson's stage, or with ``sources`` given, just those sources (the teacher
    watching one classroom's return feed). ``excluded_source`` is never sent to it: the
    peer's own publication, when the stage shows it to everybody else (no echo)."""

    role = "subscriber"

    def __init__(
        self,
        peer_id: str,
        router: Router,
        network: Network,
        label: str,
        *,
        excluded_source: str | None = None,
        sources: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        super().__init__(peer_id, router, network, label)
        self.excluded_source = excluded_source
        self.consumers: list[Consumer] = []
        self._sources = sources

    async def negotiate(self, offer: str) -> str:
        sections = [m for m in describe_offer(offer) if m.kind in ("audio", "video")]
        if not any(m.receives for m in sections):
            raise OfferError("a receiving offer must receive audio or video (recvonly)")
        await self._apply_offer(offer)
        taken = {"audio": 0, "video": 0}
        consumers = []
        for transceiver, section in zip(self.pc.getTransceivers(), sections, strict=False):
            kind = transceiver.kind
            slots = (
                self._sources.get(kind, ())
                if self._sources is not None
                else self.router.stage_slots(kind)
            )
            if not section.receives or taken[kind] >= len(slots):
                transceiver.direction = "inactive"
                continue
            source = slots[taken[kind]]
            taken[kind] += 1
            codecs = restrict_codecs(transceiver, SUPPORTED)
            if not codecs:
                transceiver.direction = "inactive"
                continue
            producer = self.router.producer(source, kind)
            if producer is not None and match_codec(producer.codec, codecs) is None:
                raise NegotiationError(
                    "no_usable_codec",
                    f"the lesson's {source} sends {producer.codec.name}, "
                    f"which this offer's {kind} section does not accept",
                )
            transceiver.direction = "sendonly"
            consumer = Consumer(
                f"{self.id}/{transceiver.mid}", kind, source, codecs, self.excluded_source
            )
            install_egress(transceiver.sender, consumer)
            consumers.append(consumer)
        answer = await self._answer()
        for consumer in consumers:
            self.consumers.append(consumer)
            self.router.add_consumer(consumer)
        return answer

    def _release(self) -> None:
        for consumer in self.consumers:
            self.router.remove_consumer(consumer)
        self.consumers.clear()
