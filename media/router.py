"""One lesson's media: its producers by source, the consumers waiting on them, its peers, and
who is on stage."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .consumer import Consumer
from .producer import Producer, Sink
from .traffic import TrafficTotals

if TYPE_CHECKING:
    from .peer import Peer

logger = logging.getLogger(__name__)

# What a receiving peer's m-lines carry, in order: the first video m-line gets the camera, the
# second the courseware, the next ones the sources on stage; the first audio m-line the camera's
# sound, the next ones the stage's sound.
STAGE = ("stage", "stage2", "stage3")
STAGE_SLOTS = {"video": ("camera", "courseware", *STAGE), "audio": ("camera", *STAGE)}


class Router:
    def __init__(self, router_id: str) -> None:
        self.id = router_id
        self.producers: dict[tuple[str, str], Producer] = {}
        self.peers: set[Peer] = set()
        self.closed = False
        self._consumers: dict[tuple[str, str], set[Sink]] = {}
        self._publishers: dict[str, Peer] = {}
        self.on_stage: list[str] = []  # sources, in the order of the stage slots
        self.retired = TrafficTotals()  # what producers and consumers now gone had counted

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
            self._retire_producer(old)
        for consumer in self._consumers.get(key, ()):
            consumer.bind(producer)
        if producer.source in self.on_stage:
            for slot in STAGE:
                for consumer in self._consumers.get((slot, producer.kind), ()):
                    self._follow(consumer)

    def remove_producer(self, producer: Producer) -> None:
        key = (producer.source, producer.kind)
        if self.producers.get(key) is producer:
            del self.producers[key]
        self._retire_producer(producer)  # its consumers keep their place for the next one

    def _retire_producer(self, producer: Producer) -> None:
        if not producer.closed:
            self.retired.add_producer(producer.stats)
        producer.close()

    # consumers

    def add_consumer(self, consumer: Sink) -> None:
        key = (consumer.source, consumer.kind)
        self._consumers.setdefault(key, set()).add(consumer)
        self._follow(consumer)

    def _source_of(self, consumer: Sink) -> str | None:
        """The source a consumer's slot shows now: itself, or for the n-th stage slot the n-th
        source on stage, not counting the consumer's own (a peer on stage does not receive
        itself back: no echo, and its first stage slot shows the next one on stage)."""
        if consumer.source not in STAGE:
            return consumer.source
        others = [s for s in self.on_stage if s != consumer.excluded_source]
        index = STAGE.index(consumer.source)
        return others[index] if index < len(others) else None

    def _follow(self, consumer: Sink) -> None:
        """Bind ``consumer`` to the producer its slot shows now, or leave it idle."""
        source = self._source_of(consumer)
        producer = self.producers.get((source, consumer.kind)) if source else None
        current = consumer.producer
        if producer is current:
            return
        if producer is not None:
            consumer.bind(producer)
        elif current is not None:
            consumer.unbind(current)

    def remove_consumer(self, consumer: Sink) -> None:
        consumers = self._consumers.get((consumer.source, consumer.kind))
        if consumers is not None and consumer in consumers:
            consumers.discard(consumer)
            if isinstance(consumer, Consumer):
                self.retired.add_consumer(consumer.stats)
        consumer.close()

    def consumers(self) -> list[Sink]:
        return [c for group in self._consumers.values() for c in group]

    # stage

    def set_stage(self, sources: list[str]) -> None:
        """Put ``sources`` (return feeds) on the stage slots, in order; [] clears the stage."""
        if len(sources) > len(STAGE):
            raise ValueError(f"at most {len(STAGE)} sources fit on stage")
        self.on_stage = list(sources)
        for slot in STAGE:
            for kind in ("video", "audio"):
                for consumer in self._consumers.get((slot, kind), ()):
                    self._follow(consumer)

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

    def traffic(self) -> TrafficTotals:
        """Everything this lesson has received and sent so far."""
        totals = TrafficTotals()
        totals.add(self.retired)
        for producer in self.producers.values():
            totals.add_producer(producer.stats)
        for consumer in self.consumers():
            if isinstance(consumer, Consumer):
                totals.add_consumer(consumer.stats)
        return totals

    async def close(self) -> None:
        """Close every peer of the lesson (their producers and consumers go with them), then
        the sinks that belong to no peer."""
        self.closed = True
        for peer in list(self.peers):
            await peer.close()
        for sink in self.consumers():  # internal ones, such as a recording
            sink.close()
        for producer in list(self.producers.values()):
            self._retire_producer(producer)
        self.producers.clear()
        self._consumers.clear()
        self._publishers.clear()
        self.on_stage.clear()
