"""The SFU's end of one outbound RTP stream to one peer, fed by one producer at a time."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .codec import Codec, HeaderExtension, extension_id_map, match_codec
from .layers import MAX_TID, KeyframeWatch, LayerChoice, top_layer
from .packet_cache import DEFAULT_CAPACITY
from .producer import Producer
from .red import Redundancy, red_payload_type
from .rtp_packet import (
    ABS_SEND_TIME,
    RtpPacket,
    rewrite,
    send_time_now,
    seq_newer,
    wrap_rtx,
)
from .send_gate import SendGate
from .vp8 import Vp8Descriptor, renumbered

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
# Sequence number offsets kept to map a classroom's NACKs back through hidden packets.
MAX_SEQ_SHIFTS = 64
# When the classroom's estimate says its link is full, retransmissions earn this share of what
# is sent instead (they would feed the congestion), and a packet older than a round trip plus
# this playout allowance is not resent at all (it would come too late to be played).
RETRANSMIT_SHARE_FULL = 0.05
RETRANSMIT_PLAYOUT_S = 0.4
PADDING_PACKET = 255  # the most one RTP packet's padding can say
# A classroom's NACKs tell its loss a round trip after it happens; its receiver report, up to
# 1.5 s later. The sequence numbers asked for the first time (of packets this server sent)
# are counted in slots of NACK_LOSS_SLOT_S, against the span of sequence numbers each covers.
# Two slots in a row that each lost NACK_LOSS_SHARE or more of their span, NACK_LOSS_MIN
# packets in all, are a link that carries far less than it is sent (a collapse), told to the
# gate at once (SendGate.on_nack_loss), before the sound is lost with the rest. One burst (the
# tail of a keyframe that overflowed a queue) fills one slot, not two; random loss of a few
# percent never comes near it (9 more of the next 31 packets lost at 3 % is a chance of about
# one in a million).
NACK_LOSS_SLOT_S = 0.15
NACK_LOSS_MIN = 10
NACK_LOSS_SHARE = 0.25


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
    highest_sequence: int | None = None  # extended, as the latest report gave it


class ConsumerStats:
    __slots__ = (
        "packets",
        "octets",
        "retransmitted",
        "nacks",
        "keyframe_requests",
        "unanswered",
        "nacks_suppressed",
        "retransmitted_octets",
        "padding_octets",
        "too_late",
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
        self.retransmitted_octets = 0
        self.padding_octets = 0  # probes sent while video pauses
        self.too_late = 0  # NACKed packets not resent: past their playout time


class _NackSlot:
    """One slot of a classroom's NACKs (NACK_LOSS_SLOT_S): when it began, the sequence number
    its span starts after, and how many were asked for the first time in it."""

    __slots__ = ("began", "start", "lost")

    def __init__(self, began: float, start: int) -> None:
        self.began = began
        self.start = start
        self.lost = 0


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
        "choose_layer",
        "_layer",
        "_watch",
        "_max_tid",
        "_tid_target",
        "_special",
        "_pid_delta",
        "_tl0_delta",
        "_shifts",
        "_pid_shifts",
        "_hidden_pid",
        "_filter_seq",
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
        "gate",
        "_paused",
        "_send_time_id",
        "_redundancy",
        "_red",
        "_repeated",
        "_repeat_from",
        "_nacked_up_to",
        "_nack_slot",
        "_nack_before",
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
        self.producer: Producer | None = None  # the source's producer (its layers' group)
        self.closed = False
        # layers: which one is fed (``_layer``, a producer of the group), the one waited for
        # at its next keyframe (``_watch``), the highest temporal layer sent and the one to
        # send (taken at a frame that starts a layer: a keyframe or a layer sync); ``_special``
        # says the per-packet path has more to do than rewrite the header (hide packets of
        # higher temporal layers, continue VP8 picture numbering after a switch)
        self.choose_layer: LayerChoice = top_layer
        self._layer: Producer | None = None
        self._watch: KeyframeWatch | None = None
        self._max_tid = MAX_TID
        self._tid_target = MAX_TID
        self._special = False
        self._pid_delta = 0
        self._tl0_delta = 0
        # (ingress sequence number, offset from it on) once packets have been hidden; and
        # (ingress picture id, picture id delta from it on) once frames have been: a decoder
        # waits for every picture id it has not seen (Chrome's frame reference finder holds
        # the frames after a gap back), so the frames it is sent are numbered one by one
        self._shifts: list[tuple[int, int]] = []
        self._pid_shifts: list[tuple[int, int]] = []
        self._hidden_pid = -1
        self._filter_seq: int | None = None
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
        # what this consumer may send now (its classroom's; None: everything, always)
        self.gate: SendGate | None = None
        self._paused = False
        self._send_time_id = 0  # the peer's abs-send-time id, for probes
        # redundant sound (media.red), where the peer negotiated it, and whether it is on
        self._redundancy: Redundancy | None = None
        self._red = False
        # the copies of a link that sends each datagram twice: counted so far, and the media
        # octets sent when the copies began (None: none are sent now)
        self._repeated = 0
        self._repeat_from: int | None = None
        # the loss its NACKs tell (NACK_LOSS_SLOT_S): the newest sequence number asked for,
        # the latest slot and the one before it
        self._nacked_up_to: int | None = None
        self._nack_slot = _NackSlot(-1e9, 0)
        self._nack_before = (0, 0)  # (lost, span) of the slot just before it

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting and not self._paused

    @property
    def codec(self) -> Codec | None:
        return self._codec

    # binding

    def attach(self, link: RtpLink, params: EgressParameters) -> None:
        """The transport to the peer is up: forwarding may start."""
        self._link = link
        self._params = params
        self._ssrc = params.ssrc
        self._send_time_id = next((e.id for e in params.extensions if e.uri == ABS_SEND_TIME), 0)
        if self.producer is not None:
            self._extension_ids = extension_id_map(self.producer.extensions, params.extensions)
            self._request_keyframe()

    def bind(self, producer: Producer) -> None:
        """Follow ``producer`` from its next keyframe on (also used when its codec changes)."""
        if self.closed:
            return
        self._leave()
        codec = match_codec(producer.codec, self._codecs)
        if codec is None:
            logger.warning(
                "consumer %s cannot carry %s from producer %s", self.id, producer.codec, producer.id
            )
            self._codec = None
            return
        self._codec = codec
        self._payload_type = codec.payload_type
        red = red_payload_type(self._codecs, codec.payload_type) if self.kind == "audio" else None
        self._redundancy = None if red is None else Redundancy(red, codec.payload_type)
        self._seq_offset = None
        self._waiting = producer.kind == "video"
        self.producer = producer
        if self._params is not None:
            self._extension_ids = extension_id_map(producer.extensions, self._params.extensions)
        producer.follow(self)
        layer, max_tid = self.choose_layer(producer)
        self._layer = layer or producer
        self._set_max_tid(max_tid)
        self._layer.add_consumer(self)
        self._request_keyframe()

    def unbind(self, producer: Producer) -> None:
        """``producer`` is gone: keep the outgoing stream's position for the next one."""
        if producer is self._layer and producer is not self.producer:
            # one layer of the source closed (the whole source is closing)
            self._remember_position(producer)
            producer.remove_consumer(self)
            self._layer = None
            self._seq_offset = None
            return
        if self.producer is not producer:
            return
        self._leave()
        self._waiting = False

    def _leave(self) -> None:
        """Stop following the current source, keeping the outgoing stream's position."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        layer = self._layer
        if layer is not None:
            self._remember_position(layer)
            layer.remove_consumer(self)
        if self.producer is not None:
            self.producer.unfollow(self)
        self.producer = None
        self._layer = None
        self._seq_offset = None

    # layers

    def reselect_layer(self) -> None:
        """Ask ``choose_layer`` again; a new spatial layer is taken at its next keyframe."""
        group = self.producer
        if group is None or group.closed or self.closed:
            return
        layer, max_tid = self.choose_layer(group)
        layer = layer or group
        self._set_max_tid(max_tid)
        watch = self._watch
        if layer is self._layer or layer.closed:
            if watch is not None:
                watch.close()
                self._watch = None
            return
        if watch is not None:
            if watch.layer is layer:
                return
            watch.close()
            self._watch = None
        current = self._layer
        if self._seq_offset is None or current is None:
            # nothing sent from the current layer yet: wait for the new one's keyframe instead
            if current is not None:
                current.remove_consumer(self)
            self._layer = layer
            layer.add_consumer(self)
            self._request_keyframe()
            return
        self._watch = KeyframeWatch(layer, self._switch_layer)

    def _switch_layer(self, layer: Producer, packet: RtpPacket) -> None:
        """``layer``'s keyframe starts: from here the classroom is fed from it, its sequence
        numbers, timestamps and VP8 picture numbering continuing those it had."""
        self._watch = None
        if self.producer is None or layer.group is not self.producer or self.closed:
            return
        old = self._layer
        d = packet.vp8
        if old is not None:
            last = old.highest_vp8
            if last is not None and d is not None:
                if last.picture_id >= 0 and d.picture_id >= 0:
                    last_id = last.picture_id + self._pid_delta
                    self._pid_delta = (last_id + 1 - d.picture_id) & 0x7FFF
                if last.tl0picidx >= 0 and d.tl0picidx >= 0:
                    self._tl0_delta = (last.tl0picidx + self._tl0_delta + 1 - d.tl0picidx) & 0xFF
            self._remember_position(old)
            old.remove_consumer(self)
        self._layer = layer
        self._seq_offset = None
        self._update_special()
        layer.add_consumer(self)
        self.forward(packet, True)

    def _set_max_tid(self, max_tid: int) -> None:
        self._tid_target = max_tid
        if self._seq_offset is None:
            self._max_tid = max_tid  # starts at a keyframe anyway
        self._update_special()

    def _update_special(self) -> None:
        self._special = bool(
            self._max_tid < MAX_TID
            or self._tid_target != self._max_tid
            or self._pid_delta
            or self._tl0_delta
        )

    def _step_tid(self, d: Vp8Descriptor) -> None:
        """At the start of a frame, move toward the chosen temporal layer: down at once, up at
        a keyframe or at a frame that syncs a higher layer (it refers to the base layer only,
        so none of the frames this classroom was not sent)."""
        target, tid = self._tid_target, d.tid
        if target < self._max_tid:
            self._max_tid = target
        elif d.keyframe:
            self._max_tid = target
        elif d.layer_sync and self._max_tid < tid <= target:
            layer = self._layer
            top = layer.meter.temporal_layers - 1 if layer is not None else MAX_TID
            self._max_tid = target if tid >= top else tid
        self._update_special()

    @property
    def layer(self) -> Producer | None:
        """The layer this consumer is fed from now."""
        return self._layer

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
        self._shifts = []
        self._pid_shifts = []
        self._hidden_pid = -1
        self._filter_seq = None
        return self._seq_offset

    # the per-packet path

    def forward(self, packet: RtpPacket, keyframe: bool) -> None:
        link = self._link
        if link is None:
            return
        seq_offset = self._seq_offset
        if seq_offset is None:
            if self._paused or (self._waiting and not keyframe):
                return
            self._waiting = False
            seq_offset = self._start(packet)
        if self._special:
            filtered = self._filter(packet)
            if filtered is None:
                return
            packet, seq_offset = filtered
        payload_type = self._payload_type
        redundancy = self._redundancy
        if redundancy is not None:
            if self._red:
                packet, payload_type = redundancy.wrap(packet), redundancy.payload_type
            else:
                redundancy.remember(packet)
        link.forward(
            packet,
            payload_type,
            (packet.sequence_number + seq_offset) & 0xFFFF,
            (packet.timestamp + self._ts_offset) & 0xFFFFFFFF,
            self._ssrc,
            self._extension_ids,
        )
        stats = self.stats
        stats.packets += 1
        stats.octets += packet.payload_end - packet.payload_offset

    def _filter(self, packet: RtpPacket) -> tuple[RtpPacket, int] | None:
        """The slow part of the per-packet path: a packet of a temporal layer above the
        chosen one is hidden (the sequence numbers after it close the gap), and after a
        layer switch the VP8 picture numbering is continued. Returns the packet to send and
        its sequence number offset, or None."""
        seq = packet.sequence_number
        newest = self._filter_seq is None or seq_newer(seq, self._filter_seq)
        if newest:
            self._filter_seq = seq
        d = packet.vp8
        if d is not None and d.start and self._tid_target != self._max_tid and newest:
            self._step_tid(d)
        if d is not None and d.tid > self._max_tid:
            if newest:
                offset = ((self._seq_offset or 0) - 1) & 0xFFFF
                self._seq_offset = offset
                self._shifts.append(((seq + 1) & 0xFFFF, offset))
                if len(self._shifts) > MAX_SEQ_SHIFTS:
                    del self._shifts[0]
                if d.picture_id >= 0 and d.picture_id != self._hidden_pid:
                    # a frame hidden: the frames after it are numbered one less
                    self._hidden_pid = d.picture_id
                    self._pid_delta = (self._pid_delta - 1) & 0x7FFF
                    start = (d.picture_id + 1) & _pid_mask(d)
                    self._pid_shifts.append((start, self._pid_delta))
                    if len(self._pid_shifts) > MAX_SEQ_SHIFTS:
                        del self._pid_shifts[0]
            return None
        offset = (self._seq_offset or 0) if newest else self._offset_of(seq)
        pid_delta = self._pid_delta if newest else self._pid_delta_of(d)
        if pid_delta or self._tl0_delta:
            packet = renumbered(packet, pid_delta, self._tl0_delta)
        return packet, offset

    def _pid_delta_of(self, d: Vp8Descriptor | None) -> int:
        """The picture id delta that applied to an older frame's packets."""
        delta = self._pid_delta
        if d is None or d.picture_id < 0:
            return delta
        mask = _pid_mask(d)
        for start, shifted in reversed(self._pid_shifts):
            if (d.picture_id - start) & mask <= mask >> 1:
                return shifted  # at or after the frame from which this delta applied
            delta = (shifted + 1) & 0x7FFF
        return delta

    def _offset_of(self, ingress_seq: int) -> int:
        """The sequence number offset that applied to an older ingress packet."""
        offset = self._seq_offset or 0
        for start, shifted in reversed(self._shifts):
            if not seq_newer(start, ingress_seq):
                return shifted
            offset = (shifted + 1) & 0xFFFF
        return offset

    def _ingress_seq(self, seq: int) -> int:
        """The ingress sequence number of the packet this consumer sent as ``seq``."""
        offset = self._seq_offset or 0
        for start, shifted in reversed(self._shifts):
            if not seq_newer((start + shifted) & 0xFFFF, seq):
                return (seq - shifted) & 0xFFFF
            offset = (shifted + 1) & 0xFFFF
        return (seq - offset) & 0xFFFF

    # feedback from the peer

    def on_nack(self, sequence_numbers: list[int]) -> None:
        producer = self._layer
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
        gate = self.gate
        full = False
        oldest_ts: int | None = None  # ingress timestamps older than this are too late
        if gate is not None:
            gate.on_nacks(len(distinct))
            full = gate.link_full
            if full and producer.highest_seq is not None:
                late = round((interval + RETRANSMIT_PLAYOUT_S) * codec.clock_rate)
                oldest_ts = (producer.highest_ts - late) & 0xFFFFFFFF
        budget = self._top_up_budget(now, full)
        stamp = self._link_stamps_send_time()
        resent_seq = self._resent_seq
        resent_at = self._resent_at
        mask = DEFAULT_CAPACITY - 1
        cache = producer.cache
        missing = []
        first_asked: list[int] = []
        for seq in distinct:
            if seq_newer(self._first_seq, seq):
                continue  # sent before the current producer: nothing to resend from
            ingress_seq = self._ingress_seq(seq)
            packet = cache.get(ingress_seq)
            if packet is None:
                missing.append(ingress_seq)
                continue
            if self._nacked_up_to is None or seq_newer(seq, self._nacked_up_to):
                first_asked.append(seq)
            slot = ingress_seq & mask
            if resent_seq is None:
                resent_seq = self._resent_seq = [-1] * DEFAULT_CAPACITY
                resent_at = self._resent_at = [0.0] * DEFAULT_CAPACITY
            elif resent_seq[slot] == ingress_seq and now - resent_at[slot] < interval:
                stats.nacks_suppressed += 1
                continue
            if oldest_ts is not None and (packet.timestamp - oldest_ts) & 0x80000000:
                stats.too_late += 1
                continue
            size = packet.payload_end - packet.payload_offset
            if size > budget:
                stats.nacks_suppressed += 1
                continue
            budget -= size
            pid_delta = self._pid_delta_of(packet.vp8)
            if pid_delta or self._tl0_delta:
                packet = renumbered(packet, pid_delta, self._tl0_delta)
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
            if stamp and packet.send_time_at:
                data = _stamped(data, packet.send_time_at)
            link.send_rtp(data)
            stats.retransmitted += 1
            stats.retransmitted_octets += len(data)
        self._budget = budget
        if missing:
            stats.unanswered += len(missing)
            producer.request_retransmission(missing)
        if first_asked and gate is not None:
            self._count_nack_loss(first_asked, gate, now)

    def _count_nack_loss(self, first_asked: list[int], gate: SendGate, now: float) -> None:
        """Tell the gate at once when two slots of NACKs in a row show heavy loss."""
        newest = oldest = first_asked[0]
        for seq in first_asked:
            if seq_newer(seq, newest):
                newest = seq
            if seq_newer(oldest, seq):
                oldest = seq
        slot = self._nack_slot
        if self._nacked_up_to is None or now - slot.began >= 2 * NACK_LOSS_SLOT_S:
            # no slot just before this one: its span starts at its first loss (the one before
            # may be long ago)
            self._nack_before = (0, 0)
            slot = self._nack_slot = _NackSlot(now, (oldest - 1) & 0xFFFF)
        elif now - slot.began >= NACK_LOSS_SLOT_S:
            self._nack_before = (slot.lost, (self._nacked_up_to - slot.start) & 0xFFFF)
            slot = self._nack_slot = _NackSlot(now, self._nacked_up_to)
        self._nacked_up_to = newest
        slot.lost += len(first_asked)
        lost, span = slot.lost, (newest - slot.start) & 0xFFFF
        lost_before, span_before = self._nack_before
        if (
            lost + lost_before >= NACK_LOSS_MIN
            and span_before
            and lost_before >= NACK_LOSS_SHARE * span_before
            and lost >= NACK_LOSS_SHARE * span
        ):
            self._nack_before = (0, 0)  # acted on once: what follows is counted afresh
            slot.began = -1e9
            gate.on_nack_loss(min((lost + lost_before) / (span + span_before), 1.0))

    def _top_up_budget(self, now: float, full: bool = False) -> float:
        """The retransmission budget now: what was left, plus a share of the payload sent
        since (a small one when the link is ``full``) and the floor for the time since, up to
        the burst. Worked out on a NACK, so that the per-packet path pays nothing for it."""
        octets = self.stats.octets
        share = RETRANSMIT_SHARE_FULL if full else RETRANSMIT_SHARE
        earned = (octets - self._budget_octets) * share
        earned += (now - self._budget_at) * RETRANSMIT_FLOOR_BPS
        self._budget_octets = octets
        self._budget_at = now
        return min(self._budget + max(earned, 0.0), RETRANSMIT_BURST)

    def on_keyframe_request(self) -> None:
        self.stats.keyframe_requests += 1
        if not self._paused:  # a paused picture needs none until it resumes
            if self.gate is not None and not self._waiting:
                # a picture it had, broken: not the first of a new layer it waits for
                self.gate.on_keyframe_request(self)
            self._request_keyframe()

    def _request_keyframe(self) -> None:
        producer = self._layer
        if producer is None or self._link is None:
            return
        if self._waiting and producer.replay_keyframe(self):
            return
        producer.request_keyframe()

    def on_receiver_report(
        self,
        fraction_lost: int,
        packets_lost: int,
        jitter: int,
        rtt_s: float | None,
        highest_sequence: int | None = None,
        report_age_s: float | None = None,
    ) -> None:
        """``report_age_s``: how long ago the sender report that ``rtt_s`` answers was sent."""
        quality = self.quality
        # the packets this report covers: the growth of the extended highest sequence number
        # the classroom received since its last report (None: unknown, or out of order)
        packets = None
        if highest_sequence is not None:
            last = quality.highest_sequence
            if last is not None and 0 <= highest_sequence - last < 1 << 16:
                packets = highest_sequence - last
            if last is None or highest_sequence > last:
                quality.highest_sequence = highest_sequence
        quality.fraction_lost = fraction_lost / 256
        quality.packets_lost = packets_lost
        rate = self._codec.clock_rate if self._codec else 90000
        quality.jitter_ms = jitter * 1000 / rate
        if rtt_s is not None:
            quality.rtt_ms = rtt_s * 1000
        quality.reports += 1
        if self.gate is not None:
            self.gate.on_report(
                quality.fraction_lost,
                quality.rtt_ms,
                self.kind,
                packets,
                rtt_s is not None,
                report_age_s,
            )

    def on_remb(self, bitrate: int) -> None:
        self.quality.remb_bps = bitrate
        if self.gate is not None:
            self.gate.on_remb(bitrate)

    # what the gate asks of it (send_gate.GatedConsumer)

    def on_reliable_path(self) -> bool:
        link = self._link
        return link is not None and link.reliable

    def _media_octets(self) -> int:
        # payload, plus about what headers and SRTP add to each packet
        return self.stats.octets + 40 * self.stats.packets

    def sent_octets(self) -> int:
        stats = self.stats
        repeated = self._repeated
        if self._repeat_from is not None:
            repeated += self._media_octets() - self._repeat_from
        return self._media_octets() + stats.retransmitted_octets + stats.padding_octets + repeated

    def source_octets(self) -> tuple[int, float] | None:
        producer = self.producer
        return None if producer is None else (producer.stats.bytes, self._now())

    def pause(self) -> None:
        """Send nothing until ``resume``; the outgoing stream keeps its place (sequence
        numbers go on from there, as after a producer restart)."""
        if self._paused:
            return
        self._paused = True
        if self._layer is not None:
            self._remember_position(self._layer)
        self._seq_offset = None

    def resume(self) -> None:
        """Send again from the next keyframe (asked for)."""
        if not self._paused:
            return
        self._paused = False
        self._waiting = self.kind == "video"
        self._request_keyframe()

    def send_padding(self, octets: int) -> int:
        """Padding-only packets on the retransmission stream (as browsers probe), stamped
        with the send time; returns the bytes sent (0 without a retransmission stream)."""
        link, params, codec = self._link, self._params, self._codec
        if link is None or params is None or codec is None or codec.rtx_payload_type is None:
            return 0
        sent = 0
        extension = b""
        if self._send_time_id and self._link_stamps_send_time():
            stamp = send_time_now(time.time())
            extension = bytes(
                [0xBE, 0xDE, 0, 1, (self._send_time_id << 4) | 2, stamp >> 16, (stamp >> 8) & 0xFF]
            ) + bytes([stamp & 0xFF])
        timestamp = (self._last_ts if self._seq_offset is None else 0) & 0xFFFFFFFF
        while sent < octets:
            first = 0xA0 | (0x10 if extension else 0)  # version 2, padding, extension
            header = bytes([first, codec.rtx_payload_type]) + (
                self._rtx_seq.to_bytes(2, "big")
                + timestamp.to_bytes(4, "big")
                + params.rtx_ssrc.to_bytes(4, "big")
            )
            padding = bytes(PADDING_PACKET - 1) + bytes([PADDING_PACKET])
            packet = header + extension + padding
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            link.send_rtp(packet)
            sent += len(packet) + 10
        self.stats.padding_octets += sent
        return sent

    def send_report_now(self) -> None:
        """Send a sender report at once (its round trip times the end of a probe)."""
        hook = getattr(self._link, "report_now", None)
        if hook is not None:
            hook()

    def pace(self, bps: float) -> None:
        """Have the link send this stream at most at ``bps`` (0: as it comes)."""
        if self._link is not None and hasattr(self._link, "pace"):
            self._link.pace(bps)

    def repeat(self, on: bool, pace_bps: float = 0.0) -> None:
        """Send each packet with the one or two before it (RED, where the peer negotiated
        it), or have the link send each packet twice (the same datagram; the copies at once,
        or paced at ``pace_bps``); or once again."""
        if self._redundancy is not None:
            self._red = on
        elif self._link is not None and hasattr(self._link, "repeat"):
            self._link.repeat = on
            if hasattr(self._link, "repeat_pace_bps"):
                self._link.repeat_pace_bps = pace_bps
            if on and self._repeat_from is None:
                self._repeat_from = self._media_octets()
            elif not on and self._repeat_from is not None:
                self._repeated += self._media_octets() - self._repeat_from
                self._repeat_from = None

    @property
    def redundant(self) -> str | None:
        """How the sound is protected now: ``red``, ``repeat`` or None."""
        if self._red and self._redundancy is not None:
            return "red"
        return "repeat" if getattr(self._link, "repeat", False) else None

    def _link_stamps_send_time(self) -> bool:
        return bool(getattr(self._link, "stamp_send_time", False))

    def sender_report(self, wall_time: float) -> tuple[int, int, int] | None:
        """(RTP timestamp at ``wall_time``, packets sent, octets sent) for a sender report."""
        producer = self._layer
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
        self.gate = None
        self._leave()
        self.closed = True
        self._link = None


def _stamped(data: bytes, at: int) -> bytes:
    """``data`` with the 3 bytes at ``at`` set to the send time now (abs-send-time)."""
    stamp = send_time_now(time.time())
    return data[:at] + bytes([stamp >> 16, (stamp >> 8) & 0xFF, stamp & 0xFF]) + data[at + 3 :]


def _pid_mask(d: Vp8Descriptor) -> int:
    return 0x7FFF if d.picture_id_bits == 15 else 0x7F
