"""A track's log as segments placed on the server's wall clock, packets put back in order.

A segment is what one producer sent with one SSRC: its RTP timestamps share one base and one
clock. Each segment is placed on the wall clock on its own, so that when the teacher drops out
and comes back (a new producer, a new timestamp base) the pause stays in the recording as a
pause, and audio and video of the new producer are aligned again.

The placement uses the publisher's sender reports where there are any (they relate audio and
video the way the publisher captured them), otherwise the earliest arrival: network delay
only ever makes a packet later, so the smallest (arrival - timestamp) is the best estimate.
It is fixed once a segment has ``SETTLE_S`` of packets (or has ended), so that the remuxer
can write the lesson while it is still going on.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from media.depacketizer import RtpItem

from .packet_log import FLAG_MARKER, End, Epoch, Packet, Record, SenderReport

SETTLE_S = 3.0
# How long a missing packet is waited for (a retransmission comes within a few round trips).
REORDER_WAIT_S = 2.0
# A sender report that disagrees with the arrival times by more than this is not trusted
# (a publisher whose reports do not describe its timestamps); one-way delay stays below it.
MAX_REPORT_DISAGREEMENT_S = 1.0


@dataclass
class Segment:
    mime_type: str
    clock_rate: int
    parameters: dict[str, Any]
    ssrc: int
    index: int  # position in the track, from 0
    began_at: float  # first packet's arrival (server wall clock)
    ended_at: float | None = None  # when the producer went away, if the log says so
    last_arrival: float = 0.0
    arrival_offset: float = float("inf")  # min(arrival - timestamp / rate)
    report_offsets: list[float] = field(default_factory=list)
    packets: int = 0
    offset: float | None = None  # wall-clock time of extended timestamp 0, once fixed
    first_timestamp: int | None = None  # extended, of the first packet released
    # unwrapping, and packets waiting to be released in sequence order
    _ts_ref: int = 0
    _ts_ext: int = 0
    _seq_ref: int = 0
    _seq_ext: int = 0
    _pending: dict[int, tuple[float, RtpItem]] = field(default_factory=dict)
    _next_seq: int | None = None

    @property
    def codec(self) -> str:
        return self.mime_type.split("/", 1)[-1].upper()

    def add(self, packet: Packet) -> None:
        arrival, timestamp, _, sequence, flags, _, payload = packet
        if self.packets:
            delta = (timestamp - self._ts_ref) & 0xFFFFFFFF
            self._ts_ext += delta - (1 << 32) if delta >= 1 << 31 else delta
            delta = (sequence - self._seq_ref) & 0xFFFF
            self._seq_ext += delta - (1 << 16) if delta >= 1 << 15 else delta
        else:
            self._ts_ext = timestamp
            self._seq_ext = sequence
        self._ts_ref = timestamp
        self._seq_ref = sequence
        self.packets += 1
        seq = self._seq_ext
        if arrival > self.last_arrival:
            self.last_arrival = arrival
        if (self._next_seq is not None and seq < self._next_seq) or seq in self._pending:
            return  # a duplicate, or too late to be of use
        self._pending[seq] = (
            arrival,
            (seq, self._ts_ext, bool(flags & FLAG_MARKER), payload),
        )
        offset = arrival - self._ts_ext / self.clock_rate
        if offset < self.arrival_offset:
            self.arrival_offset = offset

    def add_report(self, report: SenderReport) -> None:
        if not self.packets:
            return
        delta = (report.rtp_timestamp - self._ts_ref) & 0xFFFFFFFF
        timestamp = self._ts_ext + (delta - (1 << 32) if delta >= 1 << 31 else delta)
        self.report_offsets.append(report.wall_time - timestamp / self.clock_rate)

    def settled(self, now: float | None) -> bool:
        """Whether the placement can be fixed (``now`` None: the log has been read to the end)."""
        if self.offset is not None:
            return True
        if not self._pending:
            return False
        if now is None or self.ended_at is not None or now - self.began_at >= SETTLE_S:
            self.offset = self._estimate()
            return True
        return False

    def _estimate(self) -> float:
        if self.report_offsets:
            reported = statistics.median(self.report_offsets)
            if abs(reported - self.arrival_offset) < MAX_REPORT_DISAGREEMENT_S:
                return reported
        return self.arrival_offset

    def release(self, now: float | None) -> list[RtpItem]:
        """Packets now known to be in order; a gap is given up once the packets after it
        have waited ``REORDER_WAIT_S`` (``now`` None: give up every gap, the log is done)."""
        pending = self._pending
        if not pending or not self.settled(now):
            return []
        if self._next_seq is None:
            self._next_seq = min(pending)
        out: list[RtpItem] = []
        seq = self._next_seq
        while pending:
            entry = pending.pop(seq, None)
            if entry is not None:
                out.append(entry[1])
                seq += 1
                continue
            lowest = min(pending)
            if now is not None and pending[lowest][0] > now - REORDER_WAIT_S:
                break
            seq = lowest
        self._next_seq = seq
        if out and self.first_timestamp is None:
            self.first_timestamp = out[0][1]
        return out

    @property
    def drained(self) -> bool:
        return not self._pending

    def wall_time(self, timestamp: int) -> float:
        assert self.offset is not None
        return self.offset + timestamp / self.clock_rate


class TrackTimeline:
    """The segments of one track, fed with its log records as they are read."""

    def __init__(self, source: str, kind: str) -> None:
        self.source = source
        self.kind = kind
        self.segments: list[Segment] = []
        self.latest_arrival = 0.0
        self._epoch: dict[str, Any] | None = None
        self._current: Segment | None = None

    def add(self, records: list[Record]) -> None:
        for record in records:
            if type(record) is tuple:
                self._add_packet(record)
            elif type(record) is Epoch:
                self._epoch = record.info
                self._end_current(None)
            elif type(record) is SenderReport:
                if self._current is not None:
                    self._current.add_report(record)
            elif type(record) is End:
                self._end_current(record.wall_time)

    def _add_packet(self, packet: Packet) -> None:
        epoch = self._epoch
        if epoch is None:
            return  # packets before any codec information cannot be interpreted
        arrival = packet[0]
        if arrival > self.latest_arrival:
            self.latest_arrival = arrival
        current = self._current
        if current is None or current.ssrc != packet[2]:
            self._end_current(None)
            current = self._current = Segment(
                mime_type=str(epoch.get("mime_type", "")),
                clock_rate=int(epoch.get("clock_rate") or 90000),
                parameters=dict(epoch.get("parameters") or {}),
                ssrc=packet[2],
                index=len(self.segments),
                began_at=arrival,
            )
            self.segments.append(current)
        current.add(packet)

    def _end_current(self, wall_time: float | None) -> None:
        if self._current is not None:
            self._current.ended_at = wall_time or self._current.last_arrival
        self._current = None

    def release(self, now: float | None) -> list[tuple[Segment, list[RtpItem]]]:
        """In-order packets of every segment that has some to give, oldest segment first."""
        released = []
        for segment in self.segments:
            items = segment.release(now)
            if items:
                released.append((segment, items))
            if not segment.drained:
                break  # later segments wait, so that time only ever moves forward
        return released
