"""One lesson's media: its producers by source, the consumers waiting on them, its peers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .producer import Producer, Sink

if TYPE_CHECKING:
    from .peer import Peer

logger = logging.getLogger(__name__)

# What a receiving peer's m-lines carry, in order: the first video m-line gets the camera, the
# second the courseware; the first audio m-line the camera's sound.
STAGE_SLOTS = {"video": ("camera", "courseware"), "audio": ("camera",)}


class Router:
    def __init__(self, router_id: str) -> None:
        self.id = router_id
        self.producers: dict[tuple[str, str], Producer] = {}
        self.peers: set[Peer] = set()
        self.closed = False
        self._consumers: dict[tuple[str, str], set[Sink]] = {}
        self._publishers: dict[str, Peer] = {}

    def stage_slots(self, kind: str) -> tuple[str, ...]:
        return STAGE_SLOTS.get(kind, ())

    def producer(self, source: str, kind: str) -> Producer | None:
        return self.producers.get((source, kind))

    # producers

    def add_producer(self, producer: Producer) -> None:
        key = (producer.source, producer.kind)
        old = self.producers.get(key)
        self.producers[key] = producer
        if old is not None and old is not producer:
            old.close()
        for consumer in self._consumers.get(key, ()):
            consumer.bind(producer)

    def remove_producer(self, producer: Producer) -> None:
        key = (producer.source, producer.kind)
        if self.producers.get(key) is producer:
            del self.producers[key]
        producer.close()  # its consumers keep their place for the next producer

    # consumers

    def add_consumer(self, consumer: Sink) -> None:
        key = (consumer.source, consumer.kind)
        self._consumers.setdefault(key, set()).add(consumer)
        producer = self.producers.get(key)
        if producer is not None:
            consumer.bind(producer)

    def remove_consumer(self, consumer: Sink) -> None:
        consumers = self._consumers.get((consumer.source, consumer.kind))
        if consumers is not None:
            consumers.discard(consumer)
        consumer.close()

    def consumers(self) -> list[Sink]:
        return [c for group in self._consumers.values() for c in group]

    # peers

    def add_peer(self, peer: Peer) -> None:
        self.peers.add(peer)

    def remove_peer(self, peer: Peer) -> None:
        self.peers.discard(peer)
        for source, publisher in list(self._publishers.items()):
            if publisher is peer:
                del self._publishers[source]

    def claim_source(self, source: str, peer: Peer) -> Peer | None:
        """Make ``peer`` the publisher of ``source``; return the one it replaces, if any."""
        old = self._publishers.get(source)
        self._publishers[source] = peer
        return old if old is not peer else None

    def publisher(self, source: str) -> Peer | None:
        return self._publishers.get(source)

    async def close(self) -> None:
        """Close every peer of the lesson (their producers and consumers go with them), then
        the sinks that belong to no peer."""
        self.closed = True
        for peer in list(self.peers):
            await peer.close()
        for sink in self.consumers():  # internal ones, such as a recording
            sink.close()
        self.producers.clear()
        self._consumers.clear()
        self._publishers.clear()
