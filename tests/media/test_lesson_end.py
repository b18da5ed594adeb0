"""Ending a lesson closes every peer and gives back its ports and tasks, whether the peers
share one UDP port (the default) or each has its own (``--ice-ports``)."""

from __future__ import annotations

import asyncio

import pytest

from tests.server import Server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import whep_subscribe, whip_publish


async def wait_for(predicate, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds * 10)):
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


@pytest.fixture(scope="module")
def server(server_in_each_port_mode: Server) -> Server:
    return server_in_each_port_mode


def connections(status: dict) -> int:  # type: ignore[type-arg]
    """Connections on the shared port, or UDP sockets when each peer has its own."""
    if status["shared_ports"]:
        return sum(port["connections"] for port in status["shared_ports"])
    return status["udp_sockets"]


async def test_end_closes_peers_and_frees_ports_and_tasks(server: Server) -> None:
    idle = server.status()
    lesson = server.create_lesson("Ends")
    beside = server.create_lesson("Runs beside")
    video, audio = encode_vp8_clip(2.0), encode_opus_clip(2.0)
    publisher = await whip_publish(
        lesson["whip_url"], lesson["whip_token"], video=video, audio=audio
    )
    other_publisher = await whip_publish(
        beside["whip_url"], beside["whip_token"], video=video, audio=audio
    )
    classrooms = [await whep_subscribe(lesson["whep_url"], lesson["whep_token"]) for _ in range(3)]
    other = await whep_subscribe(beside["whep_url"], beside["whep_token"])
    peers = [publisher, other_publisher, *classrooms, other]
    try:
        for classroom in [*classrooms, other]:
            await classroom.wait_for_frames(10, timeout=8)
        busy = server.status()
        assert busy["peers"] == idle["peers"] + 6
        shared = bool(busy["shared_ports"])
        assert connections(busy) >= connections(idle) + 6
        if shared:  # one socket, whatever the number of peers
            assert busy["udp_sockets"] <= idle["udp_sockets"] + 1
            assert [port["port"] for port in busy["shared_ports"]] != [0]

        status, body = server.request(
            "POST", f"/api/lessons/{lesson['id']}/end", token=lesson["whip_token"]
        )
        assert status == 200 and body["state"] == "ended"
        after = server.status()
        assert after["peers"] == idle["peers"] + 2  # only the lesson beside is left
        assert after["sessions"] == idle["sessions"] + 2
        assert connections(after) == connections(idle) + 2
        assert await wait_for(lambda: server.status()["tasks"] <= busy["tasks"] - 4 * 4)
        # the classrooms see their connection end
        assert await wait_for(
            lambda: all(c.pc.connectionState in ("closed", "failed") for c in classrooms), 40
        ), [c.pc.connectionState for c in classrooms]
        # the lesson beside keeps decoding
        count = other.video_frames
        await other.wait_for_frames(count + 20, timeout=5)
    finally:
        for peer in peers:
            await peer.close(delete=False)
    assert await wait_for(lambda: server.status()["peers"] == idle["peers"], 40)
    final = server.status()
    assert connections(final) == connections(idle)
    if shared:
        assert final["udp_sockets"] == busy["udp_sockets"]  # the shared port stays open
    assert await wait_for(lambda: server.status()["tasks"] <= idle["tasks"] + 1)
