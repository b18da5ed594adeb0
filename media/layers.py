"""A source's video layers: what each one measures (resolution, frame rate, bitrate, temporal
layers seen), how they rank, which one a sink is fed, and the switch at a keyframe.

A layer is one inbound stream, i.e. one ``Producer``. A source that sends one stream has one
layer (the producer itself); a simulcast source has one producer per ``rid``, grouped under the
first one (``producer.group``), which is the producer the router knows.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .rtp_packet import RtpPacket

if TYPE_CHECKING:
    from .producer import Producer

MAX_TID = 3  # VP8 carries 2 bits of temporal layer id: 0..3
# A layer that has sent nothing for this long has vanished (the publisher dropped it).
LAYER_GONE_S = 1.0
# Rates are measured over about this window.
WINDOW_S = 2.0


class LayerMeter:
    """Counters a producer bumps per packet, turned into rates over a sliding window when
    someone asks (``rates``), so that the per-packet part is a few additions."""

    __slots__ = (
        "frames",
        "tids",
        "tid_octets",
        "width",
        "height",
        "_samples",
        "fps",
        "bitrate",
        "tid_bitrate",
    )

    def __init__(self) -> None:
        self.frames = 0  # frames started (VP8 descriptor S bit, else the RTP marker)
        self.tids = 0  # bit i set: temporal layer i seen
        # bytes per temporal layer (VP8; a stream without temporal layers is all layer 0)
        self.tid_octets = [0] * (MAX_TID + 1)
        self.width = 0  # of the newest keyframe, if the codec tells (VP8)
        self.height = 0
        # (time, bytes, frames, bytes per temporal layer)
        self._samples: deque[tuple[float, int, int, tuple[int, ...]]] = deque()
        self.fps = 0.0
        self.bitrate = 0.0  # bits per second
        self.tid_bitrate = [0.0] * (MAX_TID + 1)  # of each temporal layer alone

    def rates(self, now: float, total_bytes: int) -> tuple[float, float]:
        """(frames per second, bits per second) over the last ``WINDOW_S`` or so."""
        samples = self._samples
        samples.append((now, total_bytes, self.frames, tuple(self.tid_octets)))
        while len(samples) > 2 and now - samples[1][0] >= WINDOW_S:
            samples.popleft()
        then, octets, frames, tid_octets = samples[0]
        elapsed = now - then
        if elapsed > 0.2:
            self.fps = (self.frames - frames) / elapsed
            self.bitrate = (total_bytes - octets) * 8 / elapsed
            self.tid_bitrate = [
                (now_octets - old) * 8 / elapsed
                for now_octets, old in zip(self.tid_octets, tid_octets, strict=True)
            ]
        return self.fps, self.bitrate

    def bitrate_up_to(self, tid: int) -> float:
        """Bits per second of temporal layers 0..``tid`` (the whole stream when it has none)."""
        if self.tids == 0 or tid >= MAX_TID:
            return self.bitrate
        share = sum(self.tid_bitrate[: tid + 1])
        total = sum(self.tid_bitrate)
        # scaled to the whole stream's rate, which also counts what the descriptor does not
        return self.bitrate * share / total if total > 0 else 0.0

    @property
    def temporal_layers(self) -> int:
        return self.tids.bit_length() or 1


def available(layer: Producer, now: float) -> bool:
    """Whether ``layer`` is sending now."""
    return layer.last_seen is not None and now - layer.last_seen < LAYER_GONE_S


def ranked(layers: list[Producer], now: float) -> list[Producer]:
    """The layers that are sending, best first: what publishers send before what the server
    makes from it, then by the resolution of their keyframes, then their bitrate (never by
    rid: publishers name and order them as they like)."""
    live = [layer for layer in layers if not layer.closed and available(layer, now)]
    for layer in live:
        layer.meter.rates(now, layer.stats.bytes)
    return sorted(
        live,
        key=lambda p: (not p.made, p.meter.width * p.meter.height, p.meter.bitrate),
        reverse=True,
    )


# What a sink is fed from a source: (the spatial layer, the highest temporal layer). A
# classroom's send gate chooses per classroom (media.layer_choice); the recording takes the top.
LayerChoice = Callable[["Producer"], "tuple[Producer | None, int]"]


def top_layer(group: Producer) -> tuple[Producer | None, int]:
    """The best layer the publisher sends now (the group itself while nothing is), every
    temporal layer; never a layer made here (the recording keeps what the teacher sent)."""
    layers = [layer for layer in group.ranked_layers() if not layer.made]
    return (layers[0] if layers else group), MAX_TID


class KeyframeWatch:
    """Waits on a layer for its next keyframe and hands that packet to ``switch``: how a sink
    moves to another spatial layer without a gap or a broken picture. It sits among the
    layer's sinks (and counts as one waiting for a keyframe, so the producer's throttled
    requests are retried until one comes)."""

    __slots__ = ("layer", "_switch", "closed")

    def __init__(self, layer: Producer, switch: Callable[[Producer, RtpPacket], None]) -> None:
        self.layer = layer
        self._switch = switch
        self.closed = False
        layer.add_consumer(self)  # type: ignore[arg-type]  # the part of a Sink it needs
        layer.request_keyframe()

    @property
    def waiting_for_keyframe(self) -> bool:
        return not self.closed

    def forward(self, packet: RtpPacket, keyframe: bool) -> None:
        if keyframe and not self.closed:
            self.close()
            self._switch(self.layer, packet)

    def bind(self, producer: Producer) -> None:
        self.close()  # the layer changed codec: the owner chooses again

    def unbind(self, producer: Producer) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.layer.remove_consumer(self)  # type: ignore[arg-type]


def describe(layer: Producer, now: float) -> dict[str, object]:
    """One layer as the status API and the lesson's events show it."""
    fps, bitrate = layer.meter.rates(now, layer.stats.bytes)
    return {
        "rid": layer.rid,
        "width": layer.meter.width,
        "height": layer.meter.height,
        "fps": round(fps, 1),
        "bitrate": round(bitrate),
        "temporal_layers": layer.meter.temporal_layers,
        "active": available(layer, now),
        "made": layer.made,  # made here from the source's single layer (media.made_layer)
    }


def source_layers(producers: dict[tuple[str, str], Producer]) -> dict[str, list[dict[str, object]]]:
    """For each video source of a router's ``producers``, its layers (``describe``)."""
    now = time.time()
    return {
        source: [describe(layer, now) for layer in producer.layers]
        for (source, kind), producer in producers.items()
        if kind == "video"
    }
