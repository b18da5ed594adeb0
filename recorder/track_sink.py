"""The recorder's end of one track of a lesson: an internal sink on the SFU's producers.

It sits on the per-packet path, so ``forward`` only appends to a list; the lesson recording
takes the list every half second and a writer thread turns it into log records.
"""

from __future__ import annotations

import time

from media.producer import Producer
from media.rtp_packet import RtpPacket

from . import packet_log

# What a packet is until the writer thread serialises it: (arrival, keyframe, packet).
PendingPacket = tuple[float, bool, RtpPacket]
Pending = PendingPacket | bytes  # bytes: a control record, already serialised


class TrackSink:
    """Implements ``media.producer.Sink`` for one (source, kind) of a lesson."""

    def __init__(self, source: str, kind: str) -> None:
        self.source = source
        self.kind = kind
        self.excluded_source: str | None = None
        self.producer: Producer | None = None
        self.closed = False
        self.packets = 0
        self._waiting = False
        self._pending: list[Pending] = []
        self._last_report: tuple[float, int] | None = None

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting

    # binding (called by the router and the producer)

    def bind(self, producer: Producer) -> None:
        """Record ``producer`` from its next keyframe on (also called when its codec changes)."""
        if self.closed:
            return
        if self.producer is not None and self.producer is not producer:
            self.producer.remove_consumer(self)
        self.producer = producer
        self._last_report = None
        codec = producer.codec
        self._pending.append(
            packet_log.epoch_record(
                {
                    "producer": producer.id,
                    "mime_type": codec.mime_type,
                    "clock_rate": codec.clock_rate,
                    "channels": codec.channels,
                    "parameters": {k: v for k, v in codec.parameters.items()},
                    "at": time.time(),
                }
            )
        )
        self._waiting = producer.kind == "video"
        producer.add_consumer(self)
        if self._waiting:
            producer.request_keyframe()

    def unbind(self, producer: Producer) -> None:
        if self.producer is not producer:
            return
        producer.remove_consumer(self)
        self.producer = None
        self._waiting = False
        self._pending.append(packet_log.end_record(time.time()))

    # the per-packet path

    def forward(self, packet: RtpPacket, keyframe: bool) -> None:
        if self._waiting:
            if not keyframe:
                return
            self._waiting = False
        self._pending.append((time.time(), keyframe, packet))
        self.packets += 1

    # for the lesson recording

    def sample_sender_report(self) -> None:
        """Note the publisher's newest sender report, if it sent one since the last call."""
        producer = self.producer
        if producer is None:
            return
        report = producer.sender_report_mapping()
        if report is not None and report != self._last_report:
            self._last_report = report
            self._pending.append(packet_log.sender_report_record(*report))

    def take(self) -> list[Pending]:
        pending, self._pending = self._pending, []
        return pending

    def close(self) -> None:
        if self.closed:
            return
        if self.producer is not None:
            self.unbind(self.producer)
        self.closed = True


def serialise(pending: list[Pending]) -> list[bytes | memoryview]:
    """Turn what a sink collected into log records (runs in the writer thread)."""
    chunks: list[bytes | memoryview] = []
    append = chunks.append
    extend = chunks.extend
    record = packet_log.packet_chunks
    marker_flag, keyframe_flag = packet_log.FLAG_MARKER, packet_log.FLAG_KEYFRAME
    for item in pending:
        if isinstance(item, bytes):
            append(item)
            continue
        arrival, keyframe, packet = item
        flags = (marker_flag if packet.marker else 0) | (keyframe_flag if keyframe else 0)
        extend(
            record(
                arrival,
                packet.timestamp,
                packet.ssrc,
                packet.sequence_number,
                flags,
                packet.payload_type,
                memoryview(packet.data)[packet.payload_offset : packet.payload_end],
            )
        )
    return chunks
