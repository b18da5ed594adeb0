"""A peer that receives a lesson: each of its m-lines is fed by a consumer."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiortc.sdp import SessionDescription

from .aiortc_adapter.codecs import accept_red, restrict_codecs
from .aiortc_adapter.egress_rtcp import install_egress
from .codec import SUPPORTED, match_codec
from .consumer import Consumer
from .network import Network
from .offer import OfferError, describe_offer
from .peer import NegotiationError, Peer
from .producer import Producer, Sink
from .send_gate import SendGate

logger = logging.getLogger(__name__)


class Subscriber(Peer):
    """Made by ``Router.new_subscriber``. ``slots`` names its m-lines by kind, in order (one
    consumer each, its ``source`` the slot's name); which source a slot's consumer follows, at
    first and later, is the router's to say. A slot named after a source (``camera``) must
    accept that source's codec. ``excluded_source`` is never sent to it: the peer's own
    publication (no echo)."""

    role = "subscriber"

    def __init__(
        self,
        peer_id: str,
        router_id: str,
        network: Network,
        label: str,
        slots: dict[str, tuple[str, ...]],
        *,
        excluded_source: str | None,
        producer: Callable[[str, str], Producer | None],
        add_consumer: Callable[[Sink], None],
        remove_consumer: Callable[[Sink], None],
        released: Callable[[Peer], None],
    ) -> None:
        super().__init__(peer_id, router_id, network, label, released)
        self.excluded_source = excluded_source
        self.consumers: list[Consumer] = []
        self._slots = slots
        self._producer = producer
        self._add_consumer = add_consumer
        self._remove_consumer = remove_consumer
        # what this peer's consumers may send now, from its link's estimate
        self.gate = SendGate(network.config.adapt_to_links)

    async def negotiate(self, offer: str) -> str:
        sections = [m for m in describe_offer(offer) if m.kind in ("audio", "video")]
        if not any(m.receives for m in sections):
            raise OfferError("a receiving offer must receive audio or video (recvonly)")
        await self._apply_offer(offer)
        # redundant sound, where offered (aiortc's own answer leaves it out)
        offered_red = {}
        if any("red" in (c.lower() for c in m.codecs) for m in sections):
            parsed = [
                m for m in SessionDescription.parse(offer).media if m.kind in ("audio", "video")
            ]
            offered_red = {i: m.rtp.codecs for i, m in enumerate(parsed) if m.kind == "audio"}
        taken = {"audio": 0, "video": 0}
        consumers = []
        for index, (transceiver, section) in enumerate(
            zip(self.pc.getTransceivers(), sections, strict=False)
        ):
            kind = transceiver.kind
            slots = self._slots.get(kind, ())
            if not section.receives or taken[kind] >= len(slots):
                transceiver.direction = "inactive"
                continue
            slot = slots[taken[kind]]
            taken[kind] += 1
            codecs = restrict_codecs(transceiver, SUPPORTED)
            if not codecs:
                transceiver.direction = "inactive"
                continue
            if index in offered_red:
                codecs = accept_red(transceiver, offered_red[index])
            producer = self._producer(slot, kind)
            if producer is not None and match_codec(producer.codec, codecs) is None:
                raise NegotiationError(
                    "no_usable_codec",
                    f"the lesson's {slot} sends {producer.codec.name}, "
                    f"which this offer's {kind} section does not accept",
                )
            transceiver.direction = "sendonly"
            consumer = Consumer(
                f"{self.id}/{transceiver.mid}", kind, slot, codecs, self.excluded_source
            )
            consumer.gate = self.gate
            self.gate.add(consumer)
            install_egress(transceiver.sender, consumer)
            consumers.append(consumer)
        answer = await self._answer()
        for consumer in consumers:
            self.consumers.append(consumer)
            self._add_consumer(consumer)
        return answer

    def _release(self) -> None:
        self.gate.close()
        for consumer in self.consumers:
            self._remove_consumer(consumer)
        self.consumers.clear()

    def _forget(self) -> None:
        self.gate.close()
        self.consumers.clear()
