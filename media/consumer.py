"""The SFU's end of one outbound RTP stream to one peer, fed by one producer at a time."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Protocol

from .codec import Codec, HeaderExtension, extension_id_map, match_codec
from .producer import Producer
from .rtp_packet import RtpPacket, rewrite, seq_newer, wrap_rtx

logger = logging.getLogger(__name__)


class RtpLink(Protocol):
    """An established, encrypted path to the peer."""

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
    __slots__ = ("packets", "octets", "retransmitted", "nacks", "keyframe_requests", "unanswered")

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0  # payload octets, as counted in sender reports
        self.retransmitted = 0
        self.nacks = 0
        self.keyframe_requests = 0
        self.unanswered = 0  # NACKed packets no longer in the cache


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
    )

    def __init__(
        self,
        consumer_id: str,
        kind: str,
        source: str,
        codecs: list[Codec],
        excluded_source: str | None = None,
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
        self.stats.nacks += 1
        if producer is None or link is None or self._seq_offset is None:
            return
        params = self._params
        codec = self._codec
        assert params is not None and codec is not None
        missing = []
        for seq in sequence_numbers:
            if seq_newer(self._first_seq, seq):
                continue  # sent before the current producer: nothing to resend from
            ingress_seq = (seq - self._seq_offset) & 0xFFFF
            packet = producer.cache.get(ingress_seq)
            if packet is None:
                missing.append(ingress_seq)
                continue
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
            self.stats.retransmitted += 1
        if missing:
            self.stats.unanswered += len(missing)
            producer.request_retransmission(missing)

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
