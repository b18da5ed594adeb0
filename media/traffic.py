"""Server-wide traffic counters that outlive the producers and consumers they count."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .consumer import ConsumerStats
from .producer import ProducerStats


@dataclass(slots=True)
class TrafficTotals:
    """Sums of producer and consumer statistics; only ever grows (Prometheus counters)."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0  # payload octets, as in sender reports
    retransmitted: int = 0
    nacks_received: int = 0
    unanswered_nacks: int = 0
    suppressed_nacks: int = 0
    keyframe_requests_received: int = 0
    keyframe_requests_upstream: int = 0
    nacks_upstream: int = 0
    malformed: int = 0

    def add_producer(self, stats: ProducerStats) -> None:
        self.packets_in += stats.packets
        self.bytes_in += stats.bytes
        self.keyframe_requests_upstream += stats.keyframe_requests
        self.nacks_upstream += stats.nacks
        self.malformed += stats.malformed

    def add_consumer(self, stats: ConsumerStats) -> None:
        self.packets_out += stats.packets
        self.bytes_out += stats.octets
        self.retransmitted += stats.retransmitted
        self.nacks_received += stats.nacks
        self.unanswered_nacks += stats.unanswered
        self.suppressed_nacks += stats.nacks_suppressed
        self.keyframe_requests_received += stats.keyframe_requests

    def add(self, other: TrafficTotals) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
