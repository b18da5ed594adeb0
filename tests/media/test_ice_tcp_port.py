"""The server's ICE-TCP port (RFC 6544 passive candidates, RFC 4571 framing) under a hand-made
TCP client: an authenticated check is answered on the stream; garbage, oversized frames,
silence and floods of half-open connections are refused and cleaned up while a live lesson's
classrooms keep decoding."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aioice import stun

from media.tcp_mux import HANDSHAKE_S, MAX_FRAME, MAX_HALF_OPEN, MAX_STREAMS_PER_CONNECTION
from tests.server import ROOT, Server, free_port, port_mode_options, start_server
from tests.support.ice_tcp_client import (
    IceTcpClient,
    binding_request,
    credentials,
    tcp_candidates,
)
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(120)

FLOOD = 500
MAX_FRAME_GAP_S = 1.0  # the longest the classroom beside may go without a new frame


def client_ufrag(offer_sdp: str) -> str:
    found = re.search(r"a=ice-ufrag:(\S+)", offer_sdp)
    assert found
    return found.group(1)


async def test_an_authenticated_check_is_answered_on_the_stream(server: Server) -> None:
    lesson = server.create_lesson("TCP check", record=False)
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(2.0),
        audio=encode_opus_clip(2.0),
    )
    room = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
    try:
        await room.wait_for_frames(10, timeout=10)
        [address] = tcp_candidates(room.answer_sdp)
        ufrag, pwd = credentials(room.answer_sdp)
        client = await IceTcpClient.connect(address)
        answer = await client.check(ufrag, pwd, client_ufrag(room.pc.localDescription.sdp))
        assert answer.message_class == stun.Class.RESPONSE, answer
        assert answer.check_message_integrity(pwd.encode())
        port = server.status()["tcp_ports"][0]
        assert port["half_open"] == 0, port
        client.close()
    finally:
        await room.close()
        await publisher.close()


# --- what a stranger may send ----------------------------------------------------------------


async def session(server: Server) -> tuple[Any, Any, tuple[str, int]]:
    """A publisher and a classroom (over UDP), and the server's TCP media address."""
    lesson = server.create_lesson("TCP limits", record=False)
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(2.0),
        audio=encode_opus_clip(2.0),
    )
    room = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
    await room.wait_for_frames(10, timeout=10)
    [address] = tcp_candidates(room.answer_sdp)
    return publisher, room, address


def counts(server: Server) -> dict[str, int]:
    return dict(server.status()["tcp_ports"][0])


async def test_garbage_oversized_frames_and_silence_close_the_stream(server: Server) -> None:
    publisher, room, address = await session(server)
    ufrag, pwd = credentials(room.answer_sdp)
    mine = client_ufrag(room.pc.localDescription.sdp)
    try:
        before = counts(server)
        # not STUN first: DTLS, RTP, noise, an unknown ufrag, a STUN answer instead of a request
        unknown = binding_request("nobody-knows-me", pwd, mine)
        answer = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE)
        firsts = [
            b"\x16\xfe\xfd" + bytes(40),
            b"\x80\x60" + bytes(100),
            random.Random(1).randbytes(200),
            bytes(unknown),
            bytes(answer),
            b"",
        ]
        for first in firsts:
            client = await IceTcpClient.connect(address)
            client.send_frame(first)
            assert await client.closed(within=2), first[:8]
        # a frame larger than any datagram, before or after the stream is established
        client = await IceTcpClient.connect(address)
        client.send_raw(b"\xff\xff" + bytes(3000))
        assert await client.closed(within=2)
        client = await IceTcpClient.connect(address)
        assert (await client.check(ufrag, pwd, mine)).message_class == stun.Class.RESPONSE
        client.send_frame(bytes(MAX_FRAME + 1))
        assert await client.closed(within=2)
        # slow loris: a byte a second; and checks that never authenticate
        loris = await IceTcpClient.connect(address)
        forged = await IceTcpClient.connect(address)
        forged.send_frame(bytes(binding_request(ufrag, "not-the-password", mine)))
        began = time.monotonic()
        request = bytes(binding_request(ufrag, pwd, mine))
        frame = len(request).to_bytes(2, "big") + request

        async def drip() -> None:
            for byte in frame:
                loris.send_raw(bytes([byte]))
                await asyncio.sleep(1.0)

        dripping = asyncio.create_task(drip())
        assert await loris.closed(within=HANDSHAKE_S + 3)
        assert await forged.closed(within=HANDSHAKE_S + 3)
        assert time.monotonic() - began < HANDSHAKE_S + 3
        dripping.cancel()

        after = counts(server)
        assert after["garbage"] - before["garbage"] == len(firsts)
        assert after["oversized"] - before["oversized"] == 2
        assert after["expired"] - before["expired"] == 2
        assert after["half_open"] == 0
        # the classroom on UDP never noticed
        decoded = room.video_frames
        await room.wait_for_frames(decoded + 10, timeout=5)
        assert room.pc.connectionState == "connected"
        log = server.log()
        assert "Traceback" not in log and "Exception in callback" not in log, log[-3000:]
    finally:
        await room.close()
        await publisher.close()


