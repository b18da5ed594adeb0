"""The SFU's end of one outbound RTP stream to one peer, fed by one producer at a time."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .codec import Codec, HeaderExtension, extension_id_map, match_codec
from .packet_cache import DEFAULT_CAPACITY
from .producer import Producer
from .rtp_packet import RtpPacket, rewrite, seq_newer, wrap_rtx

logger = logging.getLogger(__name__)

# A packet is resent to a classroom at most once per round trip: a NACK for it that comes
# sooner was sent before the retransmission could have arrived (or is a flood). The round
# trip is the classroom's, from its receiver reports; until one is known, this default.
NACK_DEFAULT_RTT_S = 0.1
NACK_MIN_INTERVAL_S = 0.005  # however short the measured round trip
# Retransmissions to one classroom stream are bounded by a budget in payload bytes: a share
# of what it is sent, plus a floor for streams that send little (audio, a paused picture),
# saved up to a burst (a lost keyframe). A real classroom never comes near it: random loss
# that retransmission repairs is a few percent. The weak-links issue replaces this fixed cap
# with the classroom's own bandwidth estimate (its share of the link).
RETRANSMIT_SHARE = 0.5
RETRANSMIT_FLOOR_BPS = 16_000  # bytes per second
RETRANSMIT_BURST = 128_000  # bytes


class RtpLink(Protocol):
    """An established, encrypted path to the peer."""

    # True on a path that retransmits by itself (ICE over TCP): NACKs are not answered
    reliable: bool

    def send_rtp(self, packet: bytes | bytearray) -> None: ...

    def forward(
        self,
        packet: RtpPacket,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        extension_ids: bytes | None,
    ) -> None:
        """Send ``packet`` with these header fields (rtp_packet.rewrite_into), encrypted."""


@dataclass
class EgressParameters:
    """What the answer fixed for this stream: our SSRCs and the peer's header extension ids."""

    ssrc: int
    rtx_ssrc: int
    extensions: list[HeaderExtension]


@dataclass
class ReceiverQuality:
    """The latest receiver report of the classroom for this stream."""

    fraction_lost: float = 0.0  # 0..1 over the last report interval
    packets_lost: int = 0
    jitter_ms: float = 0.0
    rtt_ms: float | None = None
    remb_bps: int | None = None
    reports: int = 0


class ConsumerStats:
    __slots__ = (
        "packets",
        "octets",
        "retransmitted",
        "nacks",
        "keyframe_requests",
        "unanswered",
        "nacks_suppressed",
    )

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0  # payload octets, as counted in sender reports
        self.retransmitted = 0
        self.nacks = 0
        self.keyframe_requests = 0
        self.unanswered = 0  # NACKed packets no longer in the cache
        # NACKed packets not resent: named again within a round trip (or twice in one NACK),
        # or over the retransmission budget
        self.nacks_suppressed = 0


