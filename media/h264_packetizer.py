"""H.264 access units (Annex B or length-prefixed) into RTP packets for WebRTC, without
decoding: RFC 6184 packetization mode 1 (single NAL unit packets, FU-A for large units), the
parameter sets (SPS, PPS) in-band before every keyframe."""

from __future__ import annotations

import struct

NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_FILLER = 12
NAL_FU_A = 28

# what a NAL unit may take of one RTP payload: 1200-byte packets leave room for SRTP, the
# header extensions a consumer adds and the IP/UDP headers under any path MTU met in practice
MAX_PAYLOAD = 1188


def split_nal_units(data: bytes, length_size: int | None = None) -> list[bytes]:
    """The NAL units of one access unit: with ``length_size``, each prefixed with its length
    in that many bytes (AVCC, as in FLV and MP4); without, Annex B (start codes), or 4-byte
    prefixes where the data starts with no start code."""
    if length_size is None:
        if data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01"):
            return _split_annex_b(data)
        length_size = 4
    units = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            break
        units.append(data[pos : pos + size])
        pos += size
    return units


def _split_annex_b(data: bytes) -> list[bytes]:
    units = []
    start = -1
    pos = 0
    end = len(data)
    while True:
        found = data.find(b"\x00\x00\x01", pos)
        if found < 0:
            break
        if start >= 0:
            unit_end = found
            while unit_end > start and data[unit_end - 1] == 0:  # trailing zero / 4-byte code
                unit_end -= 1
            if unit_end > start:
                units.append(data[start:unit_end])
        start = pos = found + 3
    if 0 <= start < end:
        units.append(data[start:end])
    return units


def parameter_sets(extradata: bytes | None) -> list[bytes]:
    """The SPS and PPS in a decoder's extradata: Annex B, or an avcC record (ISO 14496-15)."""
    if not extradata:
        return []
    if extradata[0] != 1:
        return [u for u in split_nal_units(extradata) if u and u[0] & 0x1F in (NAL_SPS, NAL_PPS)]
    units = []
    try:
        pos = 5
        count = extradata[pos] & 0x1F
        pos += 1
        for group in range(2):
            for _ in range(count):
                (size,) = struct.unpack_from("!H", extradata, pos)
                pos += 2
                units.append(bytes(extradata[pos : pos + size]))
                pos += size
            if group == 0:
                count = extradata[pos]
                pos += 1
    except (IndexError, struct.error):
        pass
    return [u for u in units if u]


def avcc_length_size(extradata: bytes) -> int | None:
    """The NAL length prefix size an avcC record announces (None for Annex B extradata)."""
    if len(extradata) >= 5 and extradata[0] == 1:
        return (extradata[4] & 0x03) + 1
    return None


def profile_level_id(sps: bytes) -> str:
    """The SDP ``profile-level-id`` an SPS announces (profile_idc, constraint flags, level)."""
    return sps[1:4].hex() if len(sps) >= 4 else "42e01f"


class H264Packetizer:
    """Makes the RTP packets of one H.264 stream (one SSRC, sequence numbers from 0)."""

    def __init__(self, ssrc: int, payload_type: int, max_payload: int = MAX_PAYLOAD) -> None:
        self.ssrc = ssrc
        # AVCC streams (FLV) announce their NAL length prefix; None: Annex B (FFmpeg's RTSP)
        self.length_size: int | None = None
        self.payload_type = payload_type
        self.max_payload = max_payload
        self.sequence_number = 0
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def learn(self, units: list[bytes]) -> None:
        """Keep the newest parameter sets (from extradata, or seen in the stream)."""
        for unit in units:
            nal_type = unit[0] & 0x1F
            if nal_type == NAL_SPS:
                self.sps = unit
            elif nal_type == NAL_PPS:
                self.pps = unit

    def packetize(self, access_unit: bytes, timestamp: int) -> tuple[list[bytes], bool]:
        """The RTP packets of one access unit (the marker bit on its last one), and whether it
        is a keyframe. A keyframe that comes without its parameter sets gets the last ones
        seen first, so that a classroom can start decoding at any keyframe."""
        units = [
            u
            for u in split_nal_units(access_unit, self.length_size)
            if u and u[0] & 0x1F not in (NAL_AUD, NAL_FILLER)
        ]
        types = {u[0] & 0x1F for u in units}
        self.learn(units)
        keyframe = NAL_IDR in types
        if keyframe:
            missing = [
                unit
                for unit, nal_type in ((self.sps, NAL_SPS), (self.pps, NAL_PPS))
                if unit is not None and nal_type not in types
            ]
            units = missing + units
        packets: list[bytes] = []
        for index, unit in enumerate(units):
            self._packetize_unit(unit, timestamp, index == len(units) - 1, packets)
        return packets, keyframe

    def _packetize_unit(self, unit: bytes, timestamp: int, last: bool, out: list[bytes]) -> None:
        if len(unit) <= self.max_payload:
            out.append(self._header(timestamp, last) + unit)
            return
        indicator = (unit[0] & 0xE0) | NAL_FU_A
        nal_type = unit[0] & 0x1F
        body = memoryview(unit)[1:]
        room = self.max_payload - 2
        pos = 0
        while pos < len(body):
            chunk = body[pos : pos + room]
            pos += len(chunk)
            start = 0x80 if pos == len(chunk) else 0
            end = 0x40 if pos >= len(body) else 0
            out.append(
                self._header(timestamp, last and bool(end))
                + bytes((indicator, start | end | nal_type))
                + chunk
            )

    def _header(self, timestamp: int, marker: bool) -> bytes:
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | self.payload_type,
            self.sequence_number,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        return header
