"""Simulcast ingest: the offer's ``a=rid``/``a=simulcast`` read and echoed in the answer, and
one video receiver's streams told apart by their ``rid`` header extension, each becoming a
layer of the source (media.layers).

Publishers name the streams as they like and announce no SSRCs for them (RFC 8853): a stream
is known by the rid in its first packets (the repaired rid for its retransmissions), and
streams come and go while the publisher adapts to its uplink.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from .drops import DROPPED
from .producer import Producer
from .rtp_packet import RtpPacket

logger = logging.getLogger(__name__)

RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MAX_LAYERS = 4  # a publisher's streams kept apart; more rids are refused in the offer
MAX_STREAMS = 16  # SSRCs learned for one receiver (media and retransmission, over restarts)
MAX_RID_LENGTH = 16  # RFC 8851 allows longer; nobody sends them
CHECK_INTERVAL_S = 0.5  # how often the layers' ranking is looked at again


@dataclass
class SimulcastOffer:
    """What the video section of a publishing offer says about simulcast."""

    mid: str | None
    rids: list[str]  # in the offer's order (not quality order)
    extension_ids: dict[str, int] = field(default_factory=dict)  # uri -> id, rid ones only


def read_simulcast_offer(sdp: str) -> SimulcastOffer | None:
    """The video section's sending simulcast, if the offer has one (with rid extensions)."""
    in_video = False
    mid: str | None = None
    rids: list[str] = []
    send: list[str] | None = None
    extensions: dict[str, int] = {}
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if in_video:
                break
            in_video = line.startswith("m=video")
            continue
        if not in_video or not line.startswith("a="):
            continue
        attribute = line[2:]
        if attribute.startswith("mid:"):
            mid = attribute[4:].strip()
        elif attribute.startswith("rid:"):
            parts = attribute[4:].split()
            if len(parts) >= 2 and parts[1] == "send" and _valid_rid(parts[0]):
                rids.append(parts[0])
        elif attribute.startswith("simulcast:"):
            parts = attribute[10:].split()
            if len(parts) >= 2 and parts[0] == "send":
                send = [
                    alternative.lstrip("~")
                    for stream in parts[1].split(";")
                    for alternative in stream.split(",")[:1]  # the first of alternatives
                ]
        elif attribute.startswith("extmap:"):
            parts = attribute[7:].split()
            if len(parts) >= 2 and parts[1] in (RID, REPAIRED_RID):
                ext_id = parts[0].split("/", 1)[0]
                if ext_id.isdigit() and 0 < int(ext_id) < 256:
                    extensions[parts[1]] = int(ext_id)
    if send is None or RID not in extensions:
        return None
    chosen = [rid for rid in send if rid in rids][:MAX_LAYERS]
    if len(chosen) < 2:
        return None  # one stream: nothing to choose from, received as without simulcast
    return SimulcastOffer(mid, chosen, extensions)


def _valid_rid(rid: str) -> bool:
    return 0 < len(rid) <= MAX_RID_LENGTH and rid.replace("-", "").replace("_", "").isalnum()


def answer_simulcast(answer: str, offer: SimulcastOffer) -> str:
    """``answer`` with its video section receiving the offered streams (``a=rid:… recv`` and
    ``a=simulcast:recv``): without them a browser sends one stream only."""
    lines = answer.split("\r\n") if "\r\n" in answer else answer.split("\n")
    out: list[str] = []
    in_video = False
    added = False

    def add() -> None:
        nonlocal added
        if in_video and not added:
            out.extend(f"a=rid:{rid} recv" for rid in offer.rids)
            out.append("a=simulcast:recv " + ";".join(offer.rids))
            added = True

    for line in lines:
        if line.startswith("m="):
            add()
            in_video = line.startswith("m=video")
        elif line == "" and in_video:
            add()
        out.append(line)
    add()
    newline = "\r\n" if "\r\n" in answer else "\n"
    return newline.join(out)


def extension_value(packet: RtpPacket, ext_id: int) -> bytes | None:
    """The value of header extension ``ext_id`` in ``packet``, if it has one."""
    data = packet.data
    for pos, found in packet.extensions:
        if found != ext_id:
            continue
        if packet.two_byte_extensions:
            return data[pos + 2 : pos + 2 + data[pos + 1]]
        return data[pos + 1 : pos + 2 + (data[pos] & 0x0F)]
    return None


class SimulcastIngress:
    """The ingress sink of one simulcast video receiver: routes each stream to its layer.

    The first rid seen is given to ``group`` (the producer the router already knows); each
    further rid gets a producer of its own from ``make_layer``. Implements
    ``media.aiortc_adapter.rtp_reader.IngressSink``."""

    def __init__(
        self,
        group: Producer,
        offer: SimulcastOffer,
        make_layer: Callable[[str], Producer],
    ) -> None:
        self.group = group
        self._rids = set(offer.rids)
        self._rid_id = offer.extension_ids.get(RID, 0)
        self._repaired_id = offer.extension_ids.get(REPAIRED_RID, 0)
        self._make_layer = make_layer
        self._by_ssrc: dict[int, Producer] = {}
        self._by_rid: dict[str, Producer] = {}
        self._ranking: list[Producer] = []
        self._timer: asyncio.TimerHandle | None = None

    def on_rtp(self, packet: RtpPacket, arrival: float) -> None:
        layer = self._by_ssrc.get(packet.ssrc)
        if layer is None:
            layer = self._learn(packet)
            if layer is None:
                DROPPED.add("unrouted")
                return
        layer.on_rtp(packet, arrival)

    def on_sender_report(
        self, sender_time: float, rtp_timestamp: int, arrival: float, ssrc: int | None = None
    ) -> None:
        layer = self._by_ssrc.get(ssrc) if ssrc is not None else None
        if layer is not None:
            layer.on_sender_report(sender_time, rtp_timestamp, arrival)

    def downstream_loss(self) -> float:
        """The worst loss the classrooms fed by any layer report (a video stream: not told
        upstream today, but kept to the ``IngressSink`` contract)."""
        return max((layer.downstream_loss() for layer in self._by_rid.values()), default=0.0)

    def _learn(self, packet: RtpPacket) -> Producer | None:
        """The layer of a stream not seen before, from the rid its packet carries."""
        if len(self._by_ssrc) >= MAX_STREAMS or self.group.closed:
            return None
        repaired = False
        value = extension_value(packet, self._rid_id) if self._rid_id else None
        if value is None and self._repaired_id:
            value = extension_value(packet, self._repaired_id)
            repaired = value is not None
        if value is None:
            return None
        rid = value.decode("ascii", "replace")
        layer = self._by_rid.get(rid)
        if layer is None:
            if repaired or rid not in self._rids:
                return None  # a retransmission before its stream; or a rid never offered
            layer = self._new_layer(rid)
        self._by_ssrc[packet.ssrc] = layer
        return layer

    def _new_layer(self, rid: str) -> Producer:
        group = self.group
        if not self._by_rid:
            group.rid = rid
            layer = group
        else:
            layer = self._make_layer(rid)
            group.add_layer(layer)
        self._by_rid[rid] = layer
        logger.info("producer %s: simulcast layer %s", group.id, rid)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(CHECK_INTERVAL_S, self._check)
        return layer

    def _check(self) -> None:
        """Tell the source's sinks when a layer came, went, or the best one changed."""
        self._timer = None
        group = self.group
        if group.closed:
            return
        ranking = group.ranked_layers()
        if ranking != self._ranking:
            self._ranking = ranking
            group.layers_changed()
        self._timer = asyncio.get_running_loop().call_later(CHECK_INTERVAL_S, self._check)
