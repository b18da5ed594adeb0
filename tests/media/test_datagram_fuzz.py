"""A flood of random and mutated RTP, RTCP, STUN and DTLS datagrams at a lesson's media ports,
some from elsewhere and some forged to come from the peers' own addresses: the classrooms
keep decoding the teacher, the server stays up and counts what it threw away."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

from tests.server import Server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Classroom, whep_subscribe, whip_publish
from tests.support.spoof import Spoofer

DATAGRAMS = 100_000
FLOOD_S = 16.0  # the flood is paced over about this long
STUN_COOKIE = 0x2112A442
RTCP_TYPES = (200, 201, 202, 203, 204, 205, 206, 207)
# what an unhandled exception leaves in the server's log
CRASH_MARKS = ("Traceback", "Error handling request", "Exception in callback", "Unhandled")


class Datagrams:
    """Random datagrams that look like what a media port receives, and broken variants."""

    def __init__(self, rng: random.Random, ssrcs: list[int], ufrags: list[str]) -> None:
        self.rng = rng
        self.ssrcs = ssrcs
        self.ufrags = ufrags
        self.makers: list[Callable[[], bytes]] = [
            self.rtp,
            self.rtcp,
            self.stun,
            self.dtls,
            self.noise,
        ]
        self.weights = [30, 20, 20, 15, 15]

    def next(self) -> bytes:
        rng = self.rng
        data = rng.choices(self.makers, self.weights)[0]()
        roll = rng.random()
        if roll < 0.06:  # truncated anywhere, down to nothing
            data = data[: rng.randrange(len(data) + 1)]
        elif roll < 0.10:  # oversized
            data += rng.randbytes(rng.choice((1500, 2000, 9000, 40000)) - len(data) % 1500)
        elif roll < 0.20:  # a few bits flipped
            buffer = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                if buffer:
                    buffer[rng.randrange(len(buffer))] ^= 1 << rng.randrange(8)
            data = bytes(buffer)
        return data

    def ssrc(self) -> int:
        return self.rng.choice(self.ssrcs) if self.rng.random() < 0.8 else self.rng.getrandbits(32)

    def rtp(self) -> bytes:
        rng = self.rng
        first = 0x80 | (rng.random() < 0.1) << 5 | (rng.random() < 0.2) << 4
        first |= rng.choice((0, 0, 0, 1, 15)) if rng.random() < 0.1 else 0
        pt = rng.choice((96, 97, 98, 99, 100, 101, 102, 111, rng.randrange(128)))
        header = struct.pack(
            "!BBHII",
            first,
            (rng.random() < 0.3) << 7 | pt,
            rng.getrandbits(16),
            rng.getrandbits(32),
            self.ssrc(),
        )
        header += rng.randbytes(4 * (first & 0x0F))
        if first & 0x10:
            words = rng.choice((0, 1, 2, 255))
            header += struct.pack("!HH", rng.choice((0xBEDE, 0x1000, 0xABCD)), words)
            header += rng.randbytes(4 * min(words, 3))
        # payload, then what would be the SRTP authentication tag
        return header + rng.randbytes(rng.choice((0, 1, 20, 200, 1100))) + rng.randbytes(10)

    def rtcp(self) -> bytes:
        rng = self.rng
        compound = b""
        for _ in range(rng.randint(1, 3)):
            body = struct.pack("!I", self.ssrc()) + rng.randbytes(rng.choice((0, 4, 20, 24, 44)))
            words = len(body) // 4
            if rng.random() < 0.4:  # a length that does not match the packet
                words = rng.choice((0, words + 1, words + 100, 0xFFFF))
            count = rng.randrange(32)
            compound += struct.pack("!BBH", 0x80 | count, rng.choice(RTCP_TYPES), words) + body
        # the SRTCP index (with its encryption flag) and an authentication tag
        return compound + struct.pack("!I", 0x80000000 | rng.getrandbits(31)) + rng.randbytes(10)

    def stun(self) -> bytes:
        rng = self.rng
        attributes = b""
        local = rng.choice(self.ufrags) if rng.random() < 0.7 else rng.randbytes(4).hex()
        username = f"{local}:{rng.randbytes(4).hex()}".encode()
        parts = [
            (0x0006, username),  # USERNAME
            (0x0024, struct.pack("!I", rng.getrandbits(32))),  # PRIORITY
            (rng.choice((0x8029, 0x802A)), rng.randbytes(8)),  # ICE-CONTROLLED / -CONTROLLING
            (0x0025, b""),  # USE-CANDIDATE
            (0x0008, rng.randbytes(20)),  # MESSAGE-INTEGRITY that cannot match
        ]
        if rng.random() < 0.2:
            rng.shuffle(parts)
        for kind, value in parts:
            if rng.random() < 0.15:
                continue  # an attribute left out
            length = len(value)
            if rng.random() < 0.1:  # a length that does not match the value
                length = rng.choice((0, 1, 3, length + 4, 0xFFFF))
            attributes += struct.pack("!HH", kind, length) + value + b"\0" * (-len(value) % 4)
        method = rng.choice((0x0001, 0x0001, 0x0001, 0x0101, 0x0111, 0x0011, 0x0003))
        header = struct.pack("!HHI12s", method, len(attributes) + 8, STUN_COOKIE, rng.randbytes(12))
        message = header + attributes
        fingerprint = zlib.crc32(message) ^ 0x5354554E
        if rng.random() < 0.3:
            fingerprint ^= 1
        return message + struct.pack("!HHI", 0x8028, 4, fingerprint)

    def dtls(self) -> bytes:
        rng = self.rng
        content = rng.choice((20, 21, 22, 23, 24, 25, rng.randrange(20, 64)))
        version = rng.choice((0xFEFD, 0xFEFF, 0xFEFC, rng.getrandbits(16)))
        epoch = rng.choice((0, 1, 2, rng.getrandbits(16)))
        body = rng.randbytes(rng.choice((0, 2, 12, 48, 300)))
        if content == 22 and rng.random() < 0.5:  # a handshake message header
            body = struct.pack("!B", rng.choice((1, 2, 11, 12, 14, 16))) + body
        length = len(body) if rng.random() < 0.7 else rng.getrandbits(16)
        header = struct.pack("!BHH", content, version, epoch) + rng.randbytes(6)
        return header + struct.pack("!H", length) + body

    def noise(self) -> bytes:
        return self.rng.randbytes(self.rng.choice((0, 1, 2, 11, 12, 20, 100, 1200, 1500)))


def client_address(pc: RTCPeerConnection) -> tuple[str, int]:
    connection: Any = pc.getTransceivers()[0].receiver.transport.transport._connection
    return tuple(connection._nominated[1].local_addr)  # type: ignore[return-value]


def answer_ports(answer: str) -> list[tuple[str, int]]:
    """The server's media addresses: the host candidates in its answer."""
    found = re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", answer)
    return sorted({(host, int(port)) for host, port in found})