@dataclass
class Beside:
    """A lesson decoding in a process of its own (tests/support/watched_lesson.py)."""

    frames: list[tuple[float, int]] = field(default_factory=list)  # (when, decoded so far)

    def longest_stall(self, since: float, until: float) -> float:
        samples = [(t, n) for t, n in self.frames if since <= t <= until]
        assert samples, "the watched lesson printed nothing"
        stall, last_change, last = 0.0, samples[0][0], samples[0][1]
        for when, count in samples[1:]:
            if count != last:
                last_change, last = when, count
            stall = max(stall, when - last_change)
        return stall


@pytest.fixture
def beside(server: Server) -> Iterator[Beside]:
    lesson = server.create_lesson("Beside", record=False)
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.watched_lesson",
            lesson["whip_url"],
            lesson["whip_token"],
            f"{lesson['whep_url']}?name=Beside",
            lesson["whep_token"],
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    watched = Beside()
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "ready"

        def read() -> None:
            assert watcher.stdout is not None
            for line in watcher.stdout:
                when, count = line.split()
                watched.frames.append((float(when), int(count)))

        threading.Thread(target=read, daemon=True).start()
        yield watched
        assert watcher.poll() is None
    finally:
        assert watcher.stdin is not None
        watcher.stdin.close()
        try:
            watcher.wait(15)
        except subprocess.TimeoutExpired:
            watcher.kill()


async def test_a_flood_of_half_open_connections_is_refused_and_cleaned_up(
    server: Server, beside: Beside
) -> None:
    clients: list[IceTcpClient] = []
    publisher, room, address = await session(server)
    try:
        before = counts(server)
        fds = server.status()["fds"]
        began = time.monotonic()
        # 500 connections that never say a word, from ten addresses (127.0.0.0/8 is loopback)
        sources = [f"127.0.0.{n}" for n in range(2, 12)]

        async def connect(i: int) -> None:
            try:
                clients.append(await IceTcpClient.connect(address, sources[i % len(sources)]))
            except OSError:
                pass  # refused before accept: as good

        await asyncio.gather(*(connect(i) for i in range(FLOOD)))
        assert len(clients) >= FLOOD * 0.9
        # the server has seen every one: each was refused or accepted as half-open
        deadline = time.monotonic() + 5
        while True:
            during = counts(server)
            seen = sum(during[k] - before[k] for k in ("accepted", "refused"))
            assert during["half_open"] <= MAX_HALF_OPEN, during
            if seen >= len(clients):
                break
            assert time.monotonic() < deadline, (during, len(clients))
            await asyncio.sleep(0.1)
        assert during["refused"] - before["refused"] >= FLOOD - MAX_HALF_OPEN, during
        closed = await asyncio.gather(*(c.closed(within=HANDSHAKE_S + 5) for c in clients))
        assert all(closed)
        assert time.monotonic() - began < HANDSHAKE_S + 15
        flood_end = time.monotonic()
        after = counts(server)
        assert after["half_open"] == 0, after
        # every one accepted said nothing, and was closed when its time was up
        assert after["expired"] - before["expired"] == after["accepted"] - before["accepted"]
        # a real classroom's check gets through once the flood is gone
        client = await IceTcpClient.connect(address)
        ufrag, pwd = credentials(room.answer_sdp)
        mine = client_ufrag(room.pc.localDescription.sdp)
        assert (await client.check(ufrag, pwd, mine)).message_class == stun.Class.RESPONSE
        client.close()
        # nothing left open on the server
        deadline = time.monotonic() + 5
        while server.status()["fds"] > fds + 2:
            assert time.monotonic() < deadline, (server.status()["fds"], fds)
            await asyncio.sleep(0.2)
        # the lesson beside decoded all along
        stall = beside.longest_stall(began, flood_end)
        assert stall <= MAX_FRAME_GAP_S, f"the lesson beside stalled for {stall:.1f} s"
        assert server.process.poll() is None
    finally:
        for client in clients:
            client.close()
        await room.close()
        await publisher.close()


