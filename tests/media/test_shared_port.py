"""Every peer on one UDP port: one port in every answer, datagrams told apart by ufrag,
transaction and address, strangers turned away, and a fan-out sent in one system call that one
refusing destination cannot stop."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun

from media.udp_mux import SendBatch, _address, sockaddr, stun_request_ufrag
from tests.server import Server, start_server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import whep_subscribe, whip_publish


def answer_ports(sdp: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+)", sdp)}


def udp_port_free() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def media_port() -> int:
    return udp_port_free()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, media_port: int) -> Iterator[Server]:
    instance = start_server(tmp_path_factory.mktemp("server"), "--ice-port", str(media_port))
    yield instance
    instance.stop()


def test_addresses_for_sendmmsg_read_back_as_they_were_given() -> None:
    for address in [("127.0.0.1", 5004), ("203.0.113.9", 65535), ("2001:db8::7", 40000)]:
        assert _address(sockaddr(address)) == address


def test_stun_requests_are_told_apart_by_the_ufrag_they_are_for() -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = "serverUfrag0123:client"
    request.add_message_integrity(b"password")
    assert stun_request_ufrag(bytes(request)) == "serverUfrag0123"
    anonymous = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    assert stun_request_ufrag(bytes(anonymous)) == ""
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)
    response.attributes["USERNAME"] = "serverUfrag0123:client"
    assert stun_request_ufrag(bytes(response)) is None


async def test_two_lessons_share_the_configured_port_and_strangers_are_turned_away(
    server: Server, media_port: int
) -> None:
    video, audio = encode_vp8_clip(3.0), encode_opus_clip(3.0)
    lessons = [server.create_lesson("Shared A"), server.create_lesson("Shared B")]
    peers: list[Any] = []
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    stranger.setblocking(False)
    try:
        for lesson in lessons:
            publisher = await whip_publish(
                lesson["whip_url"], lesson["whip_token"], video=video, audio=audio
            )
            peers.append(publisher)
            for _ in range(2):
                peers.append(await whep_subscribe(lesson["whep_url"], lesson["whep_token"]))
        for peer in peers:
            assert answer_ports(peer.pc.remoteDescription.sdp) == {media_port}
        classrooms = [p for p in peers if hasattr(p, "wait_for_frames")]
        for classroom in classrooms:
            await classroom.wait_for_frames(20, timeout=8)
        status = server.status()
        assert [(p["port"], p["connections"]) for p in status["shared_ports"]] == [(media_port, 6)]
        # what was forwarded left in batches, and nothing was lost on the way to the kernel
        port = status["shared_ports"][0]
        assert port["batched"] >= 4 * 20 and port["failed"] == 0, port

        before = status["media_dropped"]
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = "noSuchUfrag00000:x"
        request.add_message_integrity(b"guess")
        request.add_fingerprint()
        for _ in range(20):
            stranger.sendto(bytes(request), ("127.0.0.1", media_port))
            stranger.sendto(
                struct.pack("!BBHII", 0x80, 96, 1, 2, 3) + os.urandom(200),
                ("127.0.0.1", media_port),
            )
            stranger.sendto(b"\x16\xfe\xfd" + os.urandom(60), ("127.0.0.1", media_port))
            stranger.sendto(b"\x01\x01" + os.urandom(30), ("127.0.0.1", media_port))  # no cookie
            await asyncio.sleep(0.01)
        counts = [c.video_frames for c in classrooms]
        await asyncio.sleep(1.0)
        with pytest.raises(BlockingIOError):  # no answer to a stranger, not even an error
            stranger.recv(2048)
        after = server.status()["media_dropped"]
        assert after["stun_rejected"] - before["stun_rejected"] >= 20
        assert after["not_from_peer"] - before["not_from_peer"] >= 40
        assert after["malformed"] - before["malformed"] >= 20
        for classroom, count in zip(classrooms, counts, strict=True):
            assert classroom.video_frames >= count + 15, "a lesson stalled"

        # a classroom that leaves gives back its place on the port and nothing else changes
        leaving = classrooms[0]
        await leaving.close()
        peers.remove(leaving)
        for _ in range(50):
            if server.status()["shared_ports"][0]["connections"] == 5:
                break
            await asyncio.sleep(0.1)
        assert server.status()["shared_ports"][0]["connections"] == 5
        count = classrooms[1].video_frames
        await classrooms[1].wait_for_frames(count + 15, timeout=5)
    finally:
        stranger.close()
        for peer in peers:
            await peer.close()


async def test_one_refusing_destination_does_not_stop_the_rest_of_a_batch() -> None:
    receivers = []
    for _ in range(3):
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        receivers.append(receiver)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    batch = SendBatch(sender.fileno())
    # without SO_BROADCAST the kernel refuses a broadcast destination (EACCES)
    destinations = [
        receivers[0].getsockname(),
        ("255.255.255.255", 9),
        receivers[1].getsockname(),
        ("255.255.255.255", 9),
        receivers[2].getsockname(),
    ]
    try:
        for round_ in range(2):
            sent = batch.sent
            for i, destination in enumerate(destinations):
                slot = batch.slot()
                payload = f"round {round_} datagram {i}".encode()
                batch.views[slot][: len(payload)] = payload
                batch.commit(slot, len(payload), sockaddr(destination))
            await asyncio.sleep(0)  # the flush runs at the end of this callback
            await asyncio.sleep(0)
            assert batch.count == 0 and batch.sent == sent + 3
            got = [r.recv(100) for r in receivers]
            assert got == [f"round {round_} datagram {i}".encode() for i in (0, 2, 4)]
    finally:
        sender.close()
        for receiver in receivers:
            receiver.close()


async def test_a_full_batch_is_sent_before_more_is_written() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    receiver.settimeout(2)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    batch = SendBatch(sender.fileno())
    name = sockaddr(receiver.getsockname())
    total = SendBatch.CAPACITY * 2 + 10
    try:
        for i in range(total):
            slot = batch.slot()
            batch.views[slot][:4] = i.to_bytes(4, "big")
            batch.commit(slot, 4, name)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        received = [int.from_bytes(receiver.recv(16), "big") for _ in range(total)]
        assert received == list(range(total))
    finally:
        sender.close()
        receiver.close()


def test_a_port_in_use_stops_the_server_as_it_starts(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        with pytest.raises(RuntimeError) as error:
            start_server(tmp_path / "data", "--ice-port", str(port)).stop()
        assert f"cannot open UDP port {port} for media" in str(error.value)
    finally:
        taken.close()
