"""ICE consent on the server: a publisher that streams but never answers consent checks (as
FFmpeg's WHIP muxer does) stays; a peer that neither answers nor sends is dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aioice import ice, stun
from aiortc import RTCSessionDescription

from media.network import NetworkConfig
from media.publisher import Publisher
from media.sfu import Sfu
from tests.support.media import PacedTrack, encode_opus_clip, encode_vp8_clip
from tests.support.peers import new_peer_connection

INTERVAL = 0.2  # seconds between consent checks, instead of 5, to keep the test short
TIMEOUT = 5 * INTERVAL  # consent lapses after five intervals, as by default (25 s)
# how long the server waits for a silent peer: consent lapses after the timeout, and the last
# check waits a STUN retransmission timeout for its answer
GIVE_UP_S = TIMEOUT + stun.RETRY_RTO + 1


@pytest.fixture
def fast_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ice, "CONSENT_INTERVAL", INTERVAL)


async def publish(sfu: Sfu) -> tuple[Publisher, Any, PacedTrack]:
    pc = new_peer_connection()
    track = PacedTrack(encode_vp8_clip(1.0), "video")
    pc.addTransceiver(track, direction="sendonly")
    pc.addTransceiver(PacedTrack(encode_opus_clip(1.0), "audio"), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    publisher = sfu.router("lesson").new_publisher("p", "camera", "teacher")
    answer = await publisher.negotiate(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for _ in range(100):
        if publisher.connection_state == "connected" and publisher.producers:
            break
        await asyncio.sleep(0.05)
    assert publisher.connection_state == "connected"
    # the client stops answering the server's consent checks from now on
    client_ice = pc.getTransceivers()[0].receiver.transport.transport._connection
    client_ice.request_received = lambda *args: None
    return publisher, pc, track


async def test_streaming_publisher_keeps_consent_without_answering(fast_consent: None) -> None:
    sfu = Sfu(NetworkConfig(bind=("127.0.0.1",), consent_timeout_s=TIMEOUT))
    publisher, pc, _ = await publish(sfu)
    try:
        await asyncio.sleep(GIVE_UP_S)
        assert publisher.connection_state == "connected"
        assert not publisher.closed
        assert publisher.producers[0].stats.packets > 30
    finally:
        await pc.close()
        await sfu.close()


async def test_silent_peer_is_dropped(fast_consent: None) -> None:
    sfu = Sfu(NetworkConfig(bind=("127.0.0.1",), consent_timeout_s=TIMEOUT))
    publisher, pc, track = await publish(sfu)
    try:
        # the client vanishes: nothing more leaves it (no media, no RTCP, no STUN)
        client_ice = pc.getTransceivers()[0].receiver.transport.transport._connection
        for protocol in client_ice._protocols:
            protocol.transport.sendto = lambda *args: None
        for _ in range(int(GIVE_UP_S / 0.1)):
            if publisher.closed:
                break
            await asyncio.sleep(0.1)
        assert publisher.closed
        assert not sfu.router("lesson").producers
    finally:
        await pc.close()
        await sfu.close()
