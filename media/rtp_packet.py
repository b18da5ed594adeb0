"""RTP packets as bytes: parse a header once on ingress, rewrite copies per consumer."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .vp8 import Vp8Descriptor

_HEADER = struct.Struct("!BBHII")
_REWRITE = struct.Struct("!BHII")  # marker|payload type, sequence, timestamp, ssrc at offset 1
_U16 = struct.Struct("!H")

# RFC 8285 header extension profiles.
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0xFFF0
TWO_BYTE_PROFILE = 0x1000


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


class RtpPacket:
    """One received RTP packet: the plaintext bytes and the header fields read from them.

    Attribute names follow aiortc's ``RtpPacket`` so its NACK generator and receive statistics
    accept this lighter object.
    """

    __slots__ = (
        "data",
        "marker",
        "payload_type",
        "sequence_number",
        "timestamp",
        "ssrc",
        "payload_offset",
        "payload_end",
        "extensions",
        "two_byte_extensions",
        "vp8",
        "send_time_at",
        "send_stamp",
        "_renumbered",
    )

    def __init__(
        self,
        data: bytes,
        marker: int,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        payload_offset: int,
        payload_end: int,
        extensions: tuple[tuple[int, int], ...],
        two_byte_extensions: bool,
    ) -> None:
        self.data = data
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload_offset = payload_offset
        self.payload_end = payload_end
        # (offset of the element's id byte, id) for each header extension element
        self.extensions = extensions
        self.two_byte_extensions = two_byte_extensions
        # the VP8 payload descriptor, read once by the producer (media.vp8)
        self.vp8: Vp8Descriptor | None = None
        # where the 3 bytes of its abs-send-time are (0: none), re-stamped as it leaves
        self.send_time_at = 0
        self.send_stamp = b""  # the abs-send-time it leaves with, stamped as the fan-out starts
        self._renumbered: dict[bytes, bytes] | None = None

    def egress_data(self, extension_ids: bytes | None) -> bytes:
        """``data`` with its header extension ids mapped through ``extension_ids``.

        Consumers on the same kind of browser share one table, so this is worked out once per
        packet and table rather than once per consumer."""
        if extension_ids is None or not self.extensions:
            return self.data
        cache = self._renumbered
        if cache is None:
            cache = self._renumbered = {}
        data = cache.get(extension_ids)
        if data is None:
            data = cache[extension_ids] = _renumber(self, extension_ids)
        return data

    @property
    def payload(self) -> bytes:
        return self.data[self.payload_offset : self.payload_end]

    @property
    def payload_size(self) -> int:
        return self.payload_end - self.payload_offset

    def __repr__(self) -> str:
        return (
            f"RtpPacket(pt={self.payload_type}, seq={self.sequence_number}, "
            f"ts={self.timestamp}, ssrc={self.ssrc}, size={len(self.data)})"
        )


def parse_rtp(data: bytes) -> RtpPacket:
    """Read the RTP header of ``data``; raise RtpError on anything malformed."""
    size = len(data)
    if size < 12:
        raise RtpError("RTP packet shorter than its fixed header")
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise RtpError("RTP version is not 2")
    offset = 12 + 4 * (first & 0x0F)
    extensions: tuple[tuple[int, int], ...] = ()
    two_byte = False
    if first & 0x10:
        if offset + 4 > size:
            raise RtpError("RTP header extension truncated")
        profile, words = struct.unpack_from("!HH", data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > size:
            raise RtpError("RTP header extension longer than the packet")
        if profile == ONE_BYTE_PROFILE:
            extensions = _one_byte_elements(data, start, offset)
        elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
            extensions = _two_byte_elements(data, start, offset)
            two_byte = True
    end = size
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or end - padding < offset:
            raise RtpError("RTP padding is invalid")
        end -= padding
    if offset > end:
        raise RtpError("RTP header longer than the packet")
    return RtpPacket(
        data, second >> 7, second & 0x7F, seq, timestamp, ssrc, offset, end, extensions, two_byte
    )


def _one_byte_elements(data: bytes, pos: int, end: int) -> tuple[tuple[int, int], ...]:
    elements = []
    while pos < end:
        byte = data[pos]
        if byte == 0:  # padding between elements
            pos += 1
            continue
        ext_id = byte >> 4
        if ext_id == 15:  # reserved: stop reading (RFC 8285 section 4.2)
            break
        elements.append((pos, ext_id))
        pos += 2 + (byte & 0x0F)
    if pos > end:
        raise RtpError("RTP header extension element overruns the block")
    return tuple(elements)


def _two_byte_elements(data: bytes, pos: int, end: int) -> tuple[tuple[int, int], ...]:
    elements = []
    while pos < end:
        ext_id = data[pos]
        if ext_id == 0:
            pos += 1
            continue
        if pos + 1 >= end:
            raise RtpError("RTP header extension element overruns the block")
        elements.append((pos, ext_id))
        pos += 2 + data[pos + 1]
    if pos > end:
        raise RtpError("RTP header extension element overruns the block")
    return tuple(elements)


def rewrite_into(
    buffer: bytearray | memoryview | Any,
    packet: RtpPacket,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    extension_ids: bytes | None,
) -> int:
    """Write ``packet`` with a new header into the writable ``buffer``; return its size.

    ``extension_ids`` maps ingress header extension ids to egress ones. This is the
    per-packet, per-consumer work of the SFU: one copy and a few bytes changed in place (the
    renumbered extension ids come from ``packet.egress_data``, worked out once per table).
    """
    data = packet.egress_data(extension_ids)
    size = len(data)
    buffer[:size] = data
    _REWRITE.pack_into(
        buffer, 1, (packet.marker << 7) | payload_type, sequence_number, timestamp, ssrc
    )
    return size


def _renumber(packet: RtpPacket, extension_ids: bytes) -> bytes:
    data = bytearray(packet.data)
    if packet.two_byte_extensions:
        for pos, ext_id in packet.extensions:
            data[pos] = extension_ids[ext_id]
    else:
        for pos, ext_id in packet.extensions:
            data[pos] = (extension_ids[ext_id] << 4) | (data[pos] & 0x0F)
    return bytes(data)


def rewrite(
    packet: RtpPacket,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    extension_ids: bytes | None,
) -> bytes:
    """A copy of ``packet`` with a new header (see rewrite_into)."""
    return bytes(_rewritten(packet, payload_type, sequence_number, timestamp, ssrc, extension_ids))


def _rewritten(
    packet: RtpPacket,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    extension_ids: bytes | None,
) -> bytearray:
    buf = bytearray(len(packet.data))
    rewrite_into(buf, packet, payload_type, sequence_number, timestamp, ssrc, extension_ids)
    return buf


def wrap_rtx(
    packet: RtpPacket,
    payload_type: int,
    rtx_sequence_number: int,
    original_sequence_number: int,
    timestamp: int,
    rtx_ssrc: int,
    extension_ids: bytes | None,
) -> bytes:
    """Build an RFC 4588 retransmission of ``packet`` (its payload prefixed by the OSN)."""
    header = _rewritten(
        packet, payload_type, rtx_sequence_number, timestamp, rtx_ssrc, extension_ids
    )
    del header[packet.payload_offset :]
    header[0] &= ~0x20  # the original padding is not carried over
    header += _U16.pack(original_sequence_number)
    header += packet.data[packet.payload_offset : packet.payload_end]
    return bytes(header)


def unwrap_rtx(rtx: RtpPacket, payload_type: int, ssrc: int) -> RtpPacket:
    """Recover the original packet from an RFC 4588 retransmission."""
    if rtx.payload_size < 2:
        raise RtpError("RTX packet without an original sequence number")
    osn = _U16.unpack_from(rtx.data, rtx.payload_offset)[0]
    buf = bytearray(rtx.data[: rtx.payload_offset])
    buf[0] &= ~0x20
    _REWRITE.pack_into(buf, 1, (rtx.marker << 7) | payload_type, osn, rtx.timestamp, ssrc)
    buf += rtx.data[rtx.payload_offset + 2 : rtx.payload_end]
    data = bytes(buf)
    return RtpPacket(
        data,
        rtx.marker,
        payload_type,
        osn,
        rtx.timestamp,
        ssrc,
        rtx.payload_offset,
        len(data),
        rtx.extensions,
        rtx.two_byte_extensions,
    )


ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def send_time_offset(packet: RtpPacket, extension_id: int) -> int:
    """Where the 3 bytes of ``packet``'s abs-send-time element (``extension_id``) are, or 0."""
    two_byte = packet.two_byte_extensions
    data = packet.data
    for pos, ext_id in packet.extensions:
        if ext_id == extension_id:
            if two_byte:
                return pos + 2 if data[pos + 1] == 3 else 0
            return pos + 1 if data[pos] & 0x0F == 2 else 0
    return 0


def send_time_now(unix_time: float) -> int:
    """abs-send-time (6.18 fixed-point seconds, 24 bits) on the NTP time scale."""
    return int((unix_time + 2208988800) * 262144) & 0xFFFFFF


def send_stamp(unix_time: float) -> bytes:
    """abs-send-time as the 3 bytes of its header extension element."""
    return send_time_now(unix_time).to_bytes(3, "big")


def seq_newer(a: int, b: int) -> bool:
    """Whether 16-bit sequence number ``a`` comes after ``b`` (serial arithmetic)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000
