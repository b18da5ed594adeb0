"""Redundant sound (RED, RFC 2198) for a classroom whose link loses it: each Opus packet also
carries the one or two frames before it, so that a lost packet is rebuilt from the next one
that arrives, 20 ms later, instead of being concealed. Chrome offers ``red/48000/2`` with
``111/111`` (Opus in both blocks) and plays it; a classroom that does not offer it gets each
packet twice instead (send_gate's audio repeat).

A RED payload is a 4-byte header per redundant block (F=1, the block's payload type, its
timestamp offset before the primary's, its length), a 1-byte header for the primary (F=0,
payload type), then the redundant blocks, oldest first, then the primary.
"""

from __future__ import annotations

from collections import deque

from .codec import Codec
from .rtp_packet import RtpPacket

DISTANCE = 2  # earlier frames carried in each packet (as Chrome sends it)
MAX_OFFSET = 0x3FFF  # 14 bits of timestamp offset
MAX_BLOCK = 0x3FF  # 10 bits of block length


def red_payload_type(codecs: list[Codec], opus: int) -> int | None:
    """The payload type of a negotiated ``red`` whose blocks are all ``opus``, if any."""
    for codec in codecs:
        if codec.mime_type.lower() != "audio/red":
            continue
        formats = str(next(iter(codec.parameters), ""))
        if formats and all(f == str(opus) for f in formats.split("/")):
            return codec.payload_type
    return None


class Redundancy:
    """One consumer's recent Opus payloads, and RED packets made from them."""

    __slots__ = ("payload_type", "primary_type", "_recent")

    def __init__(self, payload_type: int, primary_type: int) -> None:
        self.payload_type = payload_type  # RED's, as the classroom negotiated it
        self.primary_type = primary_type  # Opus's, in each block header
        self._recent: deque[tuple[int, bytes]] = deque(maxlen=DISTANCE)

    def forget(self) -> None:
        """The source changed (its timestamps with it): nothing before is redundant."""
        self._recent.clear()

    def remember(self, packet: RtpPacket) -> None:
        """A packet sent without redundancy, so that the next RED packet can carry it."""
        payload = packet.data[packet.payload_offset : packet.payload_end]
        self._recent.append((packet.timestamp, payload))

    def wrap(self, packet: RtpPacket) -> RtpPacket:
        """``packet`` as RED: its payload as the primary block, the recent ones before it."""
        data = packet.data
        primary = data[packet.payload_offset : packet.payload_end]
        headers = bytearray()
        blocks = []
        for timestamp, payload in self._recent:
            offset = (packet.timestamp - timestamp) & 0xFFFFFFFF
            if 0 < offset <= MAX_OFFSET and len(payload) <= MAX_BLOCK:
                headers.append(0x80 | self.primary_type)
                headers += ((offset << 10) | len(payload)).to_bytes(3, "big")
                blocks.append(payload)
        self._recent.append((packet.timestamp, primary))
        headers.append(self.primary_type)
        first = data[0] & ~0x20  # no padding: the payload ends the packet
        body = bytes(headers) + b"".join(blocks) + primary
        out = bytes((first,)) + data[1 : packet.payload_offset] + body
        wrapped = RtpPacket(
            out,
            packet.marker,
            self.payload_type,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
            packet.payload_offset,
            len(out),
            packet.extensions,
            packet.two_byte_extensions,
        )
        wrapped.send_time_at = packet.send_time_at
        wrapped.send_stamp = packet.send_stamp
        return wrapped


def read_red(payload: bytes) -> list[tuple[int, int, bytes]]:
    """The blocks of a RED payload as (payload type, timestamp offset, data), oldest first;
    the primary last with offset 0. Raises ValueError on a malformed payload."""
    headers: list[tuple[int, int, int]] = []
    at = 0
    while True:
        if at >= len(payload):
            raise ValueError("RED payload ends in its headers")
        first = payload[at]
        if not first & 0x80:
            headers.append((first & 0x7F, 0, -1))
            at += 1
            break
        if at + 4 > len(payload):
            raise ValueError("RED block header cut short")
        rest = int.from_bytes(payload[at + 1 : at + 4], "big")
        headers.append((first & 0x7F, rest >> 10, rest & 0x3FF))
        at += 4
    out = []
    for payload_type, offset, length in headers:
        size = len(payload) - at if length < 0 else length
        if at + size > len(payload):
            raise ValueError("RED block runs past the payload")
        out.append((payload_type, offset, payload[at : at + size]))
        at += size
    return out
