"""What reaches a peer's media port from elsewhere is dropped and counted: stray, forged or
malformed datagrams neither end the peer nor keep a vanished one alive."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import struct
from typing import Any

import pytest
from aioice import ice, stun
from aiortc import RTCPeerConnection, RTCSessionDescription

from media.drops import DROPPED
from media.network import NetworkConfig
from media.publisher import Publisher
from media.sfu import Sfu
from tests.support.media import PacedTrack, encode_opus_clip, encode_vp8_clip
from tests.support.peers import new_peer_connection
from tests.support.spoof import Spoofer

INTERVAL = 0.2  # seconds between consent checks, instead of 5, to keep the test short

# each peer on a port of its own, and every peer on one shared port (media/udp_mux.py)
NETWORKS = pytest.mark.parametrize(
    "network",
    [NetworkConfig(bind=("127.0.0.1",)), NetworkConfig(bind=("127.0.0.1",), shared_port=0)],
    ids=["port per peer", "shared port"],
)


async def publish(sfu: Sfu) -> tuple[Publisher, RTCPeerConnection]:
    pc = new_peer_connection()
    pc.addTransceiver(PacedTrack(encode_vp8_clip(1.0), "video"), direction="sendonly")
    pc.addTransceiver(PacedTrack(encode_opus_clip(1.0), "audio"), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    publisher = sfu.router("lesson").new_publisher("p", "camera", "teacher")
    answer = await publisher.negotiate(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for _ in range(100):
        if publisher.connection_state == "connected" and len(publisher.producers) == 2:
            break
        await asyncio.sleep(0.05)
    assert publisher.connection_state == "connected"
    return publisher, pc


def addresses(pc: RTCPeerConnection) -> tuple[tuple[str, int], tuple[str, int]]:
    """(the client's address, the server's) of the client's selected ICE pair."""
    connection: Any = pc.getTransceivers()[0].receiver.transport.transport._connection
    pair = connection._nominated[1]
    return pair.local_addr, pair.remote_addr


def srtp_like(ssrc: int, size: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, 1, 2, ssrc) + os.urandom(size - 12)


def stun_request(attributes: bytes) -> bytes:
    return struct.pack("!HHI12s", 0x0001, len(attributes), stun.COOKIE, os.urandom(12)) + (
        attributes
    )


def produced(publisher: Publisher) -> int:
    return sum(p.stats.packets for p in publisher.producers)


@NETWORKS
async def test_forged_and_malformed_datagrams_are_dropped(network: NetworkConfig) -> None:
    sfu = Sfu(network)
    publisher, pc = await publish(sfu)
    before = DROPPED.snapshot()
    client, server = addresses(pc)
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.bind(("127.0.0.1", 0))
    try:
        ssrc = publisher.producers[0].ssrc or 0
        with Spoofer() as spoofer:
            for _ in range(20):
                # from the client's own address: each of these used to end the peer in aiortc
                spoofer.send(client, server, b"")
                spoofer.send(client, server, srtp_like(ssrc, 1600))
                spoofer.send(client, server, srtp_like(ssrc, 300))  # fails authentication
                spoofer.send(client, server, b"\x17\xfe\xfd" + os.urandom(40))  # DTLS-looking
                # STUN with a PRIORITY of 3 bytes: aioice's parser raises struct.error
                spoofer.send(
                    client, server, stun_request(struct.pack("!HH", 0x0024, 3) + b"\0" * 4)
                )
                spoofer.send(client, server, stun_request(b""))  # no credentials
                # from another port: not the peer at all
                plain.sendto(srtp_like(ssrc, 300), server)
                plain.sendto(b"\x16\xfe\xfd" + os.urandom(60), server)
                plain.sendto(b"\x42" * 50, server)
                await asyncio.sleep(0.01)
        packets = produced(publisher)
        await asyncio.sleep(0.5)
        assert publisher.connection_state == "connected" and not publisher.closed
        assert produced(publisher) > packets + 10  # the teacher's media still comes in
        after = DROPPED.snapshot()
        moved = {reason: after[reason] - before[reason] for reason in after}
        if network.shared_port is None:
            assert moved["malformed"] >= 40 + 20  # empty, unparsable STUN, unknown first byte
            assert moved["stun_rejected"] >= 20
        else:  # a shared port turns away a request without USERNAME before parsing it
            assert moved["malformed"] >= 40
            assert moved["stun_rejected"] >= 40
        assert moved["oversized"] >= 20
        assert moved["unauthenticated"] >= 20  # forged SRTP
        assert moved["not_from_peer"] >= 40
    finally:
        plain.close()
        await pc.close()
        await sfu.close()


@NETWORKS
async def test_forged_media_does_not_keep_consent(
    monkeypatch: pytest.MonkeyPatch, network: NetworkConfig
) -> None:
    monkeypatch.setattr(ice, "CONSENT_INTERVAL", INTERVAL)
    sfu = Sfu(dataclasses.replace(network, consent_timeout_s=5 * INTERVAL))
    publisher, pc = await publish(sfu)
    client, server = addresses(pc)
    ssrc = publisher.producers[0].ssrc or 0
    # the client vanishes: nothing more leaves it ...
    client_ice: Any = pc.getTransceivers()[0].receiver.transport.transport._connection
    for protocol in client_ice._protocols:
        protocol.transport.sendto = lambda *args: None
    try:
        # ... but someone keeps sending packets that look like its media, from its address
        with Spoofer() as spoofer:
            for _ in range(int(60 * INTERVAL / 0.02)):
                if publisher.closed:
                    break
                spoofer.send(client, server, srtp_like(ssrc, 200))
                await asyncio.sleep(0.02)
            assert spoofer.sent > 50
        assert publisher.closed
    finally:
        await pc.close()
        await sfu.close()
