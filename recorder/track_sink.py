"""The recorder's end of one track of a lesson: an internal sink on the SFU's producers.

It sits on the per-packet path, so ``forward`` only appends to a list; the lesson recording
takes the list every half second and a writer thread turns it into log records.
"""

from __future__ import annotations

import time

from media.layers import KeyframeWatch, top_layer
from media.producer import Producer
from media.rtp_packet import RtpPacket

from . import packet_log

# What a packet is until the writer thread serialises it: (arrival, keyframe, packet).
PendingPacket = tuple[float, bool, RtpPacket]
Pending = PendingPacket | bytes  # bytes: a control record, already serialised


class TrackSink:
    """Implements ``media.producer.Sink`` for one (source, kind) of a lesson. Of a source
    sent in several layers it records the best one: a new best is taken at its keyframe, as a
    new segment of the track (never re-encoded)."""

    def __init__(self, source: str, kind: str) -> None:
        self.source = source
        self.kind = kind
        self.excluded_source: str | None = None
        self.producer: Producer | None = None  # the source's producer (its layers' group)
        self.layer: Producer | None = None  # the layer recorded now
        self._watch: KeyframeWatch | None = None
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
            self.producer.unfollow(self)
        self._leave_layer()
        self.producer = producer
        producer.follow(self)
        layer = top_layer(producer)[0] or producer
        self._record(layer)
        self._waiting = layer.kind == "video"
        layer.add_consumer(self)
        if self._waiting:
            layer.request_keyframe()

    def _leave_layer(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self.layer is not None:
            self.layer.remove_consumer(self)
            self.layer = None

    def _record(self, layer: Producer) -> None:
        """From here the log holds ``layer``'s packets (a new epoch: codec, clock)."""
        self.layer = layer
        self._last_report = None
        codec = layer.codec
        self._pending.append(
            packet_log.epoch_record(
                {
                    "producer": layer.id,
                    "mime_type": codec.mime_type,
                    "clock_rate": codec.clock_rate,
                    "channels": codec.channels,
                    "parameters": {k: v for k, v in codec.parameters.items()},
                    "at": time.time(),
                }
            )
        )

    def reselect_layer(self) -> None:
        group = self.producer
        if group is None or group.closed or self.closed:
            return
        best = top_layer(group)[0] or group
        if best is self.layer or best.closed:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            return
        if self._watch is not None:
            if self._watch.layer is best:
                return
            self._watch.close()
        self._watch = KeyframeWatch(best, self._switch)

    def _switch(self, layer: Producer, packet: RtpPacket) -> None:
        self._watch = None
        if self.producer is None or layer.group is not self.producer or self.closed:
            return
        if self.layer is not None:
            self.layer.remove_consumer(self)
        self._record(layer)
        self._waiting = True
        layer.add_consumer(self)
        self.forward(packet, True)

    def unbind(self, producer: Producer) -> None:
        if producer is self.layer and producer is not self.producer:
            producer.remove_consumer(self)  # one layer closed: the whole source is closing
            self.layer = None
            return
        if self.producer is not producer:
            return
        self._leave_layer()
        producer.unfollow(self)
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
        producer = self.layer
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