def answer_ufrags(answer: str) -> list[str]:
    return sorted(set(re.findall(r"a=ice-ufrag:(\S+)", answer)))


def frames(classrooms: list[Classroom]) -> list[int]:
    return [room.video_frames for room in classrooms]


async def test_media_ports_survive_a_datagram_flood(server: Server) -> None:
    lesson = server.create_lesson("Flood", record=False)
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(2.0),
        audio=encode_opus_clip(2.0),
    )
    classrooms = [
        await whep_subscribe(f"{lesson['whep_url']}?name=Room-{i}", lesson["whep_token"])
        for i in range(2)
    ]
    sockets: list[socket.socket] = []
    try:
        await publisher.wait_connected()
        for room in classrooms:
            await room.wait_for_frames(30, timeout=10)
        before = server.status()
        # every peer's media port, with the peer's own address to forge datagrams from
        peers = [(publisher.pc, publisher.answer_sdp)] + [
            (room.pc, room.answer_sdp) for room in classrooms
        ]
        targets = [
            (client_address(pc), port) for pc, answer in peers for port in answer_ports(answer)
        ]
        assert len(targets) == 3
        ufrags = [u for _, answer in peers for u in answer_ufrags(answer)]
        ssrcs = [int(s) for s in re.findall(r"a=ssrc:(\d+) ", publisher.pc.localDescription.sdp)]
        assert ssrcs
        rng = random.Random(20240607)
        datagrams = Datagrams(rng, ssrcs, ufrags)
        for _ in range(4):
            plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            plain.bind(("127.0.0.1", 0))
            plain.setblocking(False)
            sockets.append(plain)
        clients = [client for client, _ in targets]
        video = publisher.video_track
        assert video is not None
        sent_before, decoded_before = video.frames_sent, frames(classrooms)
        unreadable_before = [room.video[0].unreadable for room in classrooms]

        with Spoofer() as spoofer:
            started = time.monotonic()
            thrown = 0
            while thrown < DATAGRAMS:
                due = min(DATAGRAMS, int(DATAGRAMS * (time.monotonic() - started) / FLOOD_S))
                while thrown < due:
                    data = datagrams.next()
                    client, target = rng.choice(targets)
                    roll = rng.random()
                    if roll < 0.5:  # forged: from the peer this port belongs to
                        spoofer.send(client, target, data)
                    elif roll < 0.6:  # forged: from another peer of the lesson
                        spoofer.send(rng.choice(clients), target, data)
                    else:  # from some other port of the machine
                        try:
                            rng.choice(sockets).sendto(data, target)
                        except (BlockingIOError, OSError):
                            pass  # too large for UDP, or the socket's queue is full
                    thrown += 1
                await asyncio.sleep(0.005)
            flood_s = time.monotonic() - started
            forged = spoofer.sent

        sent, decoded = video.frames_sent - sent_before, frames(classrooms)
        assert thrown >= DATAGRAMS and forged > DATAGRAMS // 3
        assert flood_s < FLOOD_S * 2
        for room, start, count in zip(classrooms, decoded_before, decoded, strict=True):
            # aiortc holds one frame back until the next starts: allow that frame in flight
            assert count - start >= 0.98 * sent - 1, (room.name, count - start, sent)
        assert [room.video[0].unreadable for room in classrooms] == unreadable_before
        assert publisher.pc.connectionState == "connected"
        assert all(room.pc.connectionState == "connected" for room in classrooms)

        assert server.process.poll() is None
        after = server.status()
        assert (after["peers"], after["producers"]) == (before["peers"], before["producers"])
        moved = {
            reason: after["media_dropped"][reason] - before["media_dropped"][reason]
            for reason in after["media_dropped"]
        }
        for reason in ("not_from_peer", "malformed", "oversized", "unauthenticated"):
            assert moved[reason] > 1000, moved
        assert moved["stun_rejected"] > 100, moved
        log = server.log()
        assert not [mark for mark in CRASH_MARKS if mark in log], log[-3000:]
    finally:
        for plain in sockets:
            plain.close()
        for room in classrooms:
            await room.close()
        await publisher.close()
