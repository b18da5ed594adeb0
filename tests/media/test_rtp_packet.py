import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap
from aiortc.rtp import RtpPacket as AiortcPacket

from media.codec import HeaderExtension, extension_id_map
from media.rtp_packet import RtpError, parse_rtp, rewrite, seq_newer, unwrap_rtx, wrap_rtx

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def aiortc_bytes(mid_id: int = 4, abs_id: int = 2, payload: bytes = b"\x90" * 50) -> bytes:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=mid_id, uri=MID),
                RTCRtpHeaderExtensionParameters(id=abs_id, uri=ABS),
            ]
        )
    )
    packet = AiortcPacket(payload_type=96, sequence_number=65535, timestamp=1234, ssrc=0xAABB)
    packet.marker = 1
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 0x123456
    packet.payload = payload
    return packet.serialize(ext_map)


def test_parse_reads_what_aiortc_wrote() -> None:
    packet = parse_rtp(aiortc_bytes())
    assert (packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc) == (
        96,
        65535,
        1234,
        0xAABB,
    )
    assert packet.marker == 1
    assert sorted(ext_id for _, ext_id in packet.extensions) == [2, 4]
    assert packet.payload == b"\x90" * 50


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,
        b"\x40" + b"\x00" * 20,
        b"\x90\x60" + b"\x00" * 10 + b"\xbe\xde\x00\x09",
        b"\xa0\x60" + b"\x00" * 10 + b"\x00\x00\xff",
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_rewrite_changes_header_and_remaps_extensions_only() -> None:
    original = parse_rtp(aiortc_bytes(mid_id=4, abs_id=2))
    table = extension_id_map(
        [HeaderExtension(4, MID), HeaderExtension(2, ABS)],
        [HeaderExtension(1, MID), HeaderExtension(3, ABS)],
    )
    out = rewrite(original, 100, 7, 99, 0x1111, table)
    packet = AiortcPacket.parse(out)
    assert (packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc) == (
        100,
        7,
        99,
        0x1111,
    )
    assert packet.marker == 1
    assert packet.payload == original.payload
    ids = sorted(i for _, i in parse_rtp(out).extensions)
    # abs-send-time now carries the classroom's id; the origin's mid is never forwarded as mid
    assert 3 in ids and 1 not in ids
    egress_map = HeaderExtensionsMap()
    egress_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=3, uri=ABS),
                RTCRtpHeaderExtensionParameters(id=1, uri=MID),
            ]
        )
    )
    reparsed = AiortcPacket.parse(out, egress_map)
    assert reparsed.extensions.abs_send_time == 0x123456
    assert reparsed.extensions.mid is None


def test_rtx_round_trip() -> None:
    original = parse_rtp(aiortc_bytes())
    rtx = parse_rtp(wrap_rtx(original, 97, 500, 4242, 777, 0x2222, None))
    assert (rtx.payload_type, rtx.sequence_number, rtx.ssrc) == (97, 500, 0x2222)
    assert rtx.payload[:2] == struct.pack("!H", 4242)
    back = unwrap_rtx(rtx, 96, 0x1111)
    assert (back.payload_type, back.sequence_number, back.ssrc, back.timestamp) == (
        96,
        4242,
        0x1111,
        777,
    )
    assert back.payload == original.payload


def test_sequence_numbers_compare_across_wrap() -> None:
    assert seq_newer(0, 65535)
    assert seq_newer(10, 5)
    assert not seq_newer(5, 10)
    assert not seq_newer(7, 7)