@pytest.mark.parametrize(
    ("options", "tcp"),
    [
        (("--ice-tcp-port", "off"), False),
        (port_mode_options("port per peer"), False),
        ((*port_mode_options("port per peer"), "--ice-tcp-port", str(free_port())), True),
    ],
    ids=["off", "port per peer", "port per peer, TCP by number"],
)
async def test_ice_tcp_is_offered_as_configured(
    tmp_path: Path, options: tuple[str, ...], tcp: bool
) -> None:
    instance = start_server(tmp_path, *options)
    try:
        lesson = instance.create_lesson("Configured", record=False)
        publisher = await whip_publish(
            lesson["whip_url"],
            lesson["whip_token"],
            video=encode_vp8_clip(2.0),
            audio=encode_opus_clip(2.0),
        )
        room = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
        try:
            await room.wait_for_frames(10, timeout=10)  # UDP as before
            found = tcp_candidates(room.answer_sdp)
            ports = instance.status()["tcp_ports"]
            if not tcp:
                assert found == [] and ports == []
                return
            assert [port["port"] for port in ports] == [int(options[-1])]
            [address] = found
            assert address == ("127.0.0.1", int(options[-1]))
            ufrag, pwd = credentials(room.answer_sdp)
            client = await IceTcpClient.connect(address)
            answer = await client.check(ufrag, pwd, client_ufrag(room.pc.localDescription.sdp))
            assert answer.message_class == stun.Class.RESPONSE
            client.close()
        finally:
            await room.close()
            await publisher.close()
    finally:
        instance.stop()


async def test_a_session_holds_a_few_streams_at_a_time(server: Server) -> None:
    publisher, room, address = await session(server)
    ufrag, pwd = credentials(room.answer_sdp)
    mine = client_ufrag(room.pc.localDescription.sdp)
    streams: list[IceTcpClient] = []
    try:
        before = counts(server)
        for _ in range(MAX_STREAMS_PER_CONNECTION):
            client = await IceTcpClient.connect(address)
            streams.append(client)
            assert (await client.check(ufrag, pwd, mine)).message_class == stun.Class.RESPONSE
        extra = await IceTcpClient.connect(address)
        extra.send_frame(bytes(binding_request(ufrag, pwd, mine)))
        assert await extra.closed(within=2)
        assert counts(server)["refused"] - before["refused"] == 1
        # streams that close make room again, however often
        for _ in range(3 * MAX_STREAMS_PER_CONNECTION):
            streams.pop(0).close()
            await asyncio.sleep(0.05)
            client = await IceTcpClient.connect(address)
            streams.append(client)
            assert (await client.check(ufrag, pwd, mine)).message_class == stun.Class.RESPONSE
        assert counts(server)["refused"] - before["refused"] == 1
        decoded = room.video_frames
        await room.wait_for_frames(decoded + 10, timeout=5)
    finally:
        for client in streams:
            client.close()
        await room.close()
        await publisher.close()
