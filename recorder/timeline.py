"""A track's log as segments on the lesson's wall clock.

A segment is what one producer sent with one SSRC: its RTP timestamps share one base and one
clock. Each segment is placed on the server's wall clock on its own, so that when the teacher
drops out and comes back (a new producer, a new timestamp base) the pause stays in the
recording as a pause, and audio and video of the new producer are aligned again.

The placement uses the publisher's sender reports where there are any (they relate audio and
video the way the publisher captured them), otherwise the earliest arrival: network delay
only ever makes a packet later, so the smallest (arrival - timestamp) is the best estimate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .depacketizer import RtpItem
from .packet_log import End, Epoch, LogReader, Packet, SenderReport

# A sender report that disagrees with the arrival times by more than this is not trusted
# (a publisher whose reports do not describe its timestamps); one-way delay stays below it.
_MAX_REPORT_DISAGREEMENT_S = 1.0


def _signed32(delta: int) -> int:
    delta &= 0xFFFFFFFF
    return delta - (1 << 32) if delta >= 1 << 31 else delta


def _signed16(delta: int) -> int:
    delta &= 0xFFFF
    return delta - (1 << 16) if delta >= 1 << 15 else delta


@dataclass
class Segment:
    mime_type: str
    clock_rate: int
    parameters: dict[str, Any]
    ssrc: int
    began_at: float  # when the producer started feeding the track (server wall clock)
    ended_at: float | None = None  # when it went away, if the log says so
    items: list[RtpItem] = field(default_factory=list)
    arrival_offset: float = float("inf")  # min(arrival - timestamp / rate)
    last_arrival: float = 0.0
    report_offsets: list[float] = field(default_factory=list)
    # unwrapping state
    _ts_ref: int = 0
    _ts_ext: int = 0
    _seq_ref: int = 0
    _seq_ext: int = 0

    @property
    def codec(self) -> str:
        return self.mime_type.split("/", 1)[-1].upper()

    def add(self, packet: Packet) -> None:
        if self.items:
            self._ts_ext += _signed32(packet.timestamp - self._ts_ref)
            self._seq_ext += _signed16(packet.sequence_number - self._seq_ref)
        else:
            self._ts_ext = packet.timestamp
            self._seq_ext = packet.sequence_number
        self._ts_ref = packet.timestamp
        self._seq_ref = packet.sequence_number
        self.items.append(RtpItem(self._seq_ext, self._ts_ext, packet.marker, packet.payload))
        offset = packet.arrival - self._ts_ext / self.clock_rate
        if offset < self.arrival_offset:
            self.arrival_offset = offset
        if packet.arrival > self.last_arrival:
            self.last_arrival = packet.arrival

    def add_report(self, report: SenderReport) -> None:
        if not self.items:
            return
        timestamp = self._ts_ext + _signed32(report.rtp_timestamp - self._ts_ref)
        self.report_offsets.append(report.wall_time - timestamp / self.clock_rate)

    def offset(self) -> float:
        """The wall-clock time of extended timestamp 0 of this segment."""
        if self.report_offsets:
            reported = statistics.median(self.report_offsets)
            if abs(reported - self.arrival_offset) < _MAX_REPORT_DISAGREEMENT_S:
                return reported
        return self.arrival_offset

    def ordered(self) -> list[RtpItem]:
        """Packets in sequence order (retransmissions arrive late), duplicates removed."""
        unique = {item.sequence: item for item in self.items}
        return [unique[seq] for seq in sorted(unique)]


def read_segments(path: Path) -> tuple[list[Segment], LogReader]:
    """The segments of one track log; the reader must stay open while payloads are used."""
    reader = LogReader(path)
    segments: list[Segment] = []
    epoch: dict[str, Any] | None = None
    current: Segment | None = None
    for record in reader.records():
        if type(record) is Packet:
            if epoch is None:
                continue  # packets before any codec information cannot be interpreted
            if current is None or current.ssrc != record.ssrc:
                current = Segment(
                    mime_type=str(epoch.get("mime_type", "")),
                    clock_rate=int(epoch.get("clock_rate") or 90000),
                    parameters=dict(epoch.get("parameters") or {}),
                    ssrc=record.ssrc,
                    began_at=float(epoch.get("at") or record.arrival),
                )
                segments.append(current)
            current.add(record)
        elif type(record) is Epoch:
            epoch = record.info
            current = None
        elif type(record) is SenderReport:
            if current is not None:
                current.add_report(record)
        elif type(record) is End:
            if current is not None:
                current.ended_at = record.wall_time
            current = None
    return segments, reader