class Consumer:
    __slots__ = (
        "id",
        "kind",
        "source",
        "excluded_source",
        "stats",
        "quality",
        "producer",
        "closed",
        "_codecs",
        "_link",
        "_params",
        "_codec",
        "_payload_type",
        "_ssrc",
        "_extension_ids",
        "_waiting",
        "_seq_offset",
        "_ts_offset",
        "_first_seq",
        "_last_seq",
        "_last_ts",
        "_last_time",
        "_rtx_seq",
        "_resent_seq",
        "_resent_at",
        "_budget",
        "_budget_octets",
        "_budget_at",
        "_now",
    )

    def __init__(
        self,
        consumer_id: str,
        kind: str,
        source: str,
        codecs: list[Codec],
        excluded_source: str | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = consumer_id
        self.kind = kind
        self.source = source
        self.excluded_source = excluded_source
        self.stats = ConsumerStats()
        self.quality = ReceiverQuality()
        self.producer: Producer | None = None
        self.closed = False
        self._codecs = codecs  # what the peer accepts, with its payload types
        self._link: RtpLink | None = None
        self._params: EgressParameters | None = None
        self._codec: Codec | None = None
        # what the fast path writes into each header: the codec's payload type, our SSRC
        self._payload_type = 0
        self._ssrc = 0
        self._extension_ids: bytes | None = None
        self._waiting = False
        # rewriting state for the current producer (None until its first packet is sent)
        self._seq_offset: int | None = None
        self._ts_offset = 0
        self._first_seq = 0
        # where the outgoing stream stood when the previous producer stopped
        self._last_seq: int | None = None
        self._last_ts = 0
        self._last_time = 0.0
        self._rtx_seq = random.randrange(0x8000)
        # when each recent packet was last resent, by ingress sequence number, in a ring as
        # large as the producer's cache (made on the first NACK that finds something to send)
        self._resent_seq: list[int] | None = None
        self._resent_at: list[float] = []
        # the retransmission budget: bytes left, and the payload octets and time it was
        # last topped up at
        self._budget = float(RETRANSMIT_BURST)
        self._budget_octets = 0
        self._now = now
        self._budget_at = now()

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting

    @property
    def codec(self) -> Codec | None:
        return self._codec

    # binding

    def attach(self, link: RtpLink, params: EgressParameters) -> None:
        """The transport to the peer is up: forwarding may start."""
        self._link = link
        self._params = params
        self._ssrc = params.ssrc
        if self.producer is not None:
            self._extension_ids = extension_id_map(self.producer.extensions, params.extensions)
            self._request_keyframe()

    def bind(self, producer: Producer) -> None:
        """Follow ``producer`` from its next keyframe on (also used when its codec changes)."""
        if self.closed:
            return
        if self.producer is not None:
            self._remember_position(self.producer)
            self.producer.remove_consumer(self)
        self.producer = None
        codec = match_codec(producer.codec, self._codecs)
        if codec is None:
            logger.warning(
                "consumer %s cannot carry %s from producer %s", self.id, producer.codec, producer.id
            )
            self._codec = None
            return
        self._codec = codec
        self._payload_type = codec.payload_type
        self._seq_offset = None
        self._waiting = producer.kind == "video"
        self.producer = producer
        if self._params is not None:
            self._extension_ids = extension_id_map(producer.extensions, self._params.extensions)
        producer.add_consumer(self)
        self._request_keyframe()

    def unbind(self, producer: Producer) -> None:
        """``producer`` is gone: keep the outgoing stream's position for the next one."""
        if self.producer is not producer:
            return
        self._remember_position(producer)
        producer.remove_consumer(self)
        self.producer = None
        self._seq_offset = None
        self._waiting = False

    def _remember_position(self, producer: Producer) -> None:
        if self._seq_offset is None or producer.highest_seq is None:
            return
        self._last_seq = (producer.highest_seq + self._seq_offset) & 0xFFFF
        self._last_ts = (producer.highest_ts + self._ts_offset) & 0xFFFFFFFF
        self._last_time = time.time() if producer.last_arrival is None else producer.last_arrival

    def _start(self, packet: RtpPacket) -> int:
        """Fix the offsets from ``packet``'s numbering to the outgoing stream's; returns the
        sequence number offset."""
        if self._last_seq is None:
            # lower half, so that the 16-bit counter does not roll over early (SRTP index)
            seq = random.randrange(0x8000)
            ts = random.getrandbits(32)
        else:
            # carry on where the previous producer left: SRTP rejects indexes that go back,
            # and the classroom's jitter buffer sees one continuous stream with a pause
            seq = (self._last_seq + 1) & 0xFFFF
            rate = self._codec.clock_rate if self._codec else 90000
            elapsed = max(time.time() - self._last_time, 0.0)
            ts = (self._last_ts + max(1, round(elapsed * rate))) & 0xFFFFFFFF
        self._seq_offset = (seq - packet.sequence_number) & 0xFFFF
        self._ts_offset = (ts - packet.timestamp) & 0xFFFFFFFF
        self._first_seq = seq
        self._resent_seq = None  # a new producer numbers its packets anew
        return self._seq_offset

    # the per-packet path

    def forward(self, packet: RtpPacket, keyframe: bool) -> None:
        link = self._link
        if link is None:
            return
        seq_offset = self._seq_offset
        if seq_offset is None:
            if self._waiting and not keyframe:
                return
            self._waiting = False
            seq_offset = self._start(packet)
        link.forward(
            packet,
            self._payload_type,
            (packet.sequence_number + seq_offset) & 0xFFFF,
            (packet.timestamp + self._ts_offset) & 0xFFFFFFFF,
            self._ssrc,
            self._extension_ids,
        )
        stats = self.stats
        stats.packets += 1
        stats.octets += packet.payload_end - packet.payload_offset

    # feedback from the peer

    def on_nack(self, sequence_numbers: list[int]) -> None:
        producer = self.producer
        link = self._link
        stats = self.stats
        stats.nacks += 1
        if producer is None or link is None or self._seq_offset is None:
            return
        if link.reliable:
            stats.nacks_suppressed += len(sequence_numbers)
            return
        params = self._params
        codec = self._codec
        assert params is not None and codec is not None
        # each packet once, in the order asked (aiortc does not wrap the numbers it reads)
        distinct = dict.fromkeys(seq & 0xFFFF for seq in sequence_numbers)
        stats.nacks_suppressed += len(sequence_numbers) - len(distinct)
        now = self._now()
        rtt_ms = self.quality.rtt_ms
        interval = NACK_DEFAULT_RTT_S if rtt_ms is None else rtt_ms / 1000
        interval = max(interval, NACK_MIN_INTERVAL_S)
        budget = self._top_up_budget(now)
        resent_seq = self._resent_seq
        resent_at = self._resent_at
        mask = DEFAULT_CAPACITY - 1
        cache = producer.cache
        missing = []
        for seq in distinct:
            if seq_newer(self._first_seq, seq):
                continue  # sent before the current producer: nothing to resend from
            ingress_seq = (seq - self._seq_offset) & 0xFFFF
            packet = cache.get(ingress_seq)
            if packet is None:
                missing.append(ingress_seq)
                continue
            slot = ingress_seq & mask
            if resent_seq is None:
                resent_seq = self._resent_seq = [-1] * DEFAULT_CAPACITY
                resent_at = self._resent_at = [0.0] * DEFAULT_CAPACITY
            elif resent_seq[slot] == ingress_seq and now - resent_at[slot] < interval:
                stats.nacks_suppressed += 1
                continue
            size = packet.payload_end - packet.payload_offset
            if size > budget:
                stats.nacks_suppressed += 1
                continue
            budget -= size
            resent_seq[slot] = ingress_seq
            resent_at[slot] = now
            timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
            if codec.rtx_payload_type is not None:
                data = wrap_rtx(
                    packet,
                    codec.rtx_payload_type,
                    self._rtx_seq,
                    seq,
                    timestamp,
                    params.rtx_ssrc,
                    self._extension_ids,
                )
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            else:
                data = rewrite(
                    packet, codec.payload_type, seq, timestamp, params.ssrc, self._extension_ids
                )
            link.send_rtp(data)
            stats.retransmitted += 1
        self._budget = budget
        if missing:
            stats.unanswered += len(missing)
            producer.request_retransmission(missing)

    def _top_up_budget(self, now: float) -> float:
        """The retransmission budget now: what was left, plus a share of the payload sent
        since and the floor for the time since, up to the burst. Worked out on a NACK, so that
        the per-packet path pays nothing for it."""
        octets = self.stats.octets
        earned = (octets - self._budget_octets) * RETRANSMIT_SHARE
        earned += (now - self._budget_at) * RETRANSMIT_FLOOR_BPS
        self._budget_octets = octets
        self._budget_at = now
        return min(self._budget + max(earned, 0.0), RETRANSMIT_BURST)

    def on_keyframe_request(self) -> None:
        self.stats.keyframe_requests += 1
        self._request_keyframe()

    def _request_keyframe(self) -> None:
        producer = self.producer
        if producer is None or self._link is None:
            return
        if self._waiting and producer.replay_keyframe(self):
            return
        producer.request_keyframe()

    def on_receiver_report(
        self, fraction_lost: int, packets_lost: int, jitter: int, rtt_s: float | None
    ) -> None:
        quality = self.quality
        quality.fraction_lost = fraction_lost / 256
        quality.packets_lost = packets_lost
        rate = self._codec.clock_rate if self._codec else 90000
        quality.jitter_ms = jitter * 1000 / rate
        if rtt_s is not None:
            quality.rtt_ms = rtt_s * 1000
        quality.reports += 1

    def on_remb(self, bitrate: int) -> None:
        self.quality.remb_bps = bitrate

    def sender_report(self, wall_time: float) -> tuple[int, int, int] | None:
        """(RTP timestamp at ``wall_time``, packets sent, octets sent) for a sender report."""
        producer = self.producer
        if producer is None or self._seq_offset is None:
            return None
        rtp_timestamp = producer.rtp_timestamp_at(wall_time)
        if rtp_timestamp is None:
            return None
        return (
            (rtp_timestamp + self._ts_offset) & 0xFFFFFFFF,
            self.stats.packets & 0xFFFFFFFF,
            self.stats.octets & 0xFFFFFFFF,
        )

    def close(self) -> None:
        if self.closed:
            return
        if self.producer is not None:
            self.producer.remove_consumer(self)
            self.producer = None
        self.closed = True
        self._link = None
