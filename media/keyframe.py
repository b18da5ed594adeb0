"""Whether an RTP payload starts a keyframe, for each video codec the SFU forwards."""

from __future__ import annotations

from collections.abc import Callable

from .rtp_packet import RtpPacket
from .vp8 import inspect_vp8

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28


def vp8_keyframe_start(packet: RtpPacket) -> bool:
    """RFC 7741: the first partition of a frame whose VP8 header has P (inter) clear."""
    data = packet.data
    pos = packet.payload_offset
    end = packet.payload_end
    if pos >= end:
        return False
    descriptor = data[pos]
    if not descriptor & 0x10 or descriptor & 0x07:  # S bit clear, or not partition 0
        return False
    pos += 1
    if descriptor & 0x80:  # X: extended control bits
        if pos >= end:
            return False
        ext = data[pos]
        pos += 1
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= end:
                return False
            pos += 2 if data[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    return pos < end and not data[pos] & 0x01


def h264_keyframe_start(packet: RtpPacket) -> bool:
    """RFC 6184: an IDR slice or a sequence parameter set begins in this packet."""
    data = packet.data
    pos = packet.payload_offset
    end = packet.payload_end
    if pos >= end:
        return False
    nal_type = data[pos] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == _H264_STAP_A:
        pos += 1
        while pos + 2 < end:
            size = (data[pos] << 8) | data[pos + 1]
            if size == 0:
                return False
            if data[pos + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            pos += 2 + size
        return False
    if nal_type == _H264_FU_A:
        if pos + 1 >= end:
            return False
        fu_header = data[pos + 1]
        return bool(fu_header & 0x80) and fu_header & 0x1F in (_H264_IDR, _H264_SPS)
    return False


def keyframe_detector(mime_type: str) -> Callable[[RtpPacket], bool] | None:
    """The detector for a video codec, or None for codecs without keyframes (audio). VP8's
    also keeps the packet's payload descriptor with it (``packet.vp8``)."""
    return _DETECTORS.get(mime_type.lower())


_DETECTORS: dict[str, Callable[[RtpPacket], bool]] = {
    "video/vp8": inspect_vp8,
    "video/h264": h264_keyframe_start,
}
