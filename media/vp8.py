"""The VP8 payload descriptor (RFC 7741): read once per ingress packet, rewritten per consumer
only where a layer switch needs its picture numbering continued."""

from __future__ import annotations

from .rtp_packet import RtpPacket

NO_TID = -1  # a stream without temporal layer information: all of it is layer 0


class Vp8Descriptor:
    """What a VP8 packet says about its frame and layers.

    ``picture_id`` and ``tl0picidx`` are -1 when absent; ``*_at`` are their byte offsets in the
    packet's data (for rewriting in place). ``width``/``height`` are set on the first packet of
    a keyframe (0 otherwise)."""

    __slots__ = (
        "start",
        "keyframe",
        "picture_id",
        "picture_id_bits",
        "picture_id_at",
        "tl0picidx",
        "tl0picidx_at",
        "tid",
        "layer_sync",
        "width",
        "height",
    )

    def __init__(self) -> None:
        self.start = False  # the first packet of a frame (S set, partition 0)
        self.keyframe = False  # ... of a keyframe
        self.picture_id = -1
        self.picture_id_bits = 0  # 7 or 15
        self.picture_id_at = -1
        self.tl0picidx = -1
        self.tl0picidx_at = -1
        self.tid = NO_TID
        self.layer_sync = False
        self.width = 0
        self.height = 0

    def __repr__(self) -> str:
        return (
            f"Vp8Descriptor(start={self.start}, key={self.keyframe}, pid={self.picture_id}, "
            f"tl0={self.tl0picidx}, tid={self.tid}, y={self.layer_sync}, "
            f"{self.width}x{self.height})"
        )


def parse_vp8(data: bytes, pos: int, end: int) -> Vp8Descriptor | None:
    """The descriptor of the VP8 payload ``data[pos:end]``, or None if it is truncated."""
    if pos >= end:
        return None
    d = Vp8Descriptor()
    first = data[pos]
    pos += 1
    if first & 0x80:  # X: extended control bits
        if pos >= end:
            return None
        ext = data[pos]
        pos += 1
        if ext & 0x80:  # I: picture id
            if pos >= end:
                return None
            if data[pos] & 0x80:  # M: 15 bits
                if pos + 1 >= end:
                    return None
                d.picture_id = ((data[pos] & 0x7F) << 8) | data[pos + 1]
                d.picture_id_bits = 15
                d.picture_id_at = pos
                pos += 2
            else:
                d.picture_id = data[pos]
                d.picture_id_bits = 7
                d.picture_id_at = pos
                pos += 1
        if ext & 0x40:  # L: TL0PICIDX
            if pos >= end:
                return None
            d.tl0picidx = data[pos]
            d.tl0picidx_at = pos
            pos += 1
        if ext & 0x30:  # T or K: TID | Y | KEYIDX
            if pos >= end:
                return None
            if ext & 0x20:
                byte = data[pos]
                d.tid = byte >> 6
                d.layer_sync = bool(byte & 0x20)
            pos += 1
    if first & 0x10 and not first & 0x07:  # S, partition 0: the VP8 payload header
        d.start = True
        if pos < end and not data[pos] & 0x01:  # P clear: a keyframe
            d.keyframe = True
            # 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height
            if pos + 10 <= end and data[pos + 3 : pos + 6] == b"\x9d\x01\x2a":
                d.width = (data[pos + 6] | (data[pos + 7] << 8)) & 0x3FFF
                d.height = (data[pos + 8] | (data[pos + 9] << 8)) & 0x3FFF
    return d


def inspect_vp8(packet: RtpPacket) -> bool:
    """Parse ``packet``'s descriptor, keep it with the packet; whether a keyframe starts."""
    d = packet.vp8 = parse_vp8(packet.data, packet.payload_offset, packet.payload_end)
    return d is not None and d.keyframe


def write_numbering(buffer: bytearray, d: Vp8Descriptor, picture_id: int, tl0picidx: int) -> None:
    """Write a new picture id and TL0PICIDX into ``buffer`` (a copy of the packet's data),
    in the fields ``d`` found; the field widths stay as they are."""
    at = d.picture_id_at
    if at >= 0:
        if d.picture_id_bits == 15:
            buffer[at] = 0x80 | ((picture_id >> 8) & 0x7F)
            buffer[at + 1] = picture_id & 0xFF
        else:
            buffer[at] = picture_id & 0x7F
    if d.tl0picidx_at >= 0:
        buffer[d.tl0picidx_at] = tl0picidx & 0xFF


def renumbered(packet: RtpPacket, picture_id_delta: int, tl0picidx_delta: int) -> RtpPacket:
    """A copy of ``packet`` whose picture id and TL0PICIDX are moved on by these deltas (a
    consumer that switched layers continues the numbering it had sent)."""
    d = packet.vp8
    if d is None or (d.picture_id < 0 and d.tl0picidx < 0):
        return packet
    buffer = bytearray(packet.data)
    write_numbering(buffer, d, d.picture_id + picture_id_delta, d.tl0picidx + tl0picidx_delta)
    copy = RtpPacket(
        bytes(buffer),
        packet.marker,
        packet.payload_type,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
        packet.payload_offset,
        packet.payload_end,
        packet.extensions,
        packet.two_byte_extensions,
    )
    copy.vp8 = d
    copy.send_time_at = packet.send_time_at  # re-stamped as it leaves, like the original
    copy.send_stamp = packet.send_stamp
    return copy
