"""Each consumer's sender reports map RTP time to wall-clock time the way its packets flow:
the classroom's lip sync depends on it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiortc.rtp import RtcpSrPacket

from tests.server import Server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import whep_subscribe, whip_publish

NTP_EPOCH_OFFSET = 2208988800


def record(
    receiver: Any, packets: list[tuple[float, int]], reports: list[tuple[float, int]]
) -> None:
    """Note each RTP packet's (arrival, timestamp) and each SR's (NTP time, RTP timestamp)."""
    handle_rtp, handle_rtcp = receiver._handle_rtp_packet, receiver._handle_rtcp_packet

    async def on_rtp(packet: Any, arrival_time_ms: int) -> None:
        packets.append((time.time(), packet.timestamp))
        await handle_rtp(packet, arrival_time_ms)

    async def on_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            reports.append((info.ntp_timestamp / 2**32 - NTP_EPOCH_OFFSET, info.rtp_timestamp))
        await handle_rtcp(packet)

    receiver._handle_rtp_packet = on_rtp
    receiver._handle_rtcp_packet = on_rtcp


async def test_sender_reports_agree_with_packet_timing(server: Server) -> None:
    lesson = server.create_lesson("Lip sync")
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(2.0),
        audio=encode_opus_clip(2.0),
    )
    classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
    streams: dict[str, tuple[list[tuple[float, int]], list[tuple[float, int]]]] = {}
    for transceiver in classroom.pc.getTransceivers():
        streams[transceiver.kind] = ([], [])
        record(transceiver.receiver, *streams[transceiver.kind])
    try:
        await asyncio.sleep(6)
    finally:
        await classroom.close()
        await publisher.close()
    for kind, rate in (("video", 90000), ("audio", 48000)):
        packets, reports = streams[kind]
        assert len(reports) >= 3, f"{kind}: {len(reports)} sender reports in 6 s"
        for ntp_time, rtp_timestamp in reports:
            assert abs(ntp_time - time.time()) < 10, "NTP time is not the wall clock"
            # the wall-clock time the report gives this RTP timestamp, against the arrival of
            # the packets carrying timestamps nearest to it (loopback: arrival ~ sending)
            arrival, ts = min(
                packets, key=lambda p: abs(((p[1] - rtp_timestamp + 2**31) % 2**32) - 2**31)
            )
            delta_ts = ((rtp_timestamp - ts + 2**31) % 2**32) - 2**31
            predicted = arrival + delta_ts / rate
            assert abs(predicted - ntp_time) < 0.06, (kind, predicted - ntp_time)
