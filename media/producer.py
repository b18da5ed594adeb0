"""The SFU's end of one inbound RTP stream: caches its packets and fans them out to consumers."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from .codec import Codec, HeaderExtension
from .drops import DROPPED
from .keyframe import keyframe_detector
from .layers import LayerMeter, ranked
from .nack import MAX_MISSING, LossTracker
from .packet_cache import PacketCache
from .rtp_packet import (
    ABS_SEND_TIME,
    RtpError,
    RtpPacket,
    send_stamp,
    send_time_offset,
    seq_newer,
    unwrap_rtx,
)
from .sender_clock import SenderClock
from .vp8 import Vp8Descriptor

logger = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL_S = 0.5
# A classroom still waiting this long after a request asks again (the keyframe may be lost).
KEYFRAME_RETRY_S = 1.0
# A classroom's NACK for a packet the server never got is passed on to the publisher once at
# most, and only once the server's own request for it (sent when it found the gap) has had
# this long to be answered: every classroom that misses the packet asks for it, again and
# again, and the publisher needs to be asked once.
UPSTREAM_NACK_RETRY_S = 0.2


class Upstream(Protocol):
    """Feedback towards the publisher of a producer's stream."""

    def request_keyframe(self, ssrc: int) -> None: ...

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None: ...


class Sink(Protocol):
    """What a producer feeds: a consumer towards a peer, or an internal one (the recorder).

    A sink attaches itself with ``producer.add_consumer`` from its ``bind``; the router
    calls ``bind`` when a producer for the sink's (source, kind) appears, ``unbind`` when it
    goes, and ``close`` when the sink is removed."""

    source: str
    kind: str
    excluded_source: str | None  # a source never sent to this sink: its own peer's (no echo)
    producer: Producer | None  # the producer it follows now

    @property
    def waiting_for_keyframe(self) -> bool: ...

    def forward(self, packet: RtpPacket, keyframe: bool) -> None: ...

    def bind(self, producer: Producer) -> None: ...

    def unbind(self, producer: Producer) -> None: ...

    def close(self) -> None: ...

    def reselect_layer(self) -> None:
        """The source's layers changed (one came, went, or the ranking moved): choose again."""


class ProducerStats:
    __slots__ = (
        "packets",
        "bytes",
        "keyframes",
        "keyframe_requests",
        "nacks",
        "malformed",
        "padding",
    )

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.keyframes = 0
        self.keyframe_requests = 0  # sent upstream, after throttling
        self.nacks = 0  # sequence numbers asked for again upstream (found lost, or passed on)
        self.malformed = 0
        self.padding = 0  # padding-only probes, thrown away


