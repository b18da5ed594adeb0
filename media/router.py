"""One lesson's media: its producers by source, its consumers and the source each follows,
and the peers it made.

The router knows sources, not what they mean. Each consumer follows one source (or none);
which one is its owner's choice: ``select`` (given when the router is made) is asked when a
consumer is added and again on ``reselect()``, and ``retarget`` moves one consumer at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from .consumer import Consumer
from .made_layers import MadeLayers
from .network import Network
from .origin_pull import OriginPull
from .peer import Peer
from .producer import Producer, Sink
from .publisher import Publisher
from .pulled_source import PulledSource, PullStatus
from .pushed_source import PushedSource
from .subscriber import Subscriber
from .traffic import TrafficTotals

logger = logging.getLogger(__name__)

Select = Callable[[Sink], str | None]


def same_source(sink: Sink) -> str | None:
    """The default choice: a consumer follows the source it is named after."""
    return sink.source


class RouterPeer(Protocol):
    """What the router needs of a peer it made: to close it when the router closes."""

    async def router_closed(self) -> None: ...


class Router:
    """Made by ``Sfu.router``, which it tells through ``on_close`` once closed. It makes its
    peers (``new_publisher``, ``new_subscriber``) and hands them closures for what they need
    of it; a peer closing by itself gives back its part through them, and ``close`` closes
    every peer with ``router_closed`` (no call back)."""

    def __init__(
        self,
        router_id: str,
        network: Network,
        *,
        select: Select = same_source,
        on_close: Callable[[Router], None] | None = None,
    ) -> None:
        self.id = router_id
        self.network = network
        self.producers: dict[tuple[str, str], Producer] = {}
        self.peers: set[RouterPeer] = set()
        self.closed = False
        self._select = select
        self._on_close = on_close
        self._following: dict[Sink, str | None] = {}  # each consumer: the source it follows
        self._followers: dict[tuple[str | None, str], set[Sink]] = {}  # (source, kind)
        self._publishers: dict[str, Peer] = {}
        self.retired = TrafficTotals()  # what producers and consumers now gone had counted
        config = network.config
        # lighter layers made of single-layer sources for the classrooms that need them
        self.made_layers = (
            MadeLayers(router_id, self.producers.values, config.made_layer_idle_s)
            if config.made_layers
            else None
        )

    # peers

    def new_publisher(self, peer_id: str, source: str, label: str) -> Publisher:
        """A peer that publishes ``source`` into this router."""
        peer = Publisher(
            peer_id,
            self.id,
            self.network,
            source,
            label,
            claim=self._claim_source,
            add_producer=self.add_producer,
            remove_producer=self.remove_producer,
            released=self._peer_released,
        )
        self.peers.add(peer)
        return peer

    def new_subscriber(
        self,
        peer_id: str,
        label: str,
        slots: dict[str, tuple[str, ...]],
        *,
        excluded_source: str | None = None,
    ) -> Subscriber:
        """A peer that receives: one consumer per m-line slot (see ``Subscriber``)."""
        peer = Subscriber(
            peer_id,
            self.id,
            self.network,
            label,
            slots,
            excluded_source=excluded_source,
            producer=self.producer,
            add_consumer=self.add_consumer,
            remove_consumer=self.remove_consumer,
            released=self._peer_released,
        )
        self.peers.add(peer)
        return peer

    def pull(
        self, source: str, url: str, on_state: Callable[[PullStatus], None], timeout_s: float = 5.0
    ) -> PulledSource:
        """Pull ``source`` from a camera at ``url`` (RTSP) into this router, started now; its
        producers come and go with the camera's stream. Closed with the router."""
        pulled = PulledSource(
            self.id,
            source,
            url,
            add_producer=self.add_producer,
            remove_producer=self.remove_producer,
            released=self.peers.discard,
            on_state=on_state,
            timeout_s=timeout_s,
        )
        self.peers.add(pulled)
        pulled.start()
        return pulled

    def relay(
        self,
        endpoint: str,
        name: str,
        token: str,
        on_state: Callable[[PullStatus], None],
        on_sources: Callable[[], None],
        timeout_s: float = 5.0,
    ) -> OriginPull:
        """Pull every source of a lesson on another server (its origin) from its WHEP
        ``endpoint``, as the classroom ``name`` with ``token``, started now; their producers
        come and go with the pull's connection. Closed with the router."""
        pull = OriginPull(
            self.id,
            endpoint,
            name,
            token,
            self.network,
            add_producer=self.add_producer,
            remove_producer=self.remove_producer,
            released=self.peers.discard,
            on_state=on_state,
            on_sources=on_sources,
            timeout_s=timeout_s,
        )
        self.peers.add(pull)
        pull.start()
        return pull

    def push(self, source: str, on_state: Callable[[PullStatus], None]) -> PushedSource:
        """``source`` as an encoder pushes it (RTMP), from now until its connection ends;
        closed with the router."""
        pushed = PushedSource(
            self.id,
            source,
            add_producer=self.add_producer,
            remove_producer=self.remove_producer,
            released=self.peers.discard,
            on_state=on_state,
        )
        self.peers.add(pushed)
        return pushed

    def _peer_released(self, peer: Peer) -> None:
        """A peer closed by itself (its producers or consumers are already given back)."""
        self.peers.discard(peer)
        for source, publisher in list(self._publishers.items()):
            if publisher is peer:
                del self._publishers[source]

    def _claim_source(self, source: str, peer: Peer) -> Peer | None:
        """Make ``peer`` the publisher of ``source``; return the one it replaces, if any."""
        old = self._publishers.get(source)
        self._publishers[source] = peer
        return old if old is not peer else None

    def publisher(self, source: str) -> Peer | None:
        return self._publishers.get(source)

    # producers

    def producer(self, source: str, kind: str) -> Producer | None:
        return self.producers.get((source, kind))

    def add_producer(self, producer: Producer) -> None:
        key = (producer.source, producer.kind)
        old = self.producers.get(key)
        self.producers[key] = producer
        if old is not None and old is not producer:
            self._retire_producer(old)
        for sink in self._followers.get(key, ()):
            sink.bind(producer)
        if self.made_layers is not None and producer.kind == "video":
            self.made_layers.start()

    def remove_producer(self, producer: Producer) -> None:
        key = (producer.source, producer.kind)
        if self.producers.get(key) is producer:
            del self.producers[key]
        self._retire_producer(producer)  # its consumers keep their place for the next one

    def _retire_producer(self, producer: Producer) -> None:
        if not producer.closed:
            for layer in producer.layers:
                if not layer.made:  # made here: not received
                    self.retired.add_producer(layer.stats)
        producer.close()

    # consumers

    def add_consumer(self, sink: Sink) -> None:
        """Feed ``sink`` from the source ``select`` chooses for it (a peer's consumer, or an
        internal one such as a recording's)."""
        if self.closed:
            sink.close()
            return
        self._following[sink] = None
        self._followers.setdefault((None, sink.kind), set()).add(sink)
        self.retarget(sink, self._select(sink))

    def retarget(self, sink: Sink, source: str | None) -> None:
        """Make ``sink`` follow ``source`` (None: nothing) from its next keyframe on. A sink
        never follows its ``excluded_source``."""
        if sink not in self._following:
            return
        if source is not None and source == sink.excluded_source:
            source = None
        old = self._following[sink]
        if old != source:
            self._followers[(old, sink.kind)].discard(sink)
            self._followers.setdefault((source, sink.kind), set()).add(sink)
            self._following[sink] = source
        producer = self.producers.get((source, sink.kind)) if source is not None else None
        current = sink.producer
        if producer is current:
            return
        if producer is not None:
            sink.bind(producer)
        elif current is not None:
            sink.unbind(current)

    def reselect(self) -> None:
        """Ask ``select`` again for every consumer (what the owner maps them to changed)."""
        for sink in list(self._following):
            self.retarget(sink, self._select(sink))

    def following(self, sink: Sink) -> str | None:
        """The source ``sink`` follows now."""
        return self._following.get(sink)

    def remove_consumer(self, sink: Sink) -> None:
        if sink in self._following:
            source = self._following.pop(sink)
            self._followers[(source, sink.kind)].discard(sink)
            if isinstance(sink, Consumer):
                self.retired.add_consumer(sink.stats)
        sink.close()

    def consumers(self) -> list[Sink]:
        return list(self._following)

    def traffic(self) -> TrafficTotals:
        """Everything this lesson has received and sent so far."""
        totals = TrafficTotals()
        totals.add(self.retired)
        for producer in self.producers.values():
            for layer in producer.layers:
                if not layer.made:
                    totals.add_producer(layer.stats)
        for sink in self._following:
            if isinstance(sink, Consumer):
                totals.add_consumer(sink.stats)
        return totals

    async def close(self) -> None:
        """Take back every consumer and producer (a recording's sinks too), then close the
        peers this router made; they do not call back. Tells the owner last."""
        if self.closed:
            return
        self.closed = True
        if self.made_layers is not None:
            self.made_layers.close()
        for sink in list(self._following):
            self.remove_consumer(sink)
        for producer in list(self.producers.values()):
            self._retire_producer(producer)
        self.producers.clear()
        self._followers.clear()
        self._publishers.clear()
        peers, self.peers = list(self.peers), set()
        for peer in peers:
            await peer.router_closed()
        if self._on_close is not None:
            self._on_close(self)
