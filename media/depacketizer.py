"""From RTP payloads in sequence order back to the encoded frames the publisher sent (for the
recording, and for a layer made from a single-layer source).

VP8 (RFC 7741) and H.264 (RFC 6184: single NAL units, STAP-A, FU-A) frames are rebuilt
byte for byte; nothing is decoded. A frame with a missing packet, and every frame after it
up to the next keyframe, is left out: a decoder would only show corrupt pictures, and a
player seeking into the recording must never land on one.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# One packet of a segment: (sequence number and timestamp, both extended past their wrap,
# marker bit, payload). A tuple, for the same reason as packet_log.Packet.
RtpItem = tuple[int, int, bool, "bytes | memoryview"]


@dataclass(frozen=True, slots=True)
class Frame:
    timestamp: int  # extended RTP timestamp
    keyframe: bool
    data: bytes


@dataclass(slots=True)
class _Part:
    """What one packet contributes to its frame."""

    data: list[bytes]
    starts_frame: bool  # the first packet of a frame (VP8 S bit / not an FU-A continuation)
    keyframe: bool
    valid: bool


# --- VP8 ---------------------------------------------------------------------------------


def _vp8_part(payload: bytes | memoryview) -> _Part:
    size = len(payload)
    if size < 1:
        return _Part([], False, False, False)
    descriptor = payload[0]
    pos = 1
    if descriptor & 0x80:  # X
        if pos >= size:
            return _Part([], False, False, False)
        ext = payload[pos]
        pos += 1
        if ext & 0x80:  # I: picture id
            if pos >= size:
                return _Part([], False, False, False)
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L
            pos += 1
        if ext & 0x30:  # T or K
            pos += 1
    if pos > size:
        return _Part([], False, False, False)
    starts = bool(descriptor & 0x10) and descriptor & 0x07 == 0
    keyframe = starts and pos < size and not payload[pos] & 0x01
    return _Part([bytes(payload[pos:])], starts, keyframe, True)


def vp8_frame_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 section 9.1)."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


# --- H.264 -------------------------------------------------------------------------------

_START_CODE = b"\x00\x00\x00\x01"
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
_STAP_A = 24
_FU_A = 28


class H264Depacketizer:
    """Keeps the latest parameter sets so that every keyframe it emits can be decoded alone."""

    def __init__(self, parameters: dict[str, object] | None = None) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        sprop = (parameters or {}).get("sprop-parameter-sets")
        if isinstance(sprop, str):
            for item in sprop.split(","):
                try:
                    nal = base64.b64decode(item, validate=False)
                except ValueError:
                    continue
                self._remember(nal)

    def _remember(self, nal: bytes) -> None:
        if nal:
            if nal[0] & 0x1F == NAL_SPS:
                self.sps = nal
            elif nal[0] & 0x1F == NAL_PPS:
                self.pps = nal

    def part(self, payload: bytes | memoryview) -> _Part:
        size = len(payload)
        if size < 1:
            return _Part([], False, False, False)
        nal_type = payload[0] & 0x1F
        if 1 <= nal_type <= 23:
            nal = bytes(payload)
            self._remember(nal)
            return _Part([_START_CODE, nal], True, nal_type == NAL_IDR, True)
        if nal_type == _STAP_A:
            out: list[bytes] = []
            keyframe = False
            pos = 1
            while pos + 2 <= size:
                length = (payload[pos] << 8) | payload[pos + 1]
                pos += 2
                if length == 0 or pos + length > size:
                    return _Part([], True, False, False)
                nal = bytes(payload[pos : pos + length])
                pos += length
                self._remember(nal)
                keyframe = keyframe or nal[0] & 0x1F == NAL_IDR
                out += (_START_CODE, nal)
            return _Part(out, True, keyframe, pos == size)
        if nal_type == _FU_A:
            if size < 2:
                return _Part([], False, False, False)
            header = payload[1]
            inner = header & 0x1F
            if header & 0x80:  # start of the fragmented unit
                nal_header = bytes([(payload[0] & 0xE0) | inner])
                return _Part([_START_CODE, nal_header, bytes(payload[2:])], True, inner == 5, True)
            return _Part([bytes(payload[2:])], False, False, True)
        return _Part([], True, False, False)  # STAP-B, MTAP, FU-B: not used by WebRTC

    def complete_keyframe(self, data: bytes) -> bytes:
        """Put the parameter sets in front of a keyframe that lacks them in-band."""
        types = _nal_types(data)
        prefix = b""
        if NAL_SPS not in types and self.sps is not None:
            prefix += _START_CODE + self.sps
        if NAL_PPS not in types and self.pps is not None:
            prefix += _START_CODE + self.pps
        return prefix + data

    def can_decode_keyframe(self, data: bytes) -> bool:
        types = _nal_types(data)
        return NAL_SPS in types and NAL_PPS in types


def _nal_types(annexb: bytes) -> set[int]:
    types = set()
    pos = annexb.find(_START_CODE)
    while pos >= 0 and pos + 4 < len(annexb):
        types.add(annexb[pos + 4] & 0x1F)
        pos = annexb.find(_START_CODE, pos + 4)
    return types


# --- framing -----------------------------------------------------------------------------


class Framer:
    """Packets of one segment in sequence order in, whole frames of an unbroken chain out."""

    def __init__(self, codec: str, parameters: dict[str, object] | None = None) -> None:
        self.codec = codec
        self._chain_ok = False  # the previous emitted frame is the one right before the next
        self._last_seq: int | None = None  # last packet of the previous frame
        self._group: list[tuple[RtpItem, _Part]] = []
        self._h264: H264Depacketizer | None = None
        if codec == "VP8":
            self._part_of: Callable[[bytes | memoryview], _Part] = _vp8_part
        elif codec == "H264":
            self._h264 = H264Depacketizer(parameters)
            self._part_of = self._h264.part
        else:
            raise ValueError(f"no depacketizer for {codec}")

    def push(self, items: Iterable[RtpItem]) -> list[Frame]:
        frames: list[Frame] = []
        group = self._group
        part_of = self._part_of
        for item in items:
            if group and item[1] != group[0][0][1]:
                self._flush(item[0], frames)
                group = self._group = []
            group.append((item, part_of(item[3])))
        return frames

    def end(self) -> list[Frame]:
        """The last frame, once no packet can follow it any more."""
        frames: list[Frame] = []
        if self._group:
            self._flush(None, frames)
            self._group = []
        return frames

    def _flush(self, next_seq: int | None, frames: list[Frame]) -> None:
        group = self._group
        first, first_part = group[0]
        first_seq, timestamp = first[0], first[1]
        last = group[-1][0]
        contiguous = last[0] - first_seq == len(group) - 1
        ends = last[2] or (next_seq is not None and next_seq == last[0] + 1)
        whole = contiguous and ends and first_part.starts_frame and all(p.valid for _, p in group)
        follows = self._last_seq is not None and first_seq == self._last_seq + 1
        self._last_seq = last[0]
        keyframe = any(p.keyframe for _, p in group)
        if not whole or not (keyframe or (self._chain_ok and follows)):
            self._chain_ok = False
            return
        data = b"".join([chunk for _, part in group for chunk in part.data])
        if keyframe and self._h264 is not None:
            data = self._h264.complete_keyframe(data)
            if not self._h264.can_decode_keyframe(data):
                self._chain_ok = False  # no parameter sets seen yet: wait for the next one
                return
        self._chain_ok = True
        frames.append(Frame(timestamp, keyframe, data))


def opus_frames(items: Iterable[RtpItem]) -> list[Frame]:
    return [Frame(ts, True, bytes(payload)) for _, ts, _, payload in items if len(payload)]


# Samples per Opus frame at 48 kHz by TOC configuration (RFC 6716 section 3.1).
_OPUS_FRAME_SAMPLES = [480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4


def opus_samples(packet: bytes) -> int:
    """How many 48 kHz samples an Opus packet decodes to (960 for a usual 20 ms packet)."""
    if not packet:
        return 0
    toc = packet[0]
    per_frame = _OPUS_FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = packet[1] & 0x3F if len(packet) > 1 else 0
    return per_frame * count