class Producer:
    def __init__(
        self,
        producer_id: str,
        source: str,
        codecs: list[Codec],
        extensions: list[HeaderExtension],
        upstream: Upstream,
        sender_clock: SenderClock,
        rtx_ssrcs: dict[int, int] | None = None,
        now: Callable[[], float] = time.monotonic,
        rid: str | None = None,
    ) -> None:
        media = [c for c in codecs if c.name != "RTX"]
        if not media:
            raise ValueError("a producer needs at least one media codec")
        self.id = producer_id
        self.source = source
        self.kind = media[0].kind
        self.extensions = extensions
        self.cache = PacketCache()
        self.stats = ProducerStats()
        self.consumers: list[Sink] = []
        self.closed = False
        self.ssrc: int | None = None
        # ingress sequence number and timestamp of the newest packet, and when it arrived
        self.highest_seq: int | None = None
        self.highest_ts = 0
        self.last_arrival: float | None = None
        self._codecs = {c.payload_type: c for c in media}
        self._rtx_apt = {c.rtx_payload_type: c.payload_type for c in media if c.rtx_payload_type}
        self._rtx_ssrcs = rtx_ssrcs or {}
        self._upstream = upstream
        self._sender_clock = sender_clock
        self._sender_report: tuple[float, int] | None = None  # (publisher time, rtp timestamp)
        self._now = now
        self._last_keyframe_request = -1e9
        self._pending_keyframe_request: asyncio.TimerHandle | None = None
        self._keyframes_at_request = 0
        # where the newest keyframe starts, to let a classroom joining just after it begin there
        self._keyframe_seq: int | None = None
        self._keyframe_at = -1e9
        self._losses = LossTracker() if self.kind == "video" else None
        # for each packet found lost upstream: from when a classroom's NACK for it may be
        # passed on (infinity once it has been)
        self._pass_on_after: dict[int, float] = {}
        self.codec = media[0]
        self._send_time_id = next((e.id for e in extensions if e.uri == ABS_SEND_TIME), 0)
        self._is_keyframe = keyframe_detector(self.codec.mime_type)
        # layers (media.layers): this stream's measures, and the source's streams it is
        # grouped with; the first stream of a source is the group, the producer the router
        # knows, and its followers are the sinks fed from any of its layers
        self.rid = rid
        self.meter = LayerMeter()
        self.last_seen: float | None = None  # wall-clock arrival of the latest packet
        self.highest_vp8: Vp8Descriptor | None = None  # of the newest packet
        self.group: Producer = self
        self.layers: list[Producer] = [self]
        self.followers: list[Sink] = []
        # a layer the server makes from another of the group (media.made_layer): ranked below
        # the streams publishers send, on their RTP clock (``timed_by``)
        self.made = False
        self.timed_by: Producer | None = None

    # ingress

    def on_rtp(self, packet: RtpPacket, arrival: float) -> None:
        """One packet from the publisher, already decrypted; ``arrival`` is wall-clock time."""
        pt = packet.payload_type
        if pt != self.codec.payload_type:
            if pt in self._rtx_apt:
                if packet.payload_size == 0:
                    # padding alone on the retransmission stream: the publisher probing its
                    # uplink (its arrival was noted for the congestion feedback); nothing to keep
                    self.stats.padding += 1
                    DROPPED.add("padding")
                    return
                try:
                    ssrc = self._rtx_ssrcs.get(packet.ssrc, self.ssrc)
                    if ssrc is None:
                        return
                    packet = unwrap_rtx(packet, self._rtx_apt[pt], ssrc)
                except RtpError:
                    self.stats.malformed += 1
                    DROPPED.add("malformed")
                    return
                if self.cache.get(packet.sequence_number) is not None:
                    return  # already have it: a duplicate retransmission
            elif pt in self._codecs:
                self._switch_codec(self._codecs[pt])
            else:
                self.stats.malformed += 1
                DROPPED.add("malformed")
                return
        self.ssrc = packet.ssrc
        if self._send_time_id and packet.extensions:
            # re-stamped as it leaves, once for the whole fan-out (sent within a millisecond)
            packet.send_time_at = send_time_offset(packet, self._send_time_id)
            packet.send_stamp = send_stamp(time.time())
        if self._losses is not None:
            lost = self._losses.add(packet.sequence_number)
            if lost:
                self.stats.nacks += len(lost)
                self._upstream.send_nack(packet.ssrc, lost)
                self._found_lost(lost)
        self.stats.packets += 1
        self.stats.bytes += len(packet.data)
        self.cache.put(packet)
        self.last_seen = arrival
        keyframe = self._is_keyframe is not None and self._is_keyframe(packet)
        vp8 = packet.vp8
        if self.highest_seq is None or seq_newer(packet.sequence_number, self.highest_seq):
            self.highest_seq = packet.sequence_number
            self.highest_ts = packet.timestamp
            self.last_arrival = arrival
            self.highest_vp8 = vp8
        meter = self.meter
        if vp8 is not None:
            meter.tid_octets[vp8.tid if vp8.tid > 0 else 0] += len(packet.data)
            if vp8.start:
                meter.frames += 1
                if vp8.tid > 0:
                    meter.tids |= 1 << vp8.tid
        elif packet.marker:
            meter.frames += 1
        if keyframe:
            if vp8 is not None and vp8.width:
                meter.width = vp8.width
                meter.height = vp8.height
            self.stats.keyframes += 1
            self._keyframe_seq = packet.sequence_number
            self._keyframe_at = self._now()
        for consumer in self.consumers:
            consumer.forward(packet, keyframe)

    def on_sender_report(
        self, sender_time: float, rtp_timestamp: int, arrival: float, ssrc: int | None = None
    ) -> None:
        if ssrc is not None and self.ssrc is not None and ssrc != self.ssrc:
            return  # another stream's (a retransmission stream's, or a restarted one's)
        self._sender_clock.observe(sender_time, arrival)
        self._sender_report = (sender_time, rtp_timestamp)

    def downstream_loss(self) -> float:
        """The worst loss (0..1) the classrooms fed by this producer report: told upstream
        in the receiver reports of a sound stream, so that the teacher's Opus encoder adds
        in-band FEC."""
        worst = 0.0
        for consumer in self.consumers:
            quality = getattr(consumer, "quality", None)
            if quality is not None and quality.reports:
                worst = max(worst, quality.fraction_lost)
        return worst

    def rtp_timestamp_at(self, wall_time: float) -> int | None:
        """This stream's RTP timestamp at ``wall_time`` on the server's clock, if known."""
        if self.timed_by is not None:
            return self.timed_by.rtp_timestamp_at(wall_time)
        rate = self.codec.clock_rate
        if self._sender_report is not None:
            sender_time, rtp_timestamp = self._sender_report
            local = self._sender_clock.to_local(sender_time)
            if local is not None:
                return (rtp_timestamp + round((wall_time - local) * rate)) & 0xFFFFFFFF
        if self.last_arrival is None:
            return None
        return (self.highest_ts + round((wall_time - self.last_arrival) * rate)) & 0xFFFFFFFF

    def sender_report_mapping(self) -> tuple[float, int] | None:
        """The publisher's latest sender report as (its time on the server's clock, RTP
        timestamp), or None before the first one: what a recording needs to keep this
        publisher's tracks in sync."""
        if self._sender_report is None:
            return None
        sender_time, rtp_timestamp = self._sender_report
        local = self._sender_clock.to_local(sender_time)
        return None if local is None else (local, rtp_timestamp)

    # feedback

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per interval however often called.

        The interval runs from the last request and from the start of the last keyframe,
        whether asked for or the publisher's own: a classroom that joins within it starts on
        that keyframe from the cache (replay_keyframe), and one that asks all the time would
        otherwise add two keyframes a second to those of the publisher's encoder."""
        if self.kind != "video" or self.closed:
            return
        now = self._now()
        wait = self._next_request_at() - now
        if wait <= 0:
            self._send_keyframe_request(now)
        else:
            # Deferred, not dropped: whoever asked must still get a keyframe.
            self._defer_keyframe_request(wait)

    def _next_request_at(self) -> float:
        return max(self._last_keyframe_request, self._keyframe_at) + KEYFRAME_REQUEST_INTERVAL_S

    def _defer_keyframe_request(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        # what the deferred request waits for: a keyframe that starts after this request (one
        # that came after an earlier request, before this one, does not answer it)
        self._keyframes_at_request = self.stats.keyframes
        pending = self._pending_keyframe_request
        if pending is not None:
            if pending.when() <= loop.time() + delay:
                return
            pending.cancel()  # a sooner request supersedes a later retry
        self._pending_keyframe_request = loop.call_later(delay, self._flush_keyframe_request)

    def _flush_keyframe_request(self) -> None:
        self._pending_keyframe_request = None
        if self.closed:
            return
        waiting = any(c.waiting_for_keyframe for c in self.consumers)
        if waiting or self.stats.keyframes == self._keyframes_at_request:
            now = self._now()
            early = self._next_request_at() - now
            if early > 0:  # timers may fire a little ahead: the interval is a promise
                self._defer_keyframe_request(early)
                return
            self._send_keyframe_request(now)

    def _send_keyframe_request(self, now: float) -> None:
        self._last_keyframe_request = now
        if self.ssrc is not None:
            self.stats.keyframe_requests += 1
            self._upstream.request_keyframe(self.ssrc)
        if any(c.waiting_for_keyframe for c in self.consumers):
            self._defer_keyframe_request(KEYFRAME_RETRY_S)

    def replay_keyframe(self, sink: Sink) -> bool:
        """Feed ``sink`` from the newest keyframe on, if that keyframe is recent enough.

        A classroom that joins within one request interval after a keyframe would otherwise
        wait for the next request to be allowed; the packets since are still in the cache,
        and at most that interval's worth is sent at once."""
        start = self._keyframe_seq
        if (
            start is None
            or self.highest_seq is None
            or self._now() - self._keyframe_at > KEYFRAME_REQUEST_INTERVAL_S
            or self.cache.get(start) is None
        ):
            return False
        stamp = send_stamp(time.time())
        for offset in range(((self.highest_seq - start) & 0xFFFF) + 1):
            packet = self.cache.get((start + offset) & 0xFFFF)
            if packet is not None:
                if packet.send_time_at:
                    packet.send_stamp = stamp  # it leaves now, not when it first came
                sink.forward(packet, offset == 0)
        return True

    def _found_lost(self, lost: list[int]) -> None:
        pass_on_after = self._pass_on_after
        if len(pass_on_after) > 2 * MAX_MISSING and self._losses is not None:
            missing = self._losses.missing
            self._pass_on_after = pass_on_after = {
                s: t for s, t in pass_on_after.items() if s in missing
            }
        after = self._now() + UPSTREAM_NACK_RETRY_S
        for seq in lost:
            pass_on_after[seq] = after

    def request_retransmission(self, sequence_numbers: list[int]) -> int:
        """Classrooms ask for packets that are not in the cache: pass on to the publisher
        those the server never got and still waits for, each once at most (packets too old
        for the cache, or not sent yet, the publisher is not asked for). Returns how many
        were passed on."""
        losses = self._losses
        if self.ssrc is None or losses is None:
            return 0
        missing = losses.missing
        pass_on_after = self._pass_on_after
        now = self._now()
        ask = []
        for seq in sequence_numbers:
            if seq in missing and pass_on_after.get(seq, now) <= now:
                pass_on_after[seq] = math.inf
                ask.append(seq)
        if ask:
            self.stats.nacks += len(ask)
            self._upstream.send_nack(self.ssrc, ask)
        return len(ask)

    # layers

    def add_layer(self, layer: Producer) -> None:
        """Group ``layer`` (another stream of this source) under this producer."""
        layer.group = self
        self.layers = [*self.layers, layer]

    def remove_layer(self, layer: Producer) -> None:
        """Take ``layer`` out of this group (it stops: a made layer no longer needed)."""
        if layer is not self and layer in self.layers:
            self.layers = [other for other in self.layers if other is not layer]

    def ranked_layers(self) -> list[Producer]:
        """This source's layers that are sending now, best first."""
        return ranked(self.layers, time.time())

    def follow(self, sink: Sink) -> None:
        if sink not in self.followers:
            self.followers = [*self.followers, sink]

    def unfollow(self, sink: Sink) -> None:
        if sink in self.followers:
            self.followers = [f for f in self.followers if f is not sink]

    def layers_changed(self) -> None:
        for sink in self.followers:
            sink.reselect_layer()

    # consumers

    def add_consumer(self, consumer: Sink) -> None:
        if consumer not in self.consumers:
            # a new list, so that a fan-out loop in progress is not disturbed
            self.consumers = [*self.consumers, consumer]

    def remove_consumer(self, consumer: Sink) -> None:
        if consumer in self.consumers:
            self.consumers = [c for c in self.consumers if c is not consumer]

    def _switch_codec(self, codec: Codec) -> None:
        logger.info("producer %s switches codec %s -> %s", self.id, self.codec.name, codec.name)
        self.codec = codec
        self._is_keyframe = keyframe_detector(codec.mime_type)
        self.cache.clear()
        # the last keyframe was in the other codec: it serves nobody now
        self._keyframe_seq = None
        self._keyframe_at = -1e9
        for consumer in self.consumers:
            consumer.bind(self.group)  # matches the new codec and waits for its first keyframe

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._pending_keyframe_request is not None:
            self._pending_keyframe_request.cancel()
            self._pending_keyframe_request = None
        for layer in self.layers:
            if layer is not self:
                layer.close()
        consumers, self.consumers = self.consumers, []
        for consumer in consumers:
            consumer.unbind(self)
        followers, self.followers = self.followers, []
        for follower in followers:
            follower.unbind(self)
        self.cache.clear()
